//! Recognising rampart's rejections in any error, whatever wrapped them.
//!
//! This is [`rampart_core::rejection`], where every pattern's rejection type is defined
//! ([`CircuitOpen`], [`BulkheadFull`], [`RateLimited`] for rate limits and cost budgets, and
//! [`Elapsed`](rampart_core::error::Elapsed) for deadlines) together with [`Rejected::find`], which walks an error's source chain and
//! returns a small, protocol-neutral summary: which [`RejectionKind`], when to retry, and a
//! message. The `rampart::axum` and `rampart::tonic` modules map that summary to a response or
//! a `Status`.
//!
//! | [`RejectionKind`] | rejected by | `retry_after` | HTTP | gRPC |
//! |---|---|---|---|---|
//! | [`CircuitOpen`](RejectionKind::CircuitOpen) | circuit breaker | the rest of the open time (`None` when forced open or half-open) | `503` + `Retry-After` | `UNAVAILABLE` + `grpc-retry-pushback-ms` |
//! | [`BulkheadFull`](RejectionKind::BulkheadFull) | bulkhead | always `None`: nobody knows when a permit frees | `503` | `RESOURCE_EXHAUSTED` |
//! | [`Timeout`](RejectionKind::Timeout) | a deadline (`rampart-timeout`, a retry's attempt timeout) | `None` | `504` | `DEADLINE_EXCEEDED` |
//! | [`RateLimited`](RejectionKind::RateLimited) | a rate limit (`rampart-rate-limit`, `rampart-redis`) | when the call would be admitted | `429` + `Retry-After` | `RESOURCE_EXHAUSTED` + `grpc-retry-pushback-ms` |
//! | [`BudgetExhausted`](RejectionKind::BudgetExhausted) | a cost budget | when the period resets (for a rolling window: when enough spending leaves it) | `429` + `Retry-After` | `RESOURCE_EXHAUSTED` + `grpc-retry-pushback-ms` |
//!
//! ```
//! use std::time::Duration;
//! use rampart::core::error::{BoxError, PolicyError};
//! use rampart::rejection::{CircuitOpen, Rejected, RejectedBy, RejectionKind};
//!
//! let open = CircuitOpen::new(RejectedBy::Open, Some(Duration::from_millis(1200)));
//! let err: BoxError = Box::new(PolicyError::<_, std::io::Error>::Rejected(open));
//!
//! let rejected = Rejected::find(&*err).unwrap();
//! assert_eq!(rejected.kind(), RejectionKind::CircuitOpen);
//! assert_eq!(rejected.retry_after_secs(), Some(2)); // rounded up
//!
//! let other: BoxError = Box::new(std::io::Error::other("connection reset"));
//! assert!(Rejected::find(&*other).is_none());
//! ```

pub use rampart_core::error::Rejection;
pub use rampart_core::rejection::*;
