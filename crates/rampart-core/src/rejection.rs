//! The rejection vocabulary: what each pattern rejects a call with, and [`Rejected::find`],
//! which recognises any of them in an error, whatever wrapped it.
//!
//! Each pattern rejects calls with its own small typed error — the circuit breaker with
//! [`CircuitOpen`], the bulkhead with [`BulkheadFull`], a deadline with
//! [`Elapsed`], a rate limit or a budget with [`RateLimited`] — all implementing [`Rejection`], and returns it as
//! [`PolicyError::Rejected`](crate::error::PolicyError::Rejected). The types live here, not
//! in the pattern crates (which re-export them), so that a layer that must recognise another
//! pattern's rejection — a dead-letter layer recording *why* a call failed, a reqwest
//! classifier ignoring a rejection from further in, the facade's axum and tonic mappings —
//! depends on this crate alone.
//!
//! [`Rejected::find`] walks an error's source chain and returns a small, protocol-neutral
//! summary: which [`RejectionKind`], when to retry, and a message.
//!
//! | [`RejectionKind`] | rejected by | `retry_after` | HTTP | gRPC |
//! |---|---|---|---|---|
//! | [`CircuitOpen`](RejectionKind::CircuitOpen) | circuit breaker | the rest of the open time (`None` when forced open or half-open) | `503` + `Retry-After` | `UNAVAILABLE` + `grpc-retry-pushback-ms` |
//! | [`BulkheadFull`](RejectionKind::BulkheadFull) | bulkhead | always `None`: nobody knows when a permit frees | `503` | `RESOURCE_EXHAUSTED` |
//! | [`Timeout`](RejectionKind::Timeout) | a deadline (`rampart-timeout`, a retry's attempt timeout) | `None` | `504` | `DEADLINE_EXCEEDED` |
//! | [`RateLimited`](RejectionKind::RateLimited) | rate limit ([`RateLimited`]) | until the call's cost fits (`None` if it never can) | `429` + `Retry-After` + `RateLimit-Policy`/`RateLimit` | `RESOURCE_EXHAUSTED` + `grpc-retry-pushback-ms` |
//! | [`BudgetExhausted`](RejectionKind::BudgetExhausted) | cost budget ([`RateLimited`]) | until the period resets | as above | as above |
//!
//! ```
//! use std::time::Duration;
//! use rampart_core::error::{BoxError, PolicyError};
//! use rampart_core::rejection::{CircuitOpen, Rejected, RejectedBy, RejectionKind};
//!
//! let open = CircuitOpen::new(RejectedBy::Open, Some(Duration::from_millis(1200)));
//! let err: BoxError = Box::new(PolicyError::<_, std::io::Error>::Rejected(open));
//!
//! let rejected = Rejected::find(&*err).unwrap();
//! assert_eq!(rejected.kind(), RejectionKind::CircuitOpen);
//! assert_eq!(rejected.retry_after_secs(), Some(2)); // rounded up
//! assert_eq!(rejected.retry_after_millis(), Some(1200));
//!
//! // Any other error is not a rejection.
//! let other: BoxError = Box::new(std::io::Error::other("connection reset"));
//! assert!(Rejected::find(&*other).is_none());
//! ```

use std::{error::Error, fmt, sync::Arc, time::Duration};

use crate::{
    clock::Instant,
    error::{Elapsed, Rejection, chain},
};

mod limited;

pub use self::limited::{LimitInfo, LimitReason, LimitedBy, RateLimited};

/// Why a circuit breaker rejected a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectedBy {
    /// The breaker is open.
    Open,
    /// The breaker is half-open and every probe slot is taken.
    HalfOpenFull,
    /// The breaker was forced open through its handle.
    ForcedOpen,
}

