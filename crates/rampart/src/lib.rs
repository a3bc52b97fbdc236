//! Resilience middleware for tower: one crate per pattern, re-exported here behind one feature
//! each, with the glue that makes them pleasant to use from axum and tonic.
//!
//! ```
//! use std::time::Duration;
//! use rampart::prelude::*;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let breaker = CircuitBreakerLayer::builder()
//!     .name("inventory")
//!     .consecutive_failures(3)
//!     .open_duration(Duration::from_secs(30))
//!     .layer()?;
//! let handle = breaker.handle();
//!
//! let svc = ServiceBuilder::new()
//!     .circuit_breaker(breaker) // from `ServiceBuilderExt`
//!     .service(service_fn(|_: ()| async { Err::<(), _>(std::io::Error::other("down")) }));
//!
//! for _ in 0..3 {
//!     let _ = svc.clone().oneshot(()).await;
//! }
//! assert_eq!(handle.state(), State::Open);
//!
//! // The fourth call never reaches the service; the rejection says when to come back.
//! let err = svc.clone().oneshot(()).await.unwrap_err().into_box();
//! let rejected = Rejected::find(&*err).expect("a rejection");
//! assert_eq!(rejected.kind(), RejectionKind::CircuitOpen);
//! assert_eq!(rejected.retry_after_secs(), Some(30));
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! | feature | default | gives |
//! |---|---|---|
//! | `circuit-breaker` | yes | `rampart::circuit_breaker`: `CircuitBreakerLayer`, per-key breakers, handles |
//! | `bulkhead` | yes | `rampart::bulkhead`: `BulkheadLayer`, priority classes, bounded wait, per-key partitions, handles |
//! | `retry` | yes | `rampart::retry`: `RetryLayer`, backoff and jitter, retry budgets, `Retry-After` and pushback, idempotency keys, HTTP body replay |
//! | `rate-limit` | no | `rampart::rate_limit`: `RateLimitLayer`: GCRA with a burst, a cost per call, per-key limits in a bounded registry, shadow mode, a bounded wait, quotas changed at run time |
//! | `dead-letter` | no | `rampart::dead_letter`: `DeadLetterLayer`, the record format, stores (memory), redrive |
//! | `dead-letter-sqlite` | no | the embedded durable store, `rampart::dead_letter::SqliteStore` (implies `dead-letter`) |
//! | `timeout` | no | `rampart::timeout`: `TimeoutLayer`, timeouts by operation class, deadlines carried to inner layers and as `grpc-timeout` |
//! | `fallback` | no | `rampart::fallback`: `FallbackLayer`: the last good response (fresh, stale, very stale), a static response, or a function |
//! | `health` | no | `rampart::health`: `HealthRegistry`: healthy / degraded / unhealthy from breakers, bulkheads, dead-letter backlogs, probes and success rates; axum `/health/live`, `/health/ready`, `/health` |
//! | `idempotency` | no | `rampart::idempotency`: the server-side `IdempotencyLayer` (IETF draft, Stripe semantics), memory store |
//! | `http` | yes | HTTP classification (`HttpClassifier`), key extraction, priority from a header (`PriorityHeader`) |
//! | `grpc` | no | gRPC classification (`GrpcClassifier`, status in headers or trailers) |
//! | `axum` | no | `rampart::axum`: rejections as `503` responses, with `Retry-After` when known (implies `http`; needs only `axum-core`) |
//! | `tonic` | no | `rampart::tonic`: rejections as `tonic::Status`: `UNAVAILABLE` + `grpc-retry-pushback-ms`, `RESOURCE_EXHAUSTED` (implies `grpc`) |
//!
//! # Rejections
//!
//! Every rampart pattern that can refuse a call (an open circuit, a full bulkhead, an elapsed
//! deadline) rejects it with a small typed error implementing
//! [`Rejection`](crate::core::error::Rejection), defined in [`rampart::rejection`](rejection)
//! (rampart-core's, so that any layer can recognise it without depending on the pattern).
//! [`Rejected::find`](rejection::Rejected::find) recognises any of them anywhere in an error's
//! source chain, and the protocol modules turn the result into what clients understand
//! (`rampart::axum::RejectionResponse`, `rampart::tonic::status`):
//!
//! | rejection | HTTP (`rampart::axum`) | gRPC (`rampart::tonic`) |
//! |---|---|---|
//! | open circuit | `503 Service Unavailable`, `Retry-After: <seconds, rounded up>` | `UNAVAILABLE`, `grpc-retry-pushback-ms: <ms>` |
//! | full bulkhead | `503 Service Unavailable`, no `Retry-After` (`429` for per-tenant partitions: see `rampart::axum`) | `RESOURCE_EXHAUSTED`, no pushback |
//! | elapsed deadline | `504 Gateway Timeout` | `DEADLINE_EXCEEDED` |
//! | rate limit, cost budget | `429 Too Many Requests`, `Retry-After`, `RateLimit-Policy` and `RateLimit` (IETF draft) | `RESOURCE_EXHAUSTED`, `grpc-retry-pushback-ms: <ms>` |
//!
//! A bulkhead cannot know when a permit frees up, so its rejection carries no retry delay:
//! clients fall back on their own backoff instead of retrying in lockstep at a made-up time.
//!
//! # Order of layers
//!
//! Outermost first, as [`ServiceBuilderExt`] calls read: circuit breaker, then bulkhead; the
//! full order, and why each layer sits where it does, is the workspace's one
//! [recommended client stack](https://github.com/rampart-rs/rampart#the-recommended-client-stack) table.
//!
//! ```
//! use rampart::prelude::*;
//! use tower::{ServiceBuilder, service_fn};
//!
//! # fn main() -> Result<(), BoxError> {
//! let svc = ServiceBuilder::new()
//!     .circuit_breaker(CircuitBreakerLayer::builder().name("search").layer()?)
//!     .bulkhead(BulkheadLayer::builder().name("search").max_concurrent(16).layer()?)
//!     .service(service_fn(|q: String| async move { Ok::<_, std::io::Error>(q.len()) }));
//! # let _ = svc;
//! # Ok(())
//! # }
//! ```
//!
//! # axum
//!
//! axum routes must not fail, so a layer that rejects needs something in front of it that
//! turns its errors into responses: `rampart::axum::RespondToErrorsLayer` (no boxing, no
//! per-request clone of the stack), or axum's `HandleErrorLayer` with
//! `rampart::axum::handle_error` or a handler of your own. axum calls `layer` once per
//! route: the breaker's and the bulkhead's state live in their layers, so every route shares
//! one breaker and one set of permits (use `route_layer` or separate layers to separate them).
//! A bulkhead fails fast in its response future rather than in `poll_ready`, because axum
//! does not honour back-pressure. See the `rampart::axum` module.
//!
//! # tonic
//!
//! A tonic client turns its service's error into a `Status` by looking for a `Status` in the
//! error chain, and calls anything else `UNKNOWN`. Put `.rejections_as_status()` (from
//! [`ServiceBuilderExt`]) outside the rampart layers so an open circuit reaches the caller as
//! `UNAVAILABLE`, which gRPC retry policies treat as retryable, and a full bulkhead as
//! `RESOURCE_EXHAUSTED`. See the `rampart::tonic` module.

