//! Configuration: [`CircuitBreakerConfig`] and its validated builder.

use std::{borrow::Cow, fmt, sync::Arc, time::Duration};

use rampart_core::{
    clock::{SharedClock, default_clock},
    error::ConfigError,
    registry::RegistryLimits,
};

use crate::events::{State, Transition};

const COMPONENT: &str = "circuit breaker";

/// What the failure and slow-call rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlidingWindow {
    /// The last `size` calls.
    ///
    /// Exact: the window holds precisely the most recent `size` outcomes. Every call records
    /// into one shared ring behind a short lock, so many threads hammering one breaker contend
    /// on it; prefer [`SlidingWindow::Time`] for very hot breakers.
    Count {
        /// Number of calls in the window (1..=1 000 000).
        size: u32,
    },
    /// The calls of the last `duration`, in `buckets` rolling buckets (the oldest bucket is
    /// dropped whole as time moves on, as Hystrix does).
    ///
    /// Recorded per CPU shard, so threads never contend on the success path; the rates are
    /// summed over the shards when a failure is recorded.
    Time {
        /// Length of the window.
        duration: Duration,
        /// Number of buckets (1..=1000); each covers `duration / buckets`.
        buckets: u32,
    },
}

/// How long the breaker stays open before it lets probes through.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OpenDuration {
    /// Always the same time.
    Fixed(Duration),
    /// `base × multiplier^n` for the n-th consecutive re-open (a probe failing sends the breaker
    /// back to open), capped at `max`, then spread by ±`jitter` (a fraction in 0..=1) so that
    /// many breakers don't probe at the same moment. A successful close resets n to 0.
    Exponential {
        /// Open time after the first trip.
        base: Duration,
        /// Growth factor per consecutive re-open (≥ 1).
        multiplier: f64,
        /// Upper bound, jitter included.
        max: Duration,
        /// Random spread, as a fraction of the duration (0 = none, 0.2 = ±20 %).
        jitter: f64,
    },
}

impl OpenDuration {
    /// The open time for the `reopens`-th consecutive open (0 = first trip), before jitter.
    pub(crate) fn nominal(&self, reopens: u32) -> Duration {
        match *self {
            OpenDuration::Fixed(d) => d,
            OpenDuration::Exponential {
                base,
                multiplier,
                max,
                ..
            } => {
                let factor = multiplier.powi(reopens.min(1024) as i32);
                let secs = base.as_secs_f64() * factor;
                if !secs.is_finite() || secs >= max.as_secs_f64() {
                    max
                } else {
                    Duration::try_from_secs_f64(secs).map_or(max, |d| d.min(max))
                }
            }
        }
    }

    /// The open time with jitter applied, from a uniform sample `r` in `[0, 1)`.
    pub(crate) fn with_jitter(&self, reopens: u32, r: f64) -> Duration {
        let d = self.nominal(reopens);
        match *self {
            OpenDuration::Exponential { jitter, max, .. } if jitter > 0.0 => {
                let spread = 1.0 + jitter * (2.0 * r - 1.0);
                // Saturating: a `max` of `Duration::MAX` times a spread above 1 does not fit.
                Duration::try_from_secs_f64(d.as_secs_f64() * spread).map_or(max, |d| d.min(max))
            }
            _ => d,
        }
    }
}

/// When a half-open breaker closes again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClosePolicy {
    /// After this many successful probes in a row; any failed (or slow) probe re-opens.
    Successes(u32),
    /// After `probes` probes have completed, close if at least `min_success_rate` percent of
    /// them succeeded (and were not slow), else re-open. At most `probes` probes are let
    /// through per half-open period.
    SuccessRate {
        /// Number of probes to judge by.
        probes: u32,
        /// Required success rate in percent, in (0, 100].
        min_success_rate: f64,
    },
}

type TransitionCallback = Arc<dyn Fn(&Transition) + Send + Sync>;

