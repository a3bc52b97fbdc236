//! [`RateLimitBuilder`]: a rate limit's configuration, checked when the layer is built.

use std::{fmt, sync::Arc, time::Duration};

use rampart_core::{
    clock::{SharedClock, default_clock},
    error::ConfigError,
    registry::RegistryLimits,
};

use crate::{quota::Quota, state::Core};

/// The component name in configuration errors.
pub(crate) const COMPONENT: &str = "rate_limit";

/// Configures a rate limit; [`layer`](Self::layer) (one limit for every call) or
/// [`keyed`](Self::keyed) (one per key) checks it and builds the layer.
#[derive(Clone)]
pub struct RateLimitBuilder {
    name: Arc<str>,
    quota: Quota,
    max_wait: Duration,
    shadow: bool,
    pub(crate) clock: SharedClock,
    fast_clock: bool,
    pub(crate) limits: RegistryLimits,
}

impl fmt::Debug for RateLimitBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitBuilder")
            .field("name", &self.name)
            .field("quota", &self.quota)
            .field("max_wait", &self.max_wait)
            .field("shadow", &self.shadow)
            .finish_non_exhaustive()
    }
}

impl RateLimitBuilder {
    pub(crate) fn new(quota: Quota) -> Self {
        Self {
            name: Arc::from("default"),
            quota,
            max_wait: Duration::ZERO,
            shadow: false,
            clock: default_clock(),
            fast_clock: false,
            limits: RegistryLimits {
                max_keys: 100_000,
                idle_timeout: Duration::from_secs(600),
            },
        }
    }

    /// The `name` label of the limit's metrics and tracing events (default `"default"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Lets a call over the limit wait up to `max_wait` for its turn instead of being refused
    /// at once (the default, `0`). A call that would wait longer is refused at once
    /// ([`LimitReason::WaitTooLong`](rampart_core::rejection::LimitReason::WaitTooLong));
    /// one that waits has its cost reserved, so later calls queue behind it in order.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// Shadow mode: decide and count as usual, but let every call through (a refusal is
    /// counted as `shadow_rejected` and traced at `debug`). A refused call spends nothing,
    /// as it would when enforced, so the counts are what enforcing would do. Switchable at
    /// run time through the handle.
    pub fn shadow(mut self, on: bool) -> Self {
        self.shadow = on;
        self
    }

    /// The clock (default: tokio's, so paused-time tests drive the limit).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Reads the CPU's time-stamp counter (through `quanta`, as governor does) instead of
    /// [`clock`](Self::clock): a clock read of a few nanoseconds instead of the system call
    /// behind a monotonic clock (tens of nanoseconds on a virtual machine), for limits on the
    /// hottest paths. The trade-off: the limit then follows real time only, not tokio's paused
    /// clock, so paused-time tests of a service behind it see real time pass.
    pub fn fast_clock(mut self) -> Self {
        self.fast_clock = true;
        self
    }

    /// With [`keyed`](Self::keyed): at most this many keys are kept (default 100 000).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.limits.max_keys = max_keys;
        self
    }

    /// With [`keyed`](Self::keyed): a key unused this long may be forgotten (default 10 min).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.limits.idle_timeout = idle;
        self
    }

    pub(crate) fn core(&self) -> Result<Arc<Core>, ConfigError> {
        let params = self.quota.params(COMPONENT)?;
        Ok(Arc::new(Core::new(
            self.name.clone(),
            &params,
            self.max_wait,
            self.shadow,
            self.clock.clone(),
            self.fast_clock,
        )))
    }
}
