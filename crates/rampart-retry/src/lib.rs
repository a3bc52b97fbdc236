//! Retries for tower services that are safe for non-idempotent calls.
//!
//! The retry *policy core* (plain synchronous decisions with no tower types: [`policy`],
//! [`backoff`], [`budget`], [`server_delay`]) and the tower [`RetryLayer`] over it: requests
//! replay by `Clone` or, for HTTP, from a body held in memory ([`replay`]); attempts are
//! counted in metrics (`rampart_retry_retries_total`, `rampart_retry_give_ups_total`) and shown to a per-attempt hook; the
//! `retry` bench compares it with tower's `Retry` and a pass-through baseline.
//!
//! ```
//! use std::time::Duration;
//! use rampart_retry::{RetryLayer, backoff::{Backoff, Jitter}};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tries = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let retry = RetryLayer::builder()
//!     .max_attempts(3)
//!     .backoff(Backoff::builder().jitter(Jitter::None).build()?)
//!     .layer()?;
//! let svc = ServiceBuilder::new().layer(retry).service(service_fn({
//!     let tries = tries.clone();
//!     move |_: ()| {
//!         let n = tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!         async move { if n < 2 { Err(std::io::Error::other("flaky")) } else { Ok("done") } }
//!     }
//! }));
//! assert_eq!(svc.oneshot(()).await?, "done"); // the third attempt succeeded
//! # Ok(())
//! # }
//! ```
//!
//! - [`backoff`]: how long to wait before each retry: constant, linear or exponential with a
//!   cap, with no, full, equal or decorrelated jitter, or a function of your own.
//! - [`server_delay`]: the delay the server asks for: `Retry-After` (delta-seconds or HTTP-date) and
//!   `grpc-retry-pushback-ms`.
//! - [`budget`]: a retry budget shared by every clone, so that retries can't grow into a storm.
//! - [`policy`]: the decision after a failed attempt: retry after how long, or give up and why.
//! - [`replay`]: how a request is sent again: by `Clone`, or from a buffered HTTP body.
//! - [`hook`]: change the request before each attempt, or do asynchronous work before a retry
//!   (refresh a token after a `401`).
//!
//! One idempotency key per logical request is rampart-idempotency's `IdempotencyKeyLayer`
//! (feature `client`), beside the server half that dedupes by it: put it outside this layer.

//! # Fuzzing
//!
//! The header parsers have cargo-fuzz targets in `crates/rampart-retry/fuzz` (a crate of its
//! own, outside the workspace): `cargo +nightly fuzz run retry_after` and `… run pushback`, from
//! `crates/rampart-retry`. Property tests in [`server_delay`] throw random bytes at them on every test
//! run too.

pub mod backoff;
pub mod budget;
mod error;
pub mod hook;
mod layer;
pub mod policy;
pub mod protocol;
pub mod replay;
pub mod server_delay;
mod service;

#[cfg(feature = "http")]
pub use crate::layer::HttpRetryLayer;
pub use crate::{
    error::{LastError, RetryError},
    layer::RetryLayer,
    service::{ResponseFuture, Retry},
};
