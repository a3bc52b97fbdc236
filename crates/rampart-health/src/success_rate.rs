//! [`SuccessRate`]: the share of successful calls over a sliding time window, judged against
//! two thresholds.
//!
//! The window is a ring of time buckets (60 one-second buckets by default). A call is counted
//! in the bucket of the moment it is recorded; the rate covers the current bucket and the
//! `buckets - 1` before it, so between `window - bucket` and `window` of history. A bucket is
//! cleared when time comes round to it again, so an idle tracker forgets old calls without any
//! timer.
//!
//! Recording is lock-free while the current bucket is current: one clock read, one atomic load
//! and one atomic add. Only the first call in a new bucket takes a short lock to clear it.

use std::{fmt, sync::Arc, time::Duration};

use rampart_core::{
    clock::{SharedClock, default_clock},
    error::ConfigError,
    rolling::RollingCounts,
};

use crate::{
    component::{BoxFuture, Component},
    status::{ComponentHealth, Status},
};

const COMPONENT: &str = "success rate";
const SUCCESSES: usize = 0;
const FAILURES: usize = 1;
const MAX_BUCKETS: u32 = 3600;

/// Counts successes and failures over a sliding time window and judges the rate:
///
/// | success rate over the window | status |
/// |---|---|
/// | fewer than `minimum_calls` calls (default 10) | healthy: too few calls to judge |
/// | above `healthy_above` (default 95 %) | healthy |
/// | above `degraded_above` (default 80 %) | degraded |
/// | otherwise | unhealthy |
///
/// Feed it by hand ([`record`](Self::record)) or put a
/// [`SuccessRateLayer`](crate::SuccessRateLayer) on a service; register it with
/// [`HealthRegistry::success_rate`](crate::HealthRegistry::success_rate). Cheap to clone:
/// clones share the window.
///
/// Time is read through a [`Clock`](rampart_core::clock::Clock): tokio's by default, so tests
/// can use paused time.
///
/// ```
/// use std::time::Duration;
/// use rampart_health::{SuccessRate, Status};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let rate = SuccessRate::builder()
///     .window(Duration::from_secs(60), 60)
///     .minimum_calls(20)
///     .healthy_above(99.0)
///     .degraded_above(90.0)
///     .build()
///     .unwrap();
/// for i in 0..100 {
///     rate.record(i % 10 != 0); // 90 % successes
/// }
/// assert_eq!(rate.status(), Status::Unhealthy); // not above 90 %
///
/// // A minute later the window has slid past those calls.
/// tokio::time::advance(Duration::from_secs(60)).await;
/// assert_eq!(rate.snapshot().calls(), 0);
/// assert_eq!(rate.status(), Status::Healthy);
///
/// let err = SuccessRate::builder().degraded_above(99.5).build().unwrap_err();
/// assert_eq!(err.field(), "degraded_above");
/// # }
/// ```
#[derive(Clone)]
pub struct SuccessRate {
    inner: Arc<Inner>,
}

struct Inner {
    /// Successes and failures over the window.
    counts: RollingCounts<2>,
    buckets: u32,
    window: Duration,
    minimum_calls: u64,
    healthy_above: f64,
    degraded_above: f64,
}

impl fmt::Debug for SuccessRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("SuccessRate")
            .field("window", &i.window)
            .field("buckets", &i.buckets)
            .field("minimum_calls", &i.minimum_calls)
            .field("healthy_above", &i.healthy_above)
            .field("degraded_above", &i.degraded_above)
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl Default for SuccessRate {
    fn default() -> Self {
        Self::new()
    }
}

impl SuccessRate {
    /// A tracker with the defaults: 60 s in 60 buckets, 10 calls before it judges, healthy
    /// above 95 %, degraded above 80 %.
    pub fn new() -> Self {
        Self::from_builder(SuccessRateBuilder::default())
    }

    /// A builder starting from the defaults.
    pub fn builder() -> SuccessRateBuilder {
        SuccessRateBuilder::default()
    }

