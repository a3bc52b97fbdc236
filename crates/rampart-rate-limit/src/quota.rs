//! [`Quota`]: how many units per period, with what burst.

use std::time::Duration;

use rampart_core::error::ConfigError;

/// A rate: `units` per `period`, of which up to `burst` may go at once.
///
/// The limiter spaces units by `period / units` (the *emission interval*, in whole
/// nanoseconds, rounded up, so that it never admits more than the quota) and lets a caller
/// that has been idle spend up to `burst` units at once. The default burst is `units`: a
/// whole period's worth.
///
/// ```
/// use std::time::Duration;
/// use rampart_rate_limit::Quota;
///
/// // 100 a minute, at most 10 at once.
/// let quota = Quota::per_minute(100).burst(10);
/// assert_eq!(quota.units(), 100);
/// assert_eq!(quota.period(), Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    units: u64,
    period: Duration,
    burst: Option<u64>,
}

/// `100 per 60s, burst 20`.
impl std::fmt::Display for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} per {:?}, burst {}",
            self.units,
            self.period,
            self.burst_units()
        )
    }
}

impl Quota {
    /// `units` per `period`.
    pub const fn new(units: u64, period: Duration) -> Self {
        Self {
            units,
            period,
            burst: None,
        }
    }

    /// `units` per second.
    pub const fn per_second(units: u64) -> Self {
        Self::new(units, Duration::from_secs(1))
    }

    /// `units` per minute.
    pub const fn per_minute(units: u64) -> Self {
        Self::new(units, Duration::from_secs(60))
    }

    /// `units` per hour.
    pub const fn per_hour(units: u64) -> Self {
        Self::new(units, Duration::from_secs(3600))
    }

    /// At most `burst` units at once (default: `units`).
    pub const fn burst(mut self, burst: u64) -> Self {
        self.burst = Some(burst);
        self
    }

    /// The units per period.
    pub const fn units(&self) -> u64 {
        self.units
    }

    /// The period.
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// The burst.
    pub const fn burst_units(&self) -> u64 {
        match self.burst {
            Some(b) => b,
            None => self.units,
        }
    }

    /// The limiter's parameters, or an error naming the field at fault.
    pub(crate) fn params(&self, component: &'static str) -> Result<Params, ConfigError> {
        if self.units == 0 {
            return Err(ConfigError::new(
                component,
                "quota.units",
                "must be at least 1, got 0",
            ));
        }
        let period = u64::try_from(self.period.as_nanos())
            .map_err(|_| ConfigError::new(component, "quota.period", "must be under 500 years"))?;
        if period == 0 {
            return Err(ConfigError::new(
                component,
                "quota.period",
                "must be greater than zero, got 0s",
            ));
        }
        if self.units > period {
            return Err(ConfigError::new(
                component,
                "quota.units",
                format!(
                    "must be at most one per nanosecond of the period ({period}), got {}",
                    self.units
                ),
            ));
        }
        let burst = self.burst_units();
        if burst == 0 {
            return Err(ConfigError::new(
                component,
                "quota.burst",
                "must be at least 1, got 0",
            ));
        }
        let interval = period.div_ceil(self.units);
        let Some(tau) = burst.checked_mul(interval) else {
            return Err(ConfigError::new(
                component,
                "quota.burst",
                format!("times the interval ({interval} ns) must fit in 584 years, got {burst}"),
            ));
        };
        Ok(Params {
            interval,
            burst,
            tau,
            units: self.units,
            period: self.period,
        })
    }
}

/// A validated quota, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    /// Nanoseconds per unit (rounded up).
    pub(crate) interval: u64,
    /// Units at once.
    pub(crate) burst: u64,
    /// `burst * interval`: how far ahead of now the theoretical arrival time may run.
    pub(crate) tau: u64,
    pub(crate) units: u64,
    pub(crate) period: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_quotas_name_their_field() {
        let field = |q: Quota| q.params("rate_limit").unwrap_err().field();
        assert_eq!(field(Quota::per_second(0)), "quota.units");
        assert_eq!(field(Quota::new(1, Duration::ZERO)), "quota.period");
        assert_eq!(field(Quota::per_second(1).burst(0)), "quota.burst");
        assert_eq!(
            field(Quota::new(10, Duration::from_nanos(5))),
            "quota.units"
        );
        assert_eq!(field(Quota::per_hour(1).burst(u64::MAX)), "quota.burst");
    }

    #[test]
    fn the_interval_is_rounded_up_so_the_quota_is_never_exceeded() {
        let p = Quota::per_second(3).params("t").unwrap();
        assert_eq!(p.interval, 333_333_334);
        assert_eq!((p.burst, p.tau), (3, 3 * 333_333_334));
    }
}
