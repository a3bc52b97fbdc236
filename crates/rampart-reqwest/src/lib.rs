//! rampart for reqwest: [reqwest-middleware] adapters over the same policy cores, stores and
//! error types as rampart's tower layers.
//!
//! ```no_run
//! use std::{sync::Arc, time::Duration};
//! use rampart_bulkhead::BulkheadLayer;
//! use rampart_circuit_breaker::CircuitBreakerLayer;
//! use rampart_dead_letter::{DeadLetterLayer, SqliteStore, DEAD_LETTER_ID};
//! use rampart_reqwest::{
//!     BulkheadMiddleware, CircuitBreakerMiddleware, DeadLetterMiddleware, RetryMiddleware, find,
//! };
//! use rampart_retry::policy::RetryPolicy;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(SqliteStore::open("dead-letters.db")?);
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     // Outermost first: dead letters → retry → breaker → bulkhead (see "Order" below).
//!     .with(DeadLetterMiddleware::new(DeadLetterLayer::builder("webhooks", store).build()?))
//!     .with(RetryMiddleware::new(RetryPolicy::builder().max_attempts(4).build()?))
//!     .with(CircuitBreakerMiddleware::per_host(
//!         CircuitBreakerLayer::builder().name("webhooks").consecutive_failures(5),
//!     )?)
//!     .with(BulkheadMiddleware::new(
//!         BulkheadLayer::builder().name("webhooks").max_concurrent(32).layer()?,
//!     ))
//!     .build();
//!
//! // A POST: it gets an Idempotency-Key once, sent unchanged on every attempt.
//! match client.post("http://hooks.example.com/ping").body("{\"event\":1}").send().await {
//!     Ok(res) if res.status().is_success() => {}
//!     // A failure response, parked after the last attempt: its id is in a header.
//!     Ok(res) => eprintln!("parked as {:?}", res.headers().get(DEAD_LETTER_ID)),
//!     // An error: an open breaker, a full bulkhead, a transport error, …, parked too.
//!     Err(err) => {
//!         if let Some(open) = find::<rampart_circuit_breaker::CircuitOpen>(&err) {
//!             eprintln!("host is down; retry after {:?}", open.retry_after());
//!         }
//!         if let Some(parked) = find::<rampart_dead_letter::Parked>(&err) {
//!             eprintln!("parked as {}", parked.id());
//!         }
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # The middlewares
//!
//! | middleware | does | core it drives |
//! |---|---|---|
//! | [`CircuitBreakerMiddleware`] | a breaker per `host:port` ([`ByHost`]) or any key, or one shared; rejects with [`CircuitOpen`](rampart_circuit_breaker::CircuitOpen) without sending | rampart-circuit-breaker's state machine and per-key registry ([`CircuitBreakerLayer::try_acquire`](rampart_circuit_breaker::CircuitBreakerLayer::try_acquire)) |
//! | [`RetryMiddleware`] | backoff with jitter, budget, deadline, `Retry-After` / `grpc-retry-pushback-ms`, one idempotency key per logical request, non-idempotent requests only with a key, streaming bodies once | rampart-retry's [`RetryPolicy::decide`](rampart_retry::policy::RetryPolicy::decide) and [`HttpProtocol`](rampart_retry::protocol::HttpProtocol) (the server's delay, replay safety); rampart-idempotency's key makers |
//! | [`BulkheadMiddleware`] | bounded concurrency, priority classes, bounded wait; rejects with [`BulkheadFull`](rampart_bulkhead::BulkheadFull) | rampart-bulkhead's permits ([`BulkheadLayer::acquire`](rampart_bulkhead::BulkheadLayer::acquire)) |
//! | [`RateLimitMiddleware`] | a GCRA rate limit, one for every request or per host ([`ByHost`]) or any key, with costs and a bounded wait; rejects with [`RateLimited`](rampart_core::rejection::RateLimited) without sending | rampart-rate-limit's limits ([`RateLimitLayer::check`](rampart_rate_limit::RateLimitLayer::check)) |
//! | [`DeadLetterMiddleware`] | parks what finally fails in a [`DeadLetterStore`](rampart_dead_letter::DeadLetterStore), with fallback to a secondary store, and says so in the response or error | rampart-dead-letter's [`Parker`](rampart_dead_letter::Parker) |
//!
//! Each is built from the tower layer (or its builder) of its pattern, so configuration,
//! validation (a bad value fails at build time, naming the field), handles, stats, `tracing`
//! events and metrics are the tower layer's. A middleware built from a layer shares that
//! layer's state: a tower client and a reqwest client calling the same host trip the same
//! breaker and draw on the same permits. Clones of a middleware share its state too.
//!
//! # Order
//!
//! reqwest-middleware runs middleware in the order of `with`, the first outermost. Use:
//!
//! ```text
//! DeadLetterMiddleware → RetryMiddleware → CircuitBreakerMiddleware → BulkheadMiddleware → reqwest
//! ```
//!
//! - **Dead letters outermost**: only a request that every attempt failed is parked, once,
//!   with the number of attempts (the retry notes them in an
//!   [`AttemptCounter`](rampart_core::attempt::AttemptCounter) the dead-letter middleware puts
//!   in the extensions) and the idempotency key the retry made (it leaves an
//!   [`IdempotencyKey`](rampart_core::key::IdempotencyKey) in the extensions), which a redrive
//!   sends again. Rejections by the breaker and the bulkhead are parked too.
//! - **Retry outside the breaker**: the breaker judges every attempt, so a failing host trips
//!   it during the retries; once it is open, attempts fail at once and the retry waits for the
//!   breaker's retry-after (or gives up, if that is longer than `max_server_delay`) instead of
//!   sending to a host that is down.
//! - **Breaker outside the bulkhead**: a full bulkhead is the caller's own overload, not the
//!   host's failure: the breaker's default classifier ignores it. An open breaker takes no
//!   permit.
//! - **Bulkhead innermost**: a permit per attempt, held while the attempt is in flight, not
//!   through the retry's waits.
//!
//! Changing it: retry outside dead letters parks every failed attempt; the breaker outside
//! the retry sees one outcome per logical request (it trips later, and the retries keep
//! hitting a failing host); the bulkhead outside the retry holds a permit through backoff
//! waits; the dead letters inside the retry don't see the key the retry made, nor the number
//! of attempts.
//!
//! # Timeouts
//!
//! reqwest's own timeout (`ClientBuilder::timeout`, `RequestBuilder::timeout`) applies to each
//! attempt (every attempt is one `Client::execute`), and so does the retry policy's
//! `attempt_timeout`; the policy's `deadline` bounds the whole logical request. A timed-out
//! attempt counts as a transient failure, against the breaker too; the dead-letter middleware
//! records it as a `timeout`.
//!
//! # Errors
//!
//! A rampart rejection or failure reaches the caller as `reqwest_middleware::Error::Middleware`
//! holding the same type the tower layer fails with:
//! [`CircuitOpen`](rampart_circuit_breaker::CircuitOpen),
//! [`BulkheadFull`](rampart_bulkhead::BulkheadFull),
//! [`RetryError`](rampart_retry::RetryError)`<reqwest_middleware::Error>`,
//! [`Parked`](rampart_dead_letter::Parked) or [`ParkFailed`](rampart_dead_letter::ParkFailed).
//! [`find`] finds any of them, and the errors they wrap, through every layer;
//! `rampart_core::error::find` does too. How:
//!
//! reqwest-middleware carries a middleware's error as `Error::Middleware(anyhow::Error)`, and
//! its `source()` is transparent: it skips the top error of the `anyhow::Error` and starts at
//! that error's own source. So every rampart middleware puts its typed error (a
//! [`CircuitOpen`](rampart_circuit_breaker::CircuitOpen), a
//! [`BulkheadFull`](rampart_bulkhead::BulkheadFull), a
//! [`RetryError`](rampart_retry::RetryError), a
//! [`Parked`](rampart_dead_letter::Parked)) *under* a context that repeats its message. Then:
//!
//! - `err.to_string()` is the typed error's message;
//! - `rampart_core::error::find::<T>(&err)` finds it through the standard source chain,
//!   through any number of rampart middlewares;
//! - `anyhow`'s `downcast_ref::<T>()` on the `Error::Middleware` payload finds it too;
//! - the cost: `{:#}` and `{:?}` print the top message twice (context, then the error).
//!
//! [`find`] looks everywhere at once, including inside `Error::Reqwest`.
//! An error the transport or another middleware returns, and that rampart neither retried nor
//! parked, is passed on untouched.
//!
//! # Trade-offs
//!
//! - The bulkhead releases its permit when the response head arrives, not when the body has
//!   been read (reqwest owns the body).
//! - The dead-letter middleware keeps a copy of every request's head until the response (the
//!   request itself is consumed by sending it); the body is shared, not copied, and copied into
//!   a record only for a request that failed. A streaming body cannot be recorded nor retried.
//! - A key maker sees a copy of the request body, made only for a request that gets a fresh
//!   key (deterministic SHA-256 keys need it; random ones don't look at it).
//! - Outcomes are judged from the response head: a classifier that only decides at the end of
//!   a stream (gRPC trailers) has nothing to wait for here, and its calls count as ignored.
//! - The dead-letter middleware always returns the (annotated) failure: `AcceptForLater`
//!   (answering `202`) is a tower-layer mode only.
//!
//! [reqwest-middleware]: https://docs.rs/reqwest-middleware