impl RejectedBy {
    /// A short lowercase description, e.g. `circuit breaker is open`.
    pub const fn message(self) -> &'static str {
        match self {
            RejectedBy::Open => "circuit breaker is open",
            RejectedBy::HalfOpenFull => {
                "circuit breaker is half-open and all probe slots are taken"
            }
            RejectedBy::ForcedOpen => "circuit breaker is forced open",
        }
    }
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
    /// A rejection, with how long until the breaker lets a probe through, if known.
    pub const fn new(by: RejectedBy, retry_after: Option<Duration>) -> Self {
        let hint = match retry_after {
            Some(d) => Hint::After(d),
            None => Hint::Unknown,
        };
        Self { hint, by }
    }

    /// A rejection by a breaker that stays open until `until`, on tokio's clock: the time left
    /// is worked out when [`retry_after`](Self::retry_after) is asked, so a rejection kept for
    /// a while does not overstate it (and making one does not read the clock).
    pub const fn until(by: RejectedBy, until: Instant) -> Self {
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
        self.retry_after().map(crate::header::retry_after_secs)
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_with_retry_after(f, self.by.message(), self.retry_after())
    }
}

impl Error for CircuitOpen {}

impl Rejection for CircuitOpen {
    fn retry_after(&self) -> Option<Duration> {
        CircuitOpen::retry_after(self)
    }
}

/// Why a bulkhead found no permit for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FullReason {
    /// Every permit was taken and the bulkhead does not let calls wait (`max_wait` is zero).
    NoCapacity,
    /// Every permit was taken and the wait queue was full too.
    QueueFull,
    /// The call waited `max_wait` without getting a permit.
    WaitElapsed,
}

impl FullReason {
    /// A lowercase name: `no_capacity`, `queue_full`, `wait_elapsed`.
    pub const fn as_str(self) -> &'static str {
        match self {
            FullReason::NoCapacity => "no_capacity",
            FullReason::QueueFull => "queue_full",
            FullReason::WaitElapsed => "wait_elapsed",
        }
    }

    /// A short lowercase description without the class, e.g. `bulkhead is full`.
    pub const fn message(self) -> &'static str {
        match self {
            FullReason::NoCapacity => "bulkhead is full",
            FullReason::QueueFull => "bulkhead is full and its wait queue is full",
            FullReason::WaitElapsed => "bulkhead is full: no permit within the wait time",
        }
    }
}

/// A call rejected by a full bulkhead. The inner service was not called.
///
/// Making one never allocates (the class name is a shared `Arc<str>`).
///
/// # Mapping to protocols
///
/// - HTTP: `503 Service Unavailable` (the dependency is saturated, not the caller over quota;
///   use `429` instead when the bulkhead is per tenant and the tenant is over its share).
/// - gRPC: `Status::resource_exhausted`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkheadFull {
    reason: FullReason,
    class: Arc<str>,
    /// Nanoseconds (a `u64` rather than a `Duration`, to keep every call's future small).
    waited: u64,
}

impl BulkheadFull {
    /// A rejection of a call of class `class` for `reason`, after waiting `waited`.
    pub const fn new(reason: FullReason, class: Arc<str>, waited: Duration) -> Self {
        Self {
            reason,
            class,
            waited: {
                let nanos = waited.as_nanos();
                if nanos > u64::MAX as u128 {
                    u64::MAX
                } else {
                    nanos as u64
                }
            },
        }
    }

    /// Why there was no permit.
    pub fn reason(&self) -> FullReason {
        self.reason
    }

    /// The priority class of the rejected call.
    pub fn class(&self) -> &str {
        &self.class
    }

    /// How long the call waited before it was rejected (zero unless the wait elapsed).
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.waited)
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            FullReason::NoCapacity => write!(f, "bulkhead full for class `{}`", self.class),
            FullReason::QueueFull => write!(
                f,
                "bulkhead full for class `{}` and its wait queue is full",
                self.class
            ),
            FullReason::WaitElapsed => write!(
                f,
                "bulkhead full for class `{}`: no permit after waiting {:?}",
                self.class,
                self.waited()
            ),
        }
    }
}

impl Error for BulkheadFull {}