/// A validated circuit breaker configuration. Build one with [`CircuitBreakerConfig::builder`].
#[derive(Clone)]
pub struct CircuitBreakerConfig {
    pub(crate) name: Cow<'static, str>,
    pub(crate) window: SlidingWindow,
    pub(crate) failure_rate_ppm: Option<u64>,
    pub(crate) slow_call_threshold: Option<Duration>,
    pub(crate) slow_call_rate_ppm: u64,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) minimum_calls: u32,
    pub(crate) half_open_max_probes: u32,
    pub(crate) close_policy: ClosePolicy,
    pub(crate) half_open_max_wait: Option<Duration>,
    pub(crate) open_duration: OpenDuration,
    pub(crate) half_open_on_timer: bool,
    pub(crate) registry: RegistryLimits,
    pub(crate) metrics_per_key: usize,
    pub(crate) clock: SharedClock,
    pub(crate) on_transition: Vec<TransitionCallback>,
}

impl fmt::Debug for CircuitBreakerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerConfig")
            .field("name", &self.name)
            .field("window", &self.window)
            .field("failure_rate_ppm", &self.failure_rate_ppm)
            .field("slow_call_threshold", &self.slow_call_threshold)
            .field("slow_call_rate_ppm", &self.slow_call_rate_ppm)
            .field("consecutive_failures", &self.consecutive_failures)
            .field("minimum_calls", &self.minimum_calls)
            .field("half_open_max_probes", &self.half_open_max_probes)
            .field("close_policy", &self.close_policy)
            .field("half_open_max_wait", &self.half_open_max_wait)
            .field("open_duration", &self.open_duration)
            .field("half_open_on_timer", &self.half_open_on_timer)
            .field("registry", &self.registry)
            .field("clock", &self.clock)
            .field("on_transition", &self.on_transition.len())
            .finish()
    }
}

impl CircuitBreakerConfig {
    /// A builder with the defaults:
    ///
    /// | setting | default |
    /// |---|---|
    /// | sliding window | time-based, 10 s in 10 buckets |
    /// | failure rate threshold | 50 % |
    /// | minimum calls before a rate is judged | 10 |
    /// | slow calls | not judged |
    /// | consecutive failures | not judged |
    /// | open duration | fixed 30 s |
    /// | half-open | 1 concurrent probe, 2 successes to close, no maximum wait |
    /// | move to half-open | lazily, on the next call |
    /// | per-key registry | 1024 keys, idle keys evicted after 10 min |
    pub fn builder() -> CircuitBreakerConfigBuilder {
        CircuitBreakerConfigBuilder::default()
    }

    /// The breaker's name, used in tracing events and metric labels.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        match CircuitBreakerConfigBuilder::default().build() {
            Ok(c) => c,
            Err(e) => unreachable!("the defaults are valid: {e}"),
        }
    }
}

/// The default [`half_open_max_wait`](CircuitBreakerConfigBuilder::half_open_max_wait): a
/// breaker half-open this long without closing re-opens, so a probe that never answers
/// cannot hold it half-open for good.
pub const DEFAULT_HALF_OPEN_MAX_WAIT: Duration = Duration::from_secs(60);

/// Builds a [`CircuitBreakerConfig`]; [`build`](Self::build) validates every field.
#[derive(Clone)]
pub struct CircuitBreakerConfigBuilder {
    name: Cow<'static, str>,
    window: SlidingWindow,
    failure_rate_threshold: Option<f64>,
    slow_call_threshold: Option<Duration>,
    slow_call_rate_threshold: f64,
    consecutive_failures: Option<u32>,
    minimum_calls: u32,
    half_open_max_probes: u32,
    close_policy: ClosePolicy,
    half_open_max_wait: Option<Duration>,
    open_duration: OpenDuration,
    half_open_on_timer: bool,
    registry: RegistryLimits,
    metrics_per_key: usize,
    clock: SharedClock,
    on_transition: Vec<TransitionCallback>,
}

