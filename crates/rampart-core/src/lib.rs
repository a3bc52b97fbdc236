//! Shared pieces of the rampart resilience middleware.
//!
//! Every rampart pattern (circuit breaker, retry, bulkhead, dead letters, …) needs the same few
//! things, and this crate writes them once:
//!
//! - [`classify`]: turning a call's result into an [`Outcome`](classify::Outcome) — success,
//!   failure (transient or fatal) or ignored — with classifiers for plain `Result`s, HTTP
//!   responses and gRPC responses (whose status may only arrive in the trailers).
//! - [`clock`]: the [`Clock`](clock::Clock) seam, so every time-based decision can be tested with a
//!   manual clock or tokio's paused time.
//! - [`key`]: key extraction for per-host / per-tenant / per-route instances, and
//!   [`registry`]: the bounded map that holds those instances.
//! - [`error`]: the shared error vocabulary, and [`rejection`]: each pattern's rejection
//!   ([`CircuitOpen`](rejection::CircuitOpen), [`BulkheadFull`](rejection::BulkheadFull)) and
//!   [`Rejected::find`](rejection::Rejected::find), which recognises any of them.
//! - [`header`]: the header names the layers agree on (`idempotency-key`, gRPC pushback).
//! - [`deadline`]: a call's deadline, carried in the request so inner layers keep to it.
//! - [`problem`]: RFC 9457 problem details, the body of rampart's error responses.
//! - [`redact`]: keeping credentials out of records, error texts, logs and output.
//! - [`store`]: the error of any rampart store.
//! - [`rolling`]: counters over a rolling time window (retry budgets, success rates).
//! - [`sync`]: locks that outlive a panic, for every lock in the workspace.
//! - [`attempt`]: an attempt counter that a retry layer fills in for the layers outside it.
//! - `body` (feature `http`): `GuardedBody`, which holds a value until a response stream ends.
//!
//! ```
//! use rampart_core::classify::{Classify, HttpClassifier, Outcome, FailureKind};
//!
//! let classifier = HttpClassifier::default();
//! let response = http::Response::builder().status(503).body(()).unwrap();
//! let outcome = classifier.outcome_of(Ok::<_, &std::io::Error>(&response));
//! assert_eq!(outcome, Some(Outcome::Failure(FailureKind::Transient)));
//! ```

pub mod attempt;
#[cfg(feature = "http")]
pub mod body;
pub mod classify;
pub mod clock;
pub mod deadline;
pub mod error;
pub mod header;
pub mod key;
pub mod problem;
pub mod readiness;
pub mod redact;
pub mod registry;
pub mod rejection;
pub mod rolling;
pub mod shard;
pub mod store;
pub mod sync;
#[cfg(feature = "test-util")]
pub mod testing;

/// A boxed, `Send` future: what the object-safe store and component traits of rampart return
/// (dead-letter stores, idempotency stores, health components), written once.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Writes a service's `get_ref`, `get_mut` and `into_inner` over its `inner: S` field, once for
/// every rampart service (as tower-http's `define_inner_service_accessors!`). Use it inside an
/// `impl<S, …> Service<S, …>` block.
///
/// ```
/// pub struct Wrapper<S> {
///     inner: S,
/// }
///
/// impl<S> Wrapper<S> {
///     rampart_core::inner_service_accessors!();
/// }
///
/// let mut w = Wrapper { inner: 1 };
/// *w.get_mut() += 1;
/// assert_eq!(*w.get_ref(), 2);
/// assert_eq!(w.into_inner(), 2);
/// ```
#[macro_export]
macro_rules! inner_service_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes this service, returning the inner one.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}