    fn from_builder(b: SuccessRateBuilder) -> Self {
        let clock = b.clock.unwrap_or_else(default_clock);
        Self {
            inner: Arc::new(Inner {
                counts: RollingCounts::new(clock, b.window, b.buckets),
                buckets: b.buckets,
                window: b.window,
                minimum_calls: b.minimum_calls,
                healthy_above: b.healthy_above,
                degraded_above: b.degraded_above,
            }),
        }
    }

    /// Records one call: `true` for a success, `false` for a failure.
    pub fn record(&self, success: bool) {
        let which = if success { SUCCESSES } else { FAILURES };
        self.inner.counts.add(which, 1);
    }

    /// Records a success.
    pub fn record_success(&self) {
        self.record(true);
    }

    /// Records a failure.
    pub fn record_failure(&self) {
        self.record(false);
    }

    /// The counts over the window as it stands now.
    pub fn snapshot(&self) -> SuccessRateSnapshot {
        let [successes, failures] = self.inner.counts.sum();
        SuccessRateSnapshot {
            successes,
            failures,
        }
    }

    /// The verdict on the window as it stands now (see the type's docs).
    pub fn status(&self) -> Status {
        self.judge(&self.snapshot())
    }

    /// The verdict on `snapshot` by this tracker's thresholds.
    pub fn judge(&self, snapshot: &SuccessRateSnapshot) -> Status {
        let inner = &*self.inner;
        match snapshot.rate() {
            _ if snapshot.calls() < inner.minimum_calls => Status::Healthy,
            None => Status::Healthy,
            Some(rate) if rate > inner.healthy_above => Status::Healthy,
            Some(rate) if rate > inner.degraded_above => Status::Degraded,
            Some(_) => Status::Unhealthy,
        }
    }
}

/// The calls in a [`SuccessRate`]'s window at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SuccessRateSnapshot {
    /// Successful calls.
    pub successes: u64,
    /// Failed calls.
    pub failures: u64,
}

impl SuccessRateSnapshot {
    /// Every call counted.
    pub fn calls(&self) -> u64 {
        self.successes + self.failures
    }

    /// The share of successes in percent, `None` with no calls.
    pub fn rate(&self) -> Option<f64> {
        let calls = self.calls();
        (calls > 0).then(|| self.successes as f64 * 100.0 / calls as f64)
    }
}

impl Component for SuccessRate {
    fn kind(&self) -> &'static str {
        "success_rate"
    }

    fn check(&self) -> BoxFuture<'_, ComponentHealth> {
        let inner = &*self.inner;
        let snap = self.snapshot();
        let status = self.judge(&snap);
        let mut health = ComponentHealth::new(status);
        health.reason = match (status, snap.rate()) {
            _ if snap.calls() < inner.minimum_calls => Some(format!(
                "too few calls to judge ({} of {})",
                snap.calls(),
                inner.minimum_calls
            )),
            (Status::Healthy, _) | (_, None) => None,
            (Status::Degraded, Some(rate)) => Some(format!(
                "success rate {rate:.1} % is not above {} %",
                inner.healthy_above
            )),
            (Status::Unhealthy, Some(rate)) => Some(format!(
                "success rate {rate:.1} % is not above {} %",
                inner.degraded_above
            )),
        };
        let health = health
            .detail("success_rate", snap.rate())
            .detail("calls", snap.calls())
            .detail("successes", snap.successes)
            .detail("failures", snap.failures)
            .detail("minimum_calls", inner.minimum_calls)
            .detail("window_secs", inner.window.as_secs_f64())
            .detail("healthy_above", inner.healthy_above)
            .detail("degraded_above", inner.degraded_above);
        Box::pin(std::future::ready(health))
    }
}