impl fmt::Debug for CircuitBreakerConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerConfigBuilder")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Default for CircuitBreakerConfigBuilder {
    fn default() -> Self {
        Self {
            name: Cow::Borrowed("default"),
            window: SlidingWindow::Time {
                duration: Duration::from_secs(10),
                buckets: 10,
            },
            failure_rate_threshold: Some(50.0),
            slow_call_threshold: None,
            slow_call_rate_threshold: 100.0,
            consecutive_failures: None,
            minimum_calls: 10,
            half_open_max_probes: 1,
            close_policy: ClosePolicy::Successes(2),
            half_open_max_wait: Some(DEFAULT_HALF_OPEN_MAX_WAIT),
            open_duration: OpenDuration::Fixed(Duration::from_secs(30)),
            half_open_on_timer: false,
            registry: RegistryLimits::default(),
            metrics_per_key: 0,
            clock: default_clock(),
            on_transition: Vec::new(),
        }
    }
}

impl CircuitBreakerConfigBuilder {
    /// The name used in tracing events and metric labels (default `"default"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Judge rates over the last `size` calls.
    pub fn count_window(mut self, size: u32) -> Self {
        self.window = SlidingWindow::Count { size };
        self
    }

    /// Judge rates over the calls of the last `duration`, kept in `buckets` rolling buckets.
    pub fn time_window(mut self, duration: Duration, buckets: u32) -> Self {
        self.window = SlidingWindow::Time { duration, buckets };
        self
    }

    /// Trip when at least this percentage of the calls in the window failed (0 < p ≤ 100;
    /// default 50).
    pub fn failure_rate_threshold(mut self, percent: f64) -> Self {
        self.failure_rate_threshold = Some(percent);
        self
    }

    /// Don't trip on the failure rate at all (use consecutive failures or slow calls alone).
    pub fn no_failure_rate(mut self) -> Self {
        self.failure_rate_threshold = None;
        self
    }

    /// Count calls that take longer than `threshold` as slow, and trip when at least
    /// `rate_percent` of the calls in the window were slow (0 < p ≤ 100).
    pub fn slow_calls(mut self, threshold: Duration, rate_percent: f64) -> Self {
        self.slow_call_threshold = Some(threshold);
        self.slow_call_rate_threshold = rate_percent;
        self
    }

