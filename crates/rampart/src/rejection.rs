//! Recognising rampart's rejections in any error, whatever wrapped them.
//!
//! Each pattern rejects calls with its own typed error (the circuit breaker with
//! `CircuitOpen`, the bulkhead with `BulkheadFull`), all implementing [`Rejection`], and
//! returns it as `PolicyError::Rejected` (see [`PolicyError`](rampart_core::error::PolicyError)).
//! [`Rejected::find`] walks an error's source chain, recognises any of them and returns a
//! small, protocol-neutral summary: which [`RejectionKind`], when to retry, and a message. The
//! `rampart::axum` and `rampart::tonic` modules map that summary to a response or a `Status`,
//! so a new pattern only has to be taught here once.
//!
//! | [`RejectionKind`] | rejected by | `retry_after` | HTTP | gRPC |
//! |---|---|---|---|---|
//! | [`CircuitOpen`](RejectionKind::CircuitOpen) | circuit breaker | the rest of the open time (`None` when forced open or half-open) | `503` + `Retry-After` | `UNAVAILABLE` + `grpc-retry-pushback-ms` |
//! | [`BulkheadFull`](RejectionKind::BulkheadFull) | bulkhead | always `None`: nobody knows when a permit frees | `503` | `RESOURCE_EXHAUSTED` |
//! | [`Timeout`](RejectionKind::Timeout) | a deadline (`rampart-timeout`, a retry's attempt timeout) | `None` | `504` | `DEADLINE_EXCEEDED` |
//!
//! ```
//! # #[cfg(feature = "circuit-breaker")] {
//! use std::time::Duration;
//! use rampart::circuit_breaker::{BreakerError, CircuitOpen, RejectedBy};
//! use rampart::core::error::BoxError;
//! use rampart::rejection::{Rejected, RejectionKind};
//!
//! let open = CircuitOpen::new(RejectedBy::Open, Some(Duration::from_millis(1200)));
//! let err: BoxError = Box::new(BreakerError::<std::io::Error>::Rejected(open));
//!
//! let rejected = Rejected::find(&*err).unwrap();
//! assert_eq!(rejected.kind(), RejectionKind::CircuitOpen);
//! assert_eq!(rejected.retry_after_secs(), Some(2)); // rounded up
//! assert_eq!(rejected.retry_after_millis(), Some(1200));
//!
//! // Any other error is not a rejection.
//! let other: BoxError = Box::new(std::io::Error::other("connection reset"));
//! assert!(Rejected::find(&*other).is_none());
//! # }
//! ```

use std::{error::Error, fmt, time::Duration};

pub use rampart_core::error::Rejection;

/// Which policy rejected a call.
///
/// Non-exhaustive: a variant is added as each pattern lands. Inside this crate every match on
/// it is exhaustive (no `_` arm), so a new variant does not compile until the HTTP and gRPC
/// mappings have an arm for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// A circuit breaker is open (or half-open with every probe slot taken, or forced open).
    CircuitOpen,
    /// A bulkhead had no permit for the call's class: none free and no waiting allowed, the
    /// wait queue full, or the wait elapsed.
    BulkheadFull,
    /// A deadline or timeout passed (any error with `rampart_core::error::Elapsed` in its
    /// chain: a `rampart-timeout` deadline, a retry whose last attempt timed out).
    Timeout,
}

impl RejectionKind {
    /// A lowercase, stable name, for logs and metric labels: `circuit_open`, `bulkhead_full`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectionKind::CircuitOpen => "circuit_open",
            RejectionKind::BulkheadFull => "bulkhead_full",
            RejectionKind::Timeout => "timeout",
        }
    }
}

impl fmt::Display for RejectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rampart rejection found in an error: what rejected the call and when to try again.
///
/// Small and `Copy`; owns nothing, so it can outlive the error and be turned into a response
/// (with the `axum` feature it implements `IntoResponse`; with `tonic`, `Into<tonic::Status>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    kind: RejectionKind,
    retry_after: Option<Duration>,
    message: &'static str,
}