#[cfg(feature = "axum")]
pub mod axum;
mod builder;
pub mod rejection;
#[cfg(feature = "tonic")]
pub mod tonic;

pub use crate::builder::ServiceBuilderExt;

/// The shared pieces: classification, clocks, key extraction, errors
/// (the `rampart-core` crate).
pub use rampart_core as core;

/// The circuit breaker (the `rampart-circuit-breaker` crate).
#[cfg(feature = "circuit-breaker")]
pub use rampart_circuit_breaker as circuit_breaker;

/// The bulkhead (the `rampart-bulkhead` crate).
#[cfg(feature = "bulkhead")]
pub use rampart_bulkhead as bulkhead;

/// Rate limits (the `rampart-rate-limit` crate).
#[cfg(feature = "rate-limit")]
pub use rampart_rate_limit as rate_limit;

/// Retries: backoff, budgets, server delays, body replay (the `rampart-retry` crate).
#[cfg(feature = "retry")]
pub use rampart_retry as retry;

/// Timeouts by operation class (the `rampart-timeout` crate).
#[cfg(feature = "timeout")]
pub use rampart_timeout as timeout;

/// Graceful degradation (the `rampart-fallback` crate).
#[cfg(feature = "fallback")]
pub use rampart_fallback as fallback;

/// The health view: `HealthRegistry`, health endpoints (the `rampart-health` crate).
#[cfg(feature = "health")]
pub use rampart_health as health;

/// Server-side idempotency (the `rampart-idempotency` crate).
#[cfg(feature = "idempotency")]
pub use rampart_idempotency as idempotency;

/// Dead letters: the `DeadLetterLayer`, stores and redrive (feature `dead-letter`).
#[cfg(feature = "dead-letter")]
pub use rampart_dead_letter as dead_letter;

/// The names most programs need, for a glob import: `use rampart::prelude::*;`.
pub mod prelude {
    pub use crate::ServiceBuilderExt;
    pub use crate::rejection::{Rejected, RejectionKind};
    pub use rampart_core::error::{BoxError, PolicyError, Rejection};

    #[cfg(feature = "circuit-breaker")]
    pub use rampart_circuit_breaker::{
        BreakerError, CircuitBreakerHandle, CircuitBreakerLayer, CircuitOpen,
        KeyedCircuitBreakerLayer, State,
    };

    #[cfg(feature = "bulkhead")]
    pub use rampart_bulkhead::{
        BulkheadError, BulkheadFull, BulkheadHandle, BulkheadLayer, FullReason, KeyedBulkheadLayer,
        Priority,
    };
    #[cfg(all(feature = "bulkhead", feature = "http"))]
    pub use rampart_bulkhead::{ByExtension, PriorityHeader};

    #[cfg(feature = "idempotency")]
    pub use rampart_idempotency::IdempotencyKeyLayer;
    #[cfg(feature = "retry")]
    pub use rampart_retry::{RetryError, RetryLayer, budget::RetryBudget};

    #[cfg(feature = "dead-letter-sqlite")]
    pub use rampart_dead_letter::SqliteStore;
    #[cfg(feature = "dead-letter")]
    pub use rampart_dead_letter::{DeadLetterLayer, DeadLetterStore, MemoryStore, Redrive};
    #[cfg(feature = "timeout")]
    pub use rampart_timeout::{OperationClass, TimeoutLayer};

    #[cfg(feature = "grpc")]
    pub use rampart_core::classify::GrpcClassifier;
    #[cfg(feature = "http")]
    pub use rampart_core::classify::HttpClassifier;
}