/// The body of every `Middleware` impl here: `handle` (the signature `#[async_trait]` would
/// generate, written out so the crate needs no proc-macro) forwards to the type's own
/// `async fn call(&self, req, extensions, next)`.
macro_rules! forward_to_call {
    () => {
        fn handle<'life0, 'life1, 'life2, 'async_trait>(
            &'life0 self,
            req: reqwest::Request,
            extensions: &'life1 mut http::Extensions,
            next: reqwest_middleware::Next<'life2>,
        ) -> $crate::BoxFuture<'async_trait>
        where
            'life0: 'async_trait,
            'life1: 'async_trait,
            'life2: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(self.call(req, extensions, next))
        }
    };
}

mod breaker;
mod bulkhead;
mod classify;
mod dead_letter;
mod error;
mod key;
mod rate_limit;
mod retry;

pub use crate::{
    breaker::CircuitBreakerMiddleware,
    bulkhead::{BulkheadMiddleware, PriorityFromHeader},
    classify::ReqwestClassifier,
    dead_letter::DeadLetterMiddleware,
    error::find,
    key::ByHost,
    rate_limit::RateLimitMiddleware,
    retry::RetryMiddleware,
};

/// The future every middleware's `handle` returns (what `#[async_trait]` makes of the
/// `Middleware` trait's `async fn`).
pub(crate) type BoxFuture<'a> =
    rampart_core::BoxFuture<'a, reqwest_middleware::Result<reqwest::Response>>;