impl Rejection for BulkheadFull {
    /// A bulkhead cannot know when a permit frees up.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// Which policy rejected a call.
///
/// Non-exhaustive: a variant is added as each pattern lands. Outside this crate a match on it
/// needs a `_` arm; rampart's own HTTP and gRPC mappings say what they do with a kind they do
/// not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// A circuit breaker is open (or half-open with every probe slot taken, or forced open).
    CircuitOpen,
    /// A bulkhead had no permit for the call's class: none free and no waiting allowed, the
    /// wait queue full, or the wait elapsed.
    BulkheadFull,
    /// A deadline or timeout passed (any error with [`Elapsed`] in its chain: a
    /// `rampart-timeout` deadline, a retry whose last attempt timed out).
    Timeout,
    /// A rate limit had no room for the call ([`RateLimited`] by [`LimitedBy::Rate`]).
    RateLimited,
    /// A cost budget could not cover the call ([`RateLimited`] by [`LimitedBy::Budget`]).
    BudgetExhausted,
}

impl RejectionKind {
    /// A lowercase, stable name, for logs and metric labels: `circuit_open`, `bulkhead_full`,
    /// `timeout`, `rate_limited`, `budget_exhausted`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectionKind::CircuitOpen => "circuit_open",
            RejectionKind::BulkheadFull => "bulkhead_full",
            RejectionKind::Timeout => "timeout",
            RejectionKind::RateLimited => "rate_limited",
            RejectionKind::BudgetExhausted => "budget_exhausted",
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
/// (the facade's `axum` feature makes it an `IntoResponse`; its `tonic` feature, a
/// `tonic::Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    kind: RejectionKind,
    retry_after: Option<Duration>,
    message: &'static str,
    limit: Option<LimitInfo>,
}

impl Rejected {
    /// Finds a rampart rejection in `err` or anywhere in its [`source`](Error::source) chain;
    /// `None` if the error is something else (the inner service's own failure).
    ///
    /// Pass a `BoxError` as `&*err`.
    pub fn find(err: &(dyn Error + 'static)) -> Option<Rejected> {
        chain(err).find_map(Self::of)
    }

    /// Recognises `err` itself as a rampart rejection, without looking at its sources: the
    /// one list of rejection types, for a caller with a chain of its own to walk (a
    /// reqwest-middleware error hides its top error from `source()`).
    pub fn of(err: &(dyn Error + 'static)) -> Option<Rejected> {
        if let Some(open) = err.downcast_ref::<CircuitOpen>() {
            return Some(Rejected::new(
                RejectionKind::CircuitOpen,
                open.retry_after(),
                open.rejected_by().message(),
            ));
        }
        if err.downcast_ref::<Elapsed>().is_some() {
            return Some(Rejected::new(
                RejectionKind::Timeout,
                None,
                "the deadline passed before the call completed",
            ));
        }
        // The class name is not in the message: `Rejected` owns nothing, and the class is
        // the server's business. It is in the `BulkheadFull` (and its tracing event).
        if let Some(full) = err.downcast_ref::<BulkheadFull>() {
            return Some(Rejected::new(
                RejectionKind::BulkheadFull,
                Rejection::retry_after(full),
                full.reason().message(),
            ));
        }
        if let Some(limited) = err.downcast_ref::<RateLimited>() {
            let kind = match limited.limited_by() {
                LimitedBy::Rate => RejectionKind::RateLimited,
                LimitedBy::Budget => RejectionKind::BudgetExhausted,
            };
            let mut r = Rejected::new(kind, limited.retry_after(), limited.message());
            r.limit = Some(limited.info());
            return Some(r);
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
            limit: None,
        }
    }

    /// What the limit allows, for a [`RateLimited`] rejection (the `RateLimit-Policy` and
    /// `RateLimit` headers).
    pub const fn limit(&self) -> Option<LimitInfo> {
        self.limit
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
        self.retry_after.map(crate::header::retry_after_secs)
    }

    /// [`retry_after`](Self::retry_after) in milliseconds, rounded up: the value of gRPC's
    /// [`grpc-retry-pushback-ms`](crate::header::GRPC_RETRY_PUSHBACK_MS).
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
        write_with_retry_after(f, self.message, self.retry_after)
    }
}

fn write_with_retry_after(
    f: &mut fmt::Formatter<'_>,
    message: &str,
    retry_after: Option<Duration>,
) -> fmt::Result {
    f.write_str(message)?;
    if let Some(d) = retry_after {
        write!(f, "; retry after {d:?}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