impl Rejected {
    /// Finds a rampart rejection in `err` or anywhere in its [`source`](Error::source) chain;
    /// `None` if the error is something else (the inner service's own failure).
    ///
    /// Pass a `BoxError` as `&*err`.
    pub fn find(err: &(dyn Error + 'static)) -> Option<Rejected> {
        let mut current = Some(err);
        while let Some(e) = current {
            if let Some(found) = Self::downcast(e) {
                return Some(found);
            }
            current = e.source();
        }
        None
    }

    /// Recognises one error (not its sources). Each pattern adds one arm here.
    fn downcast(e: &(dyn Error + 'static)) -> Option<Rejected> {
        #[cfg(feature = "circuit-breaker")]
        if let Some(open) = e.downcast_ref::<rampart_circuit_breaker::CircuitOpen>() {
            use rampart_circuit_breaker::RejectedBy;
            let message = match open.rejected_by() {
                RejectedBy::Open => "circuit breaker is open",
                RejectedBy::HalfOpenFull => {
                    "circuit breaker is half-open and all probe slots are taken"
                }
                RejectedBy::ForcedOpen => "circuit breaker is forced open",
            };
            return Some(Rejected::new(
                RejectionKind::CircuitOpen,
                Rejection::retry_after(open),
                message,
            ));
        }
        if e.downcast_ref::<rampart_core::error::Elapsed>().is_some() {
            return Some(Rejected::new(
                RejectionKind::Timeout,
                None,
                "the deadline passed before the call completed",
            ));
        }
        #[cfg(feature = "bulkhead")]
        if let Some(full) = e.downcast_ref::<rampart_bulkhead::BulkheadFull>() {
            use rampart_bulkhead::FullReason;
            // The class name is not in the message: `Rejected` owns nothing, and the class is
            // the server's business. It is in the `BulkheadFull` (and its tracing event).
            let message = match full.reason() {
                FullReason::NoCapacity => "bulkhead is full",
                FullReason::QueueFull => "bulkhead is full and its wait queue is full",
                FullReason::WaitElapsed => "bulkhead is full: no permit within the wait time",
            };
            return Some(Rejected::new(
                RejectionKind::BulkheadFull,
                Rejection::retry_after(full),
                message,
            ));
        }
        None
    }

    const fn new(
        kind: RejectionKind,
        retry_after: Option<Duration>,
        message: &'static str,
    ) -> Self {
        Self {
            kind,
            retry_after,
            message,
        }
    }

    /// Which policy rejected the call.
    pub const fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// How long the caller should wait before trying again, if the policy knows.
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// [`retry_after`](Self::retry_after) in whole seconds, rounded up and at least 1: the value
    /// of an HTTP `Retry-After` header.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after
            .map(|d| (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1))
    }

    /// [`retry_after`](Self::retry_after) in milliseconds, rounded up: the value of gRPC's
    /// `grpc-retry-pushback-ms`.
    pub fn retry_after_millis(&self) -> Option<u64> {
        // gRPC clients read `grpc-retry-pushback-ms` as a signed 32-bit number and treat
        // anything larger as "don't retry" (gRFC A6): never send more than `i32::MAX`.
        self.retry_after.map(|d| {
            let ms = d.as_millis() + u128::from(d.subsec_nanos() % 1_000_000 > 0);
            u64::try_from(ms.min(i32::MAX as u128)).unwrap_or(u64::MAX)
        })
    }

    /// A short lowercase description, e.g. `circuit breaker is open`.
    pub const fn message(&self) -> &'static str {
        self.message
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message)?;
        if let Some(d) = self.retry_after {
            write!(f, "; retry after {d:?}")?;
        }
        Ok(())
    }
}

#[cfg(all(test, feature = "circuit-breaker"))]
mod tests {
    use super::*;
    use rampart_circuit_breaker::{BreakerError, CircuitOpen, RejectedBy};
    use rampart_core::error::BoxError;

