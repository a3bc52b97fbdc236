//! [`RateLimited`]: a call refused by a rate limit or a cost budget.

use std::{error::Error, fmt, time::Duration};

use crate::error::Rejection;

/// Which kind of limit refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitedBy {
    /// A rate limit (so many units per period, with a burst).
    Rate,
    /// A cost budget (so many units per day, month, …).
    Budget,
}

/// Why a limit refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitReason {
    /// The limit has no room for the call's cost now; it will after `retry_after`.
    OverLimit,
    /// The call costs more than the limit can ever grant at once (more than a rate limit's
    /// burst, more than a budget's whole amount): it is refused at once, never waits.
    CostTooHigh,
    /// The limit lets calls wait, and this one would have had to wait longer than allowed.
    WaitTooLong,
}

impl LimitReason {
    /// A lowercase name: `over_limit`, `cost_too_high`, `wait_too_long`.
    pub const fn as_str(self) -> &'static str {
        match self {
            LimitReason::OverLimit => "over_limit",
            LimitReason::CostTooHigh => "cost_too_high",
            LimitReason::WaitTooLong => "wait_too_long",
        }
    }
}

/// What a limit allows, for the IETF `RateLimit-Policy` and `RateLimit` headers: `quota`
/// units per `window`, of which `remaining` are left, the quota being whole again in `reset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitInfo {
    /// Units per window.
    pub quota: u64,
    /// The window.
    pub window: Duration,
    /// Units left now.
    pub remaining: u64,
    /// Time until the whole quota is available again.
    pub reset: Duration,
}

/// A call refused by a rate limit or a cost budget. The inner service was not called.
///
/// Small and `Copy`: making one never allocates.
///
/// # Mapping to protocols
///
/// - HTTP: `429 Too Many Requests`, `Retry-After` (seconds, rounded up) when the call can fit
///   later, and the `RateLimit-Policy` / `RateLimit` headers of the IETF draft.
/// - gRPC: `Status::resource_exhausted`, with `grpc-retry-pushback-ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    by: LimitedBy,
    reason: LimitReason,
    cost: u64,
    /// Nanoseconds (`u64::MAX`: never), to keep the value small.
    retry_after: u64,
    info: LimitInfo,
}

impl RateLimited {
    /// A refusal by a limit of kind `by` for `reason`, of a call costing `cost`; the call
    /// would fit after `retry_after` (`None`: never, as for [`LimitReason::CostTooHigh`]).
    pub const fn new(
        by: LimitedBy,
        reason: LimitReason,
        cost: u64,
        retry_after: Option<Duration>,
        info: LimitInfo,
    ) -> Self {
        let retry_after = match retry_after {
            Some(d) => {
                let n = d.as_nanos();
                if n >= u64::MAX as u128 {
                    u64::MAX - 1
                } else {
                    n as u64
                }
            }
            None => u64::MAX,
        };
        Self {
            by,
            reason,
            cost,
            retry_after,
            info,
        }
    }

    /// The kind of limit.
    pub const fn limited_by(&self) -> LimitedBy {
        self.by
    }

    /// Why the call was refused.
    pub const fn reason(&self) -> LimitReason {
        self.reason
    }

    /// What the call would have cost.
    pub const fn cost(&self) -> u64 {
        self.cost
    }

    /// How long until the call would fit, if it ever can.
    pub const fn retry_after(&self) -> Option<Duration> {
        if self.retry_after == u64::MAX {
            None
        } else {
            Some(Duration::from_nanos(self.retry_after))
        }
    }

    /// The limit, for the `RateLimit-Policy` and `RateLimit` headers.
    pub const fn info(&self) -> LimitInfo {
        self.info
    }

    /// A short lowercase description, e.g. `rate limit exceeded`.
    pub const fn message(&self) -> &'static str {
        match (self.by, self.reason) {
            (LimitedBy::Rate, LimitReason::OverLimit) => "rate limit exceeded",
            (LimitedBy::Rate, LimitReason::CostTooHigh) => "request costs more than the burst",
            (LimitedBy::Rate, LimitReason::WaitTooLong) => {
                "rate limit exceeded: the wait would be too long"
            }
            (LimitedBy::Budget, LimitReason::OverLimit) => "budget exhausted for this period",
            (LimitedBy::Budget, LimitReason::CostTooHigh) => {
                "request costs more than the whole budget"
            }
            (LimitedBy::Budget, LimitReason::WaitTooLong) => {
                "budget exhausted: the wait would be too long"
            }
        }
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (cost {}, limit {} per {:?})",
            self.message(),
            self.cost,
            self.info.quota,
            self.info.window
        )?;
        if let Some(d) = self.retry_after() {
            write!(f, "; retry after {d:?}")?;
        }
        Ok(())
    }
}

impl Error for RateLimited {}

impl Rejection for RateLimited {
    fn retry_after(&self) -> Option<Duration> {
        RateLimited::retry_after(self)
    }
}
