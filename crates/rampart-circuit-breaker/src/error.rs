//! Errors: the [`CircuitOpen`] rejection and the service's [`BreakerError`].

use std::{error::Error, fmt, time::Duration};

use rampart_core::{
    clock::Instant,
    error::{PolicyError, Rejection},
};

/// Why a call was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectedBy {
    /// The breaker is open.
    Open,
    /// The breaker is half-open and every probe slot is taken.
    HalfOpenFull,
    /// The breaker was forced open through its handle.
    ForcedOpen,
}

/// A call rejected by an open (or saturated half-open) circuit breaker.
///
/// Small and `Copy`: making one never allocates, nor reads the clock.
/// [`retry_after`](Self::retry_after) tells how long until the breaker lets probes through, as
/// of when it is asked; it is `None` when nobody knows (forced open, or half-open with all probe
/// slots taken).
///
/// # Mapping to protocols
///
/// - HTTP: `503 Service Unavailable` with `Retry-After: ceil(retry_after)` seconds.
/// - gRPC: `Status::unavailable`, with the retry delay in `grpc-retry-pushback-ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitOpen {
    hint: Hint,
    by: RejectedBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hint {
    Unknown,
    After(Duration),
    /// The end of the open time on tokio's clock: the time left is worked out when asked.
    Until(Instant),
}

impl CircuitOpen {
    /// A rejection.
    pub const fn new(by: RejectedBy, retry_after: Option<Duration>) -> Self {
        let hint = match retry_after {
            Some(d) => Hint::After(d),
            None => Hint::Unknown,
        };
        Self { hint, by }
    }

    /// A rejection by a breaker that opens until `until`, on tokio's clock.
    pub(crate) const fn until(by: RejectedBy, until: Instant) -> Self {
        Self {
            hint: Hint::Until(until),
            by,
        }
    }

    /// How long until the breaker will let a probe through, if known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.hint {
            Hint::Unknown => None,
            Hint::After(d) => Some(d),
            Hint::Until(t) => Some(t.saturating_duration_since(Instant::now())),
        }
    }

    /// What rejected the call.
    pub const fn rejected_by(&self) -> RejectedBy {
        self.by
    }

    /// `Retry-After` in whole seconds, rounded up (at least 1), for an HTTP response.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after().map(|d| {
            let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            s.max(1)
        })
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.by {
            RejectedBy::Open => f.write_str("circuit breaker is open")?,
            RejectedBy::HalfOpenFull => {
                f.write_str("circuit breaker is half-open and all probe slots are taken")?
            }
            RejectedBy::ForcedOpen => f.write_str("circuit breaker is forced open")?,
        }
        if let Some(d) = self.retry_after() {
            write!(f, "; retry after {d:?}")?;
        }
        Ok(())
    }
}

impl Error for CircuitOpen {}

impl Rejection for CircuitOpen {
    fn retry_after(&self) -> Option<Duration> {
        CircuitOpen::retry_after(self)
    }
}

/// The error of a [`CircuitBreaker`](crate::CircuitBreaker) service: its own rejection
/// ([`CircuitOpen`]), or the inner service's error untouched.
///
/// See [`PolicyError`] for its methods: `rejection()`, `into_inner()`, `into_box()`. A rejection
/// never allocates, and [`rampart_core::error::find`] finds the [`CircuitOpen`] through any
/// number of boxes.
pub type BreakerError<E> = PolicyError<CircuitOpen, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_core::error::{BoxError, find};

    #[test]
    fn rejection_is_found_through_a_box() {
        let e: BoxError = Box::new(BreakerError::<std::io::Error>::Rejected(CircuitOpen::new(
            RejectedBy::Open,
            Some(Duration::from_millis(1500)),
        )));
        let open = find::<CircuitOpen>(&*e).expect("rejection in chain");
        assert_eq!(open.retry_after_secs(), Some(2));
        assert_eq!(open.rejected_by(), RejectedBy::Open);
    }

    #[test]
    fn inner_error_is_transparent() {
        let e = BreakerError::Inner(std::io::Error::other("boom"));
        assert_eq!(e.to_string(), "boom");
        let boxed = e.into_box();
        assert!(boxed.downcast_ref::<std::io::Error>().is_some());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let r = |ms| {
            CircuitOpen::new(RejectedBy::Open, Some(Duration::from_millis(ms))).retry_after_secs()
        };
        assert_eq!(r(1), Some(1));
        assert_eq!(r(1000), Some(1));
        assert_eq!(r(1001), Some(2));
        assert_eq!(r(0), Some(1));
        assert_eq!(
            CircuitOpen::new(RejectedBy::ForcedOpen, None).retry_after_secs(),
            None
        );
    }
}