    /// Also trip after this many failures in a row, whatever the window says.
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = Some(n);
        self
    }

    /// Judge no rate until the window holds at least this many calls (default 10).
    pub fn minimum_calls(mut self, n: u32) -> Self {
        self.minimum_calls = n;
        self
    }

    /// How many probes may be in flight at once while half-open (default 1). Strictly enforced.
    pub fn half_open_max_probes(mut self, n: u32) -> Self {
        self.half_open_max_probes = n;
        self
    }

    /// When a half-open breaker closes (default: 2 successful probes in a row).
    pub fn close_policy(mut self, policy: ClosePolicy) -> Self {
        self.close_policy = policy;
        self
    }

    /// Re-open if the breaker has been half-open this long without closing (default
    /// [`DEFAULT_HALF_OPEN_MAX_WAIT`], 60 s; `Duration::MAX` for no limit).
    ///
    /// This is what frees a breaker whose probe never answers (a hung connection with no
    /// timeout below the breaker): its slot stays taken, every other call is rejected as
    /// `HalfOpenFull`, and only this bound moves the breaker on (back to open, then to a new
    /// half-open period with fresh probes). Set it above your slowest legitimate call; a probe
    /// slower than it re-opens the breaker, and its late answer is ignored.
    pub fn half_open_max_wait(mut self, wait: Duration) -> Self {
        self.half_open_max_wait = Some(wait);
        self
    }

    /// Stay open this long (fixed).
    pub fn open_duration(mut self, duration: Duration) -> Self {
        self.open_duration = OpenDuration::Fixed(duration);
        self
    }

    /// Stay open for a time that grows with each consecutive re-open.
    pub fn open_duration_policy(mut self, policy: OpenDuration) -> Self {
        self.open_duration = policy;
        self
    }

    /// Also move to half-open on a timer when the open time is over, not only lazily on the
    /// next call (needs a tokio runtime when the breaker trips; without one it stays lazy).
    /// Useful when a health view must show the breaker half-open while no traffic arrives.
    pub fn half_open_on_timer(mut self, on: bool) -> Self {
        self.half_open_on_timer = on;
        self
    }

    /// For per-key breakers: at most this many keys are kept (default 1024).
    pub fn max_keys(mut self, n: usize) -> Self {
        self.registry.max_keys = n;
        self
    }

    /// For per-key breakers: the first `n` keys get metric series of their own (a `key` label
    /// with the key's text); every other key's breaker reports under `key="_other"`. 0 by
    /// default: one set of series for the whole layer (`breaker` = the layer's name), however
    /// many hosts or tenants it sees. Each series costs memory in the metrics exporter for the
    /// life of the process, so keep `n` to the keys you would chart one by one.
    pub fn metrics_per_key(mut self, n: usize) -> Self {
        self.metrics_per_key = n;
        self
    }

    /// For per-key breakers: a breaker unused this long may be evicted (default 10 min).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.registry.idle_timeout = timeout;
        self
    }

    /// The clock (default: tokio's, which follows paused time in tests).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Calls `f` on every state transition, after the transition is made (outside any lock).
    pub fn on_transition(mut self, f: impl Fn(&Transition) + Send + Sync + 'static) -> Self {
        self.on_transition.push(Arc::new(f));
        self
    }

    /// The alert for a breaker opening: `f` gets every move to [`State::Open`] (a trip, a
    /// failed probe, a manual move), with its reason and [`open_for`](Transition::open_for).
    /// An [`on_transition`](Self::on_transition) that filters, run where it runs: keep it
    /// quick, and send a page or webhook from another task. For example:
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicU32, Ordering}};
    /// use rampart_circuit_breaker::CircuitBreakerLayer;
    /// use rampart_core::classify::{Outcome, Record};
    ///
    /// let opened = Arc::new(AtomicU32::new(0));
    /// let o = opened.clone();
    /// let breaker = CircuitBreakerLayer::builder()
    ///     .consecutive_failures(1)
    ///     .on_open(move |t| { assert!(t.open_for.is_some()); o.fetch_add(1, Ordering::Relaxed); })
    ///     .layer()
    ///     .unwrap();
    /// breaker.try_acquire().unwrap().record(Outcome::TRANSIENT);
    /// assert_eq!(opened.load(Ordering::Relaxed), 1);
    /// breaker.handle().reset(); // a move to closed: no alert
    /// assert_eq!(opened.load(Ordering::Relaxed), 1);
    /// ```
    pub fn on_open(self, f: impl Fn(&Transition) + Send + Sync + 'static) -> Self {
        self.on_transition(move |t| {
            if t.to == State::Open {
                f(t);
            }
        })
    }

    /// Validates every field and builds the configuration.
    pub fn build(self) -> Result<CircuitBreakerConfig, ConfigError> {
        fn percent(field: &'static str, p: f64) -> Result<u64, ConfigError> {
            if p.is_finite() && p > 0.0 && p <= 100.0 {
                Ok((p * 10_000.0).round() as u64)
            } else {
                Err(ConfigError::new(
                    COMPONENT,
                    field,
                    format!("must be a percentage in (0, 100], got {p}"),
                ))
            }
        }
        fn positive(field: &'static str, d: Duration) -> Result<(), ConfigError> {
            if d.is_zero() {
                Err(ConfigError::new(
                    COMPONENT,
                    field,
                    "must be greater than zero, got 0s",
                ))
            } else {
                Ok(())
            }
        }

        let failure_rate_ppm = self
            .failure_rate_threshold
            .map(|p| percent("failure_rate_threshold", p))
            .transpose()?;
        let slow_call_rate_ppm =
            percent("slow_call_rate_threshold", self.slow_call_rate_threshold)?;
        if let Some(t) = self.slow_call_threshold {
            positive("slow_call_threshold", t)?;
        }
        if self.consecutive_failures == Some(0) {
            return Err(ConfigError::new(
                COMPONENT,
                "consecutive_failures",
                "must be at least 1, got 0",
            ));
        }
        if self.minimum_calls == 0 {
            return Err(ConfigError::new(
                COMPONENT,
                "minimum_calls",
                "must be at least 1, got 0",
            ));
        }
        match self.window {
            SlidingWindow::Count { size } => {
                if !(1..=1_000_000).contains(&size) {
                    return Err(ConfigError::new(
                        COMPONENT,
                        "sliding_window",
                        format!("count window size must be in 1..=1000000, got {size}"),
                    ));
                }
                if self.minimum_calls > size {
                    return Err(ConfigError::new(
                        COMPONENT,
                        "minimum_calls",
                        format!(
                            "must not exceed the count window size {size} (the breaker could never trip), got {}",
                            self.minimum_calls
                        ),
                    ));
                }
            }
            SlidingWindow::Time { duration, buckets } => {
                if !(1..=1000).contains(&buckets) {
                    return Err(ConfigError::new(
                        COMPONENT,
                        "sliding_window",
                        format!("time window buckets must be in 1..=1000, got {buckets}"),
                    ));
                }
                if duration.as_millis() < u128::from(buckets) {
                    return Err(ConfigError::new(
                        COMPONENT,
                        "sliding_window",
                        format!(
                            "time window must be at least 1 ms per bucket, got {duration:?} for {buckets} buckets"
                        ),
                    ));
                }
            }
        }
        if self.failure_rate_ppm_is_none(failure_rate_ppm)
            && self.slow_call_threshold.is_none()
            && self.consecutive_failures.is_none()
        {
            return Err(ConfigError::new(
                COMPONENT,
                "failure_rate_threshold",
                "no trip policy left: set a failure rate, slow calls or consecutive failures",
            ));
        }
        if self.half_open_max_probes == 0 {
            return Err(ConfigError::new(
                COMPONENT,
                "half_open_max_probes",
                "must be at least 1, got 0",
            ));
        }
        match self.close_policy {
            ClosePolicy::Successes(0) => {
                return Err(ConfigError::new(
                    COMPONENT,
                    "close_policy",
                    "successes must be at least 1, got 0",
                ));
            }
            ClosePolicy::SuccessRate {
                probes,
                min_success_rate,
            } => {
                if probes == 0 {
                    return Err(ConfigError::new(
                        COMPONENT,
                        "close_policy",
                        "probes must be at least 1, got 0",
                    ));
                }
                percent("close_policy", min_success_rate)?;
            }
            ClosePolicy::Successes(_) => {}
        }
        if let Some(w) = self.half_open_max_wait {
            positive("half_open_max_wait", w)?;
        }
        match self.open_duration {
            OpenDuration::Fixed(d) => positive("open_duration", d)?,
            OpenDuration::Exponential {
                base,
                multiplier,
                max,
                jitter,
            } => {
                positive("open_duration", base)?;
                if !(multiplier.is_finite() && multiplier >= 1.0) {
                    return Err(ConfigError::new(
                        COMPONENT,
                        "open_duration",
                        format!("multiplier must be a finite number >= 1, got {multiplier}"),
                    ));
                }
                if max < base {
                    return Err(ConfigError::new(
                        COMPONENT,
                        "open_duration",
                        format!("max ({max:?}) must be at least base ({base:?})"),
                    ));
                }
                if !(0.0..=1.0).contains(&jitter) {
                    return Err(ConfigError::new(
                        COMPONENT,
                        "open_duration",
                        format!("jitter must be a fraction in 0..=1, got {jitter}"),
                    ));
                }
            }
        }
        self.registry.validate(COMPONENT)?;

        Ok(CircuitBreakerConfig {
            name: self.name,
            window: self.window,
            failure_rate_ppm,
            slow_call_threshold: self.slow_call_threshold,
            slow_call_rate_ppm,
            consecutive_failures: self.consecutive_failures,
            minimum_calls: self.minimum_calls,
            half_open_max_probes: self.half_open_max_probes,
            close_policy: self.close_policy,
            half_open_max_wait: self.half_open_max_wait,
            open_duration: self.open_duration,
            half_open_on_timer: self.half_open_on_timer,
            registry: self.registry,
            metrics_per_key: self.metrics_per_key,
            clock: self.clock,
            on_transition: self.on_transition,
        })
    }

    fn failure_rate_ppm_is_none(&self, ppm: Option<u64>) -> bool {
        ppm.is_none()
    }
}

#[cfg(test)]
mod tests;