    #[derive(Debug)]
    struct Wrapper(BoxError);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapper")
        }
    }
    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    fn open(ms: u64) -> CircuitOpen {
        CircuitOpen::new(RejectedBy::Open, Some(Duration::from_millis(ms)))
    }

    #[test]
    fn finds_a_rejection_through_layers_of_wrapping() {
        let bare: BoxError = Box::new(open(1500));
        let via_breaker_error: BoxError =
            Box::new(BreakerError::<std::io::Error>::Rejected(open(1500)));
        let wrapped: BoxError = Box::new(Wrapper(Box::new(Wrapper(via_breaker_error))));
        for err in [bare, wrapped] {
            let r = Rejected::find(&*err).expect("found");
            assert_eq!(r.kind(), RejectionKind::CircuitOpen);
            assert_eq!(r.retry_after(), Some(Duration::from_millis(1500)));
            assert_eq!(r.retry_after_secs(), Some(2));
        }
    }

    #[test]
    fn inner_failures_are_not_rejections() {
        let err: BoxError = Box::new(BreakerError::Inner(std::io::Error::other("reset")));
        assert_eq!(Rejected::find(&*err), None);
    }

    #[test]
    fn retry_after_rounding() {
        let r = |ms| Rejected::find(&open(ms)).expect("found");
        assert_eq!(r(0).retry_after_secs(), Some(1));
        assert_eq!(r(1000).retry_after_secs(), Some(1));
        assert_eq!(r(1001).retry_after_secs(), Some(2));
        assert_eq!(r(0).retry_after_millis(), Some(0));
        assert_eq!(r(250).retry_after_millis(), Some(250));
        let sub_ms = CircuitOpen::new(RejectedBy::Open, Some(Duration::from_micros(1500)));
        assert_eq!(
            Rejected::find(&sub_ms).and_then(|r| r.retry_after_millis()),
            Some(2)
        );
    }

    #[test]
    fn unknown_retry_after_stays_unknown() {
        let forced = CircuitOpen::new(RejectedBy::ForcedOpen, None);
        let r = Rejected::find(&forced).expect("found");
        assert_eq!(r.retry_after_secs(), None);
        assert_eq!(r.retry_after_millis(), None);
        assert_eq!(r.message(), "circuit breaker is forced open");
        assert_eq!(r.to_string(), "circuit breaker is forced open");
    }
}

/// Real bulkhead rejections, for the tests of this crate (`BulkheadFull` has no public
/// constructor: only a bulkhead makes one).
#[cfg(all(test, feature = "bulkhead"))]
pub(crate) mod bulkhead_fixture {
    use std::{convert::Infallible, future::pending, time::Duration};

    use rampart_bulkhead::{BulkheadError, BulkheadLayer, FullReason};
    use tower::{Layer, Service, ServiceExt, service_fn};

    /// The error of a call rejected by a one-permit bulkhead, for `reason`. `WaitElapsed`
    /// waits 10 ms: call it from a `start_paused` test.
    pub(crate) async fn rejection(reason: FullReason) -> BulkheadError<Infallible> {
        let builder = BulkheadLayer::builder().name("fixture").max_concurrent(1);
        let builder = match reason {
            FullReason::NoCapacity => builder,
            FullReason::QueueFull => builder.max_wait(Duration::from_secs(1)).max_queued(0),
            FullReason::WaitElapsed => builder.max_wait(Duration::from_millis(10)),
        };
        let layer = builder.layer().expect("valid config");
        let mut svc = layer.layer(service_fn(|()| pending::<Result<(), Infallible>>()));
        // Takes the only permit, and keeps it while this future lives.
        let _held = svc.ready().await.expect("ready").call(());
        let err = svc
            .ready()
            .await
            .expect("ready")
            .call(())
            .await
            .expect_err("no permit left");
        assert_eq!(err.rejection().map(|r| r.reason()), Some(reason));
        err
    }
}

#[cfg(all(test, feature = "bulkhead"))]
mod bulkhead_tests {
    use super::{bulkhead_fixture::rejection, *};
    use rampart_bulkhead::FullReason;
    use rampart_core::error::BoxError;

    #[tokio::test(start_paused = true)]
    async fn a_full_bulkhead_is_recognised_for_every_reason_without_retry_after() {
        for (reason, message) in [
            (FullReason::NoCapacity, "bulkhead is full"),
            (
                FullReason::QueueFull,
                "bulkhead is full and its wait queue is full",
            ),
            (
                FullReason::WaitElapsed,
                "bulkhead is full: no permit within the wait time",
            ),
        ] {
            let err: BoxError = Box::new(rejection(reason).await);
            let r = Rejected::find(&*err).expect("a rejection");
            assert_eq!(r.kind(), RejectionKind::BulkheadFull);
            assert_eq!(r.kind().to_string(), "bulkhead_full");
            assert_eq!(r.message(), message);
            assert_eq!(r.retry_after(), None);
            assert_eq!((r.retry_after_secs(), r.retry_after_millis()), (None, None));
            assert_eq!(r.to_string(), message);
        }
    }

    #[cfg(feature = "circuit-breaker")]
    #[tokio::test]
    async fn a_full_bulkhead_inside_a_breaker_is_still_a_bulkhead_rejection() {
        // `.circuit_breaker(…).bulkhead(…)`: the breaker passes the bulkhead's error on as its
        // inner error, and the rejection is found through it.
        let inner = rejection(FullReason::NoCapacity).await;
        let err: BoxError = Box::new(rampart_circuit_breaker::BreakerError::Inner(inner));
        let r = Rejected::find(&*err).expect("a rejection");
        assert_eq!(r.kind(), RejectionKind::BulkheadFull);
    }
}
