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
//! | `http` | yes | HTTP classification (`HttpClassifier`) and key extraction |
//! | `grpc` | no | gRPC classification (`GrpcClassifier`, status in headers or trailers) |
//! | `axum` | no | `rampart::axum`: rejections as `503` + `Retry-After` responses (implies `http`) |
//! | `tonic` | no | `rampart::tonic`: rejections as `Status::unavailable` + `grpc-retry-pushback-ms` (implies `grpc`) |
//!
//! # Rejections
//!
//! Every rampart pattern that can refuse a call (an open circuit today; a full bulkhead, an
//! exhausted retry budget or an elapsed deadline as they land) rejects it with a small typed
//! error implementing [`Rejection`](crate::core::error::Rejection). [`Rejected::find`](rejection::Rejected::find)
//! recognises any of them anywhere in an error's source chain, and the protocol modules turn
//! the result into what clients understand:
//!
//! | rejection | HTTP (`rampart::axum`) | gRPC (`rampart::tonic`) |
//! |---|---|---|
//! | open circuit | `503 Service Unavailable`, `Retry-After: <seconds, rounded up>` | `UNAVAILABLE`, `grpc-retry-pushback-ms: <ms>` |
//!
//! # axum
//!
//! axum routes must not fail, so a layer that rejects needs a `HandleErrorLayer` in front of
//! it; `rampart::axum::handle_error` is a ready-made handler. axum calls `layer` once per
//! route: the breaker's state lives in the layer, so every route shares one breaker (use
//! `route_layer` or separate layers for separate breakers). See the `rampart::axum` module.
//!
//! # tonic
//!
//! A tonic client turns its service's error into a `Status` by looking for a `Status` in the
//! error chain, and calls anything else `UNKNOWN`. Put `.rejections_as_status()` (from
//! [`ServiceBuilderExt`]) outside the breaker so an open circuit reaches the caller as
//! `UNAVAILABLE`, which gRPC retry policies treat as retryable. See the
//! `rampart::tonic` module.

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

    #[cfg(feature = "grpc")]
    pub use rampart_core::classify::GrpcClassifier;
    #[cfg(feature = "http")]
    pub use rampart_core::classify::HttpClassifier;
}