/// Builds a [`SuccessRate`]; [`build`](Self::build) checks the values.
#[derive(Clone)]
pub struct SuccessRateBuilder {
    window: Duration,
    buckets: u32,
    minimum_calls: u64,
    healthy_above: f64,
    degraded_above: f64,
    clock: Option<SharedClock>,
}

impl fmt::Debug for SuccessRateBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SuccessRateBuilder")
            .field("window", &self.window)
            .field("buckets", &self.buckets)
            .field("minimum_calls", &self.minimum_calls)
            .field("healthy_above", &self.healthy_above)
            .field("degraded_above", &self.degraded_above)
            .finish_non_exhaustive()
    }
}

impl Default for SuccessRateBuilder {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            buckets: 60,
            minimum_calls: 10,
            healthy_above: 95.0,
            degraded_above: 80.0,
            clock: None,
        }
    }
}

impl SuccessRateBuilder {
    /// The window's length and how many buckets it is cut into (default: 60 s in 60
    /// buckets). `buckets` must be in `1..=3600`, and each bucket at least 1 ms long. More
    /// buckets slide more smoothly.
    pub fn window(mut self, window: Duration, buckets: u32) -> Self {
        self.window = window;
        self.buckets = buckets;
        self
    }

    /// How many calls the window must hold before the rate is judged (default: 10); with fewer,
    /// the tracker reports healthy.
    pub fn minimum_calls(mut self, calls: u64) -> Self {
        self.minimum_calls = calls;
        self
    }

    /// Healthy when the success rate is above this percentage (default: 95). In `0..=100`.
    pub fn healthy_above(mut self, percent: f64) -> Self {
        self.healthy_above = percent;
        self
    }

    /// Degraded when the success rate is above this percentage but not above
    /// [`healthy_above`](Self::healthy_above); unhealthy otherwise (default: 80). In `0..=100`,
    /// and at most `healthy_above`.
    pub fn degraded_above(mut self, percent: f64) -> Self {
        self.degraded_above = percent;
        self
    }

