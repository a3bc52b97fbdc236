//! What the breaker tells the world: metric series, transition events, and [`Stats`].

use rampart_core::registry::INSTANCE_LABEL;

use super::*;

#[derive(Debug)]
pub(super) struct Metrics {
    pub(super) success: metrics::Counter,
    pub(super) failure: metrics::Counter,
    pub(super) ignored: metrics::Counter,
    pub(super) rejected: metrics::Counter,
    pub(super) slow: metrics::Counter,
    pub(super) state: metrics::Gauge,
}

/// The labels of a breaker's series: `breaker` (the layer's name) and, for a per-key breaker,
/// `key` (its own, `_other` beyond the cap, `_none` for the breaker of keyless requests).
pub(super) fn metric_labels(
    labels: &MetricLabels,
    extra: Option<(&'static str, &'static str)>,
) -> Vec<metrics::Label> {
    let mut out = vec![metrics::Label::new(
        INSTANCE_LABEL,
        labels.breaker.to_string(),
    )];
    if let Some(key) = &labels.key {
        out.push(metrics::Label::new("key", key.to_string()));
    }
    if let Some((k, v)) = extra {
        out.push(metrics::Label::new(k, v));
    }
    out
}

/// What a breaker's metric series are labelled with.
#[derive(Debug, Clone)]
pub(crate) struct MetricLabels {
    pub(crate) breaker: Arc<str>,
    pub(crate) key: Option<Arc<str>>,
}

impl Metrics {
    pub(super) fn new(labels: &MetricLabels) -> Self {
        let calls = |outcome: &'static str| {
            metrics::counter!(
                "rampart_circuit_breaker_calls_total",
                metric_labels(labels, Some(("outcome", outcome)))
            )
        };
        Self {
            success: calls("success"),
            failure: calls("failure"),
            ignored: calls("ignored"),
            rejected: calls("rejected"),
            slow: metrics::counter!(
                "rampart_circuit_breaker_slow_calls_total",
                metric_labels(labels, None)
            ),
            state: metrics::gauge!("rampart_circuit_breaker_state", metric_labels(labels, None)),
        }
    }
}

/// A point-in-time view of one breaker.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// The breaker's state.
    pub state: State,
    /// The mode set through the handle.
    pub mode: Mode,
    /// Calls completed since the breaker was built: successes + failures + ignored.
    pub calls: u64,
    /// Successful calls.
    pub successes: u64,
    /// Failed calls.
    pub failures: u64,
    /// Calls slower than the slow-call threshold (successful or not).
    pub slow_calls: u64,
    /// Calls whose outcome was ignored, cancelled calls included.
    pub ignored: u64,
    /// Calls rejected (in metrics-only mode: that would have been rejected).
    pub rejections: u64,
    /// Calls in the current window.
    pub window_calls: u64,
    /// Failure rate over the current window, in percent (0 when the window is empty).
    pub failure_rate: f64,
    /// Slow-call rate over the current window, in percent.
    pub slow_call_rate: f64,
    /// Failures in a row right now.
    pub consecutive_failures: u32,
    /// How long the breaker has been in its state.
    pub time_in_state: Duration,
    /// While open: how long until probes are let through.
    pub open_remaining: Option<Duration>,
    /// While half-open: probes in flight.
    pub probes_in_flight: u32,
}

impl Core {
    pub(super) fn emit(self: &Arc<Self>, t: Transition) {
        if t.to == State::Open {
            tracing::warn!(
                target: "rampart::circuit_breaker",
                breaker = %t.breaker, from = t.from.as_str(), to = t.to.as_str(), reason = t.reason.as_str(),
                open_for = ?t.open_for, "circuit breaker opened"
            );
        } else {
            tracing::info!(
                target: "rampart::circuit_breaker",
                breaker = %t.breaker, from = t.from.as_str(), to = t.to.as_str(), reason = t.reason.as_str(),
                "circuit breaker state changed"
            );
        }
        let mut labels = metric_labels(&self.labels, Some(("from", t.from.as_str())));
        labels.push(metrics::Label::new("to", t.to.as_str()));
        metrics::counter!("rampart_circuit_breaker_transitions_total", labels).increment(1);
        self.metrics.state.set(t.to.as_gauge());
        for cb in &self.cfg.on_transition {
            cb(&t);
        }
        if let (State::Open, Some(d)) = (t.to, t.open_for) {
            self.arm_open_timer(t.generation, d);
        }
        let _ = self.events.send(t);
        self.note_transition();
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.events.subscribe()
    }

    /// A future that completes at the next mode change (watching from now, unpolled).
    pub(crate) fn mode_changed(&self) -> tokio::sync::futures::OwnedNotified {
        self.mode_changed.clone().notified_owned()
    }

    /// What is left of the open time at `now` (zero once it is over: the next call probes).
    pub(super) fn open_left(&self, now: Instant) -> Duration {
        let until = self.open_until.load(Ordering::Acquire);
        Duration::from_nanos(until.saturating_sub(self.nanos(now)))
    }

    /// What is left of the open time now, if the breaker is open.
    pub(crate) fn open_remaining(&self) -> Option<Duration> {
        (self.state() == State::Open).then(|| self.open_left(self.clock.now()))
    }

    pub(crate) fn stats(&self) -> Stats {
        let now = self.clock.now();
        let (state, mode, entered, probes_in_flight) = {
            let m = lock(&self.machine);
            (m.state, m.mode, m.entered, m.probes_in_flight)
        };
        let sum = |f: fn(&Shard) -> &AtomicU64| {
            self.shards
                .iter()
                .map(|s| f(&s.0).load(Ordering::Relaxed))
                .sum::<u64>()
        };
        // Lifetime: what the buckets never saw, plus what they retired, plus what they hold.
        let mut bucketed = Counts::default();
        for shard in self.shards.iter() {
            let s = &shard.0;
            let retired = lock(&s.retired);
            bucketed.total += retired.total;
            bucketed.failures += retired.failures;
            bucketed.slow += retired.slow;
            for b in s.buckets.iter() {
                let c = b.load();
                bucketed.total += c.total;
                bucketed.failures += c.failures;
                bucketed.slow += c.slow;
            }
        }
        let successes = sum(|s| &s.successes) + bucketed.total.saturating_sub(bucketed.failures);
        let failures = sum(|s| &s.failures) + bucketed.failures;
        let ignored = sum(|s| &s.ignored);
        let w = self.window_counts(Some(now));
        let rate = |n: u64| {
            if w.total == 0 {
                0.0
            } else {
                n as f64 * 100.0 / w.total as f64
            }
        };
        let open_remaining = (state == State::Open).then(|| self.open_left(now));
        Stats {
            state,
            mode,
            calls: successes + failures + ignored,
            successes,
            failures,
            slow_calls: sum(|s| &s.slow) + bucketed.slow,
            ignored,
            rejections: sum(|s| &s.rejected),
            window_calls: w.total,
            failure_rate: rate(w.failures),
            slow_call_rate: rate(w.slow),
            consecutive_failures: self.consecutive.load(Ordering::Relaxed),
            time_in_state: now.saturating_duration_since(entered),
            open_remaining,
            probes_in_flight,
        }
    }
}
