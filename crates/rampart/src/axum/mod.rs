//! Rejections as axum responses: `503 Service Unavailable`, `504 Gateway Timeout` or
//! `429 Too Many Requests`, with `Retry-After` when known and an RFC 9457
//! `application/problem+json` body.
//!
//! | rejection | status | headers | problem `type` |
//! |---|---|---|---|
//! | open circuit | `503 Service Unavailable` | `Retry-After: <seconds, rounded up, ≥ 1>` when known | `urn:rampart:circuit-open` |
//! | full bulkhead | `503 Service Unavailable` | none | `urn:rampart:bulkhead-full` |
//! | deadline passed | `504 Gateway Timeout` | none | `urn:rampart:timeout` |
//! | rate limit | `429 Too Many Requests` | `Retry-After` when known | `urn:rampart:rate-limited` |
//! | cost budget spent | `429 Too Many Requests` | `Retry-After` when known | `urn:rampart:budget-exhausted` |
//!
//! The body is a problem details document, e.g.
//! `{"type":"urn:rampart:circuit-open","title":"Circuit open","status":503,"detail":"circuit breaker is open","retry_after":3}`. Any other error is the inner service's own failure:
//! [`handle_error`] answers `500 Internal Server Error` for it, without leaking its text.
//!
//! This module needs only `axum-core` (for [`IntoResponse`](axum_core::response::IntoResponse)), not axum itself.
//!
//! # Why a full bulkhead has no `Retry-After`
//!
//! A bulkhead cannot know when a permit frees up: that depends on how long the calls in flight
//! take. A made-up `Retry-After` would synchronise clients into retrying together, so the
//! response carries none and clients use their own backoff (with jitter). It is `503`, not
//! `429`: the server is saturated, the client did nothing wrong. When the bulkhead is
//! partitioned per tenant (a `KeyedBulkheadLayer` keyed by tenant), a rejection *does* mean
//! "this tenant is over its share", and `429 Too Many Requests` says so better; see
//! [Custom handlers](#custom-handlers).
//!
//! # With `HandleErrorLayer`
//!
//! axum requires infallible services, so a layer that can reject needs a
//! [`HandleErrorLayer`][HandleErrorLayer] *outside* it (earlier in the `ServiceBuilder`):
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, error_handling::HandleErrorLayer, routing::get};
//! use rampart::{ServiceBuilderExt, circuit_breaker::CircuitBreakerLayer};
//! use tower::ServiceBuilder;
//!
//! let breaker = CircuitBreakerLayer::builder()
//!     .name("checkout")
//!     .open_duration(Duration::from_secs(10))
//!     .layer()
//!     .unwrap()
//!     .classifier(rampart::core::classify::HttpClassifier::new()); // 5xx count as failures
//!
//! let app: Router = Router::new()
//!     .route("/checkout", get(|| async { "ok" }))
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(HandleErrorLayer::new(rampart::axum::handle_error))
//!             .circuit_breaker(breaker),
//!     );
//! # let _ = app;
//! ```
//!
//! [`RespondToErrorsLayer`] does the same as `HandleErrorLayer::new(handle_error)` without
//! axum's boxed future and per-request clone of the stack (on a trivial route under load, 3 %
//! of the server's throughput, see the README's whole-stack figures); keep `HandleErrorLayer`
//! for a handler of your own:
//!
//! ```
//! use axum::{Router, routing::get};
//! use rampart::{ServiceBuilderExt, axum::RespondToErrorsLayer, circuit_breaker::CircuitBreakerLayer};
//! use tower::ServiceBuilder;
//!
//! let breaker = CircuitBreakerLayer::builder().name("checkout").layer().unwrap();
//! let app: Router = Router::new()
//!     .route("/checkout", get(|| async { "ok" }))
//!     .layer(ServiceBuilder::new().layer(RespondToErrorsLayer::new()).circuit_breaker(breaker));
//! # let _ = app;
//! ```
//!
//! axum calls `layer` once per route (and clones services per connection): every route above
//! shares one breaker, because its state lives in the layer. Use `route_layer` with separate
//! layers, or a `KeyedCircuitBreakerLayer` keyed by path, for one breaker per route. The same
//! holds for a bulkhead: one `BulkheadLayer` bounds the routes it wraps *together*.
//!
//! A bulkhead goes the same way, inside the `HandleErrorLayer`:
//!
//! ```
//! use axum::{Router, error_handling::HandleErrorLayer, routing::get};
//! use rampart::{ServiceBuilderExt, bulkhead::{BulkheadLayer, PriorityHeader}};
//! use tower::ServiceBuilder;
//!
//! let bulkhead = BulkheadLayer::builder()
//!     .name("reports")
//!     .class("critical", 4) // highest priority first
//!     .class("bulk", 2)
//!     .layer()
//!     .unwrap()
//!     .prioritize(PriorityHeader::new(http::HeaderName::from_static("x-priority")));
//!
//! let app: Router = Router::new()
//!     .route("/report", get(|| async { "report" }))
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(HandleErrorLayer::new(rampart::axum::handle_error))
//!             .bulkhead(bulkhead),
//!     );
//! # let _ = app;
//! ```
//!
//! # Custom handlers
//!
//! To handle other errors your way, call [`rejection_response`] first:
//!
//! ```
//! use axum::{http::StatusCode, response::{IntoResponse, Response}};
//! use rampart::core::error::BoxError;
//!
//! async fn handle(err: BoxError) -> Response {
//!     if let Some(res) = rampart::axum::rejection_response(&*err) {
//!         return res;
//!     }
//!     (StatusCode::BAD_GATEWAY, "upstream failed").into_response()
//! }
//! # let _ = handle;
//! ```
//!
//! Or change a mapping: behind a bulkhead partitioned per tenant, a rejection means the tenant
//! is over its share, which `429 Too Many Requests` says better than `503`:
//!
//! ```
//! use axum::{http::StatusCode, response::{IntoResponse, Response}};
//! use rampart::core::error::BoxError;
//! use rampart::axum::RejectionResponse;
//! use rampart::rejection::{Rejected, RejectionKind};
//!
//! /// For the routes behind a `KeyedBulkheadLayer` keyed by tenant.
//! async fn handle_per_tenant(err: BoxError) -> Response {
//!     match Rejected::find(&*err) {
//!         Some(r) if r.kind() == RejectionKind::BulkheadFull => {
//!             (StatusCode::TOO_MANY_REQUESTS, r.message()).into_response()
//!         }
//!         Some(r) => RejectionResponse(r).into_response(),
//!         None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
//!     }
//! }
//! # let _ = handle_per_tenant;
//! ```
//!
//! [HandleErrorLayer]: https://docs.rs/axum/0.8/axum/error_handling/struct.HandleErrorLayer.html

mod respond;
mod response;

pub use respond::{RespondToErrors, RespondToErrorsFuture, RespondToErrorsLayer};
pub use response::{
    RATE_LIMIT, RATE_LIMIT_POLICY, RejectionResponse, handle_error, rejection_response,
};