    /// The clock to read time from (default: tokio's, which follows paused time).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Checks the values and builds the tracker.
    pub fn build(self) -> Result<SuccessRate, ConfigError> {
        if !(1..=MAX_BUCKETS).contains(&self.buckets) {
            return Err(ConfigError::new(
                COMPONENT,
                "buckets",
                format!("must be in 1..={MAX_BUCKETS}, got {}", self.buckets),
            ));
        }
        if self.window < Duration::from_millis(1) * self.buckets {
            return Err(ConfigError::new(
                COMPONENT,
                "window",
                format!(
                    "must be at least 1 ms per bucket ({} ms for {} buckets), got {:?}",
                    self.buckets, self.buckets, self.window
                ),
            ));
        }
        if !(0.0..=100.0).contains(&self.healthy_above) {
            return Err(ConfigError::new(
                COMPONENT,
                "healthy_above",
                format!("must be in 0..=100 %, got {}", self.healthy_above),
            ));
        }
        if !(0.0..=self.healthy_above).contains(&self.degraded_above) {
            return Err(ConfigError::new(
                COMPONENT,
                "degraded_above",
                format!(
                    "must be in 0..=healthy_above ({}) %, got {}",
                    self.healthy_above, self.degraded_above
                ),
            ));
        }
        Ok(SuccessRate::from_builder(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_core::clock::ManualClock;

    fn tracker(clock: &ManualClock) -> SuccessRate {
        SuccessRate::builder()
            .clock(clock.shared())
            .build()
            .unwrap()
    }

    fn feed(rate: &SuccessRate, ok: u64, failed: u64) {
        (0..ok).for_each(|_| rate.record_success());
        (0..failed).for_each(|_| rate.record_failure());
    }

    #[test]
    fn thresholds_are_strict() {
        let clock = ManualClock::new();
        let cases = [
            (100, 0, Status::Healthy),
            (96, 4, Status::Healthy),
            (95, 5, Status::Degraded), // exactly 95 % is not above 95 %
            (81, 19, Status::Degraded),
            (80, 20, Status::Unhealthy),
            (0, 100, Status::Unhealthy),
        ];
        for (ok, failed, expected) in cases {
            let rate = tracker(&clock);
            feed(&rate, ok, failed);
            assert_eq!(rate.status(), expected, "{ok} ok, {failed} failed");
        }
    }

    #[test]
    fn too_few_calls_is_healthy() {
        let clock = ManualClock::new();
        let rate = tracker(&clock);
        feed(&rate, 0, 9);
        assert_eq!(rate.snapshot().calls(), 9);
        assert_eq!(rate.status(), Status::Healthy);
        rate.record_failure();
        assert_eq!(rate.status(), Status::Unhealthy);
    }

    #[test]
    fn the_window_slides_bucket_by_bucket() {
        let clock = ManualClock::new();
        let rate = tracker(&clock); // 60 s in 1 s buckets
        feed(&rate, 0, 50); // t = 0: 50 failures
        clock.advance(Duration::from_secs(30));
        feed(&rate, 100, 0); // t = 30 s: 100 successes
        assert_eq!(
            rate.snapshot(),
            SuccessRateSnapshot {
                successes: 100,
                failures: 50
            }
        );
        assert_eq!(rate.status(), Status::Unhealthy); // 66.7 %

        // t = 59.999 s: the first bucket is still in the window.
        clock.advance(Duration::from_millis(29_999));
        assert_eq!(rate.snapshot().failures, 50);
        // t = 60 s: it has slid out.
        clock.advance(Duration::from_millis(1));
        assert_eq!(rate.snapshot().failures, 0);
        assert_eq!(rate.status(), Status::Healthy);

        // t = 90 s: everything is gone, and a bucket reused for new calls starts empty.
        clock.advance(Duration::from_secs(30));
        assert_eq!(rate.snapshot().calls(), 0);
        feed(&rate, 1, 1);
        assert_eq!(
            rate.snapshot(),
            SuccessRateSnapshot {
                successes: 1,
                failures: 1
            }
        );
    }

    #[test]
    fn a_long_idle_time_forgets_everything() {
        let clock = ManualClock::new();
        let rate = tracker(&clock);
        feed(&rate, 5, 50);
        clock.advance(Duration::from_secs(3600 * 24 * 365));
        assert_eq!(rate.snapshot().calls(), 0);
        feed(&rate, 20, 0);
        assert_eq!(rate.status(), Status::Healthy);
    }

    #[test]
    fn config_errors_name_the_field() {
        let err = |b: SuccessRateBuilder| b.build().unwrap_err().field();
        let b = SuccessRate::builder;
        assert_eq!(err(b().window(Duration::from_secs(60), 0)), "buckets");
        assert_eq!(err(b().window(Duration::from_secs(60), 3601)), "buckets");
        assert_eq!(err(b().window(Duration::from_millis(5), 10)), "window");
        assert_eq!(err(b().healthy_above(100.5)), "healthy_above");
        assert_eq!(err(b().healthy_above(f64::NAN)), "healthy_above");
        assert_eq!(err(b().degraded_above(-1.0)), "degraded_above");
        assert_eq!(err(b().degraded_above(96.0)), "degraded_above");
        let msg = b().degraded_above(96.0).build().unwrap_err().to_string();
        assert!(
            msg.contains("degraded_above") && msg.contains("96"),
            "{msg}"
        );
        assert!(b().healthy_above(90.0).degraded_above(90.0).build().is_ok());
    }

    #[test]
    fn concurrent_records_are_all_counted() {
        let rate = SuccessRate::new();
        std::thread::scope(|s| {
            for t in 0..4 {
                let rate = rate.clone();
                s.spawn(move || {
                    for i in 0..10_000 {
                        rate.record((i + t) % 4 != 0);
                    }
                });
            }
        });
        let snap = rate.snapshot();
        assert_eq!(snap.calls(), 40_000);
        assert_eq!(snap.failures, 10_000);
    }
}
