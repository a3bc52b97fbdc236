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
//! This module needs only `axum-core` (for [`IntoResponse`]), not axum itself.
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

pub use respond::{RespondToErrors, RespondToErrorsFuture, RespondToErrorsLayer};

use std::error::Error;

use axum_core::response::{IntoResponse, Response};
use http::{
    HeaderValue, StatusCode,
    header::{CONTENT_TYPE, RETRY_AFTER},
};
use rampart_core::error::BoxError;
use rampart_core::problem::{self, Problem};

use crate::rejection::{Rejected, RejectionKind};

/// The HTTP status for a kind of rejection.
const fn status_of(kind: RejectionKind) -> StatusCode {
    match kind {
        // The dependency is unavailable for a while; `Retry-After` says how long.
        RejectionKind::CircuitOpen => StatusCode::SERVICE_UNAVAILABLE,
        // The server is saturated, not the client over a quota (see the module docs for `429`).
        RejectionKind::BulkheadFull => StatusCode::SERVICE_UNAVAILABLE,
        RejectionKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        // The caller is over its quota.
        RejectionKind::RateLimited | RejectionKind::BudgetExhausted => {
            StatusCode::TOO_MANY_REQUESTS
        }
        // A kind added to rampart-core after this mapping: the call was refused, not failed.
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The RFC 9457 problem type and title for a kind of rejection.
const fn problem_of(kind: RejectionKind) -> (&'static str, &'static str) {
    match kind {
        RejectionKind::CircuitOpen => ("urn:rampart:circuit-open", "Circuit open"),
        RejectionKind::BulkheadFull => ("urn:rampart:bulkhead-full", "Bulkhead full"),
        RejectionKind::Timeout => ("urn:rampart:timeout", "Deadline exceeded"),
        RejectionKind::RateLimited => ("urn:rampart:rate-limited", "Rate limited"),
        RejectionKind::BudgetExhausted => ("urn:rampart:budget-exhausted", "Budget exhausted"),
        _ => ("urn:rampart:rejected", "Rejected"),
    }
}

/// A rampart [`Rejected`] as an axum response (a newtype, as axum's `Json` is: the rejection
/// vocabulary lives in `rampart-core`, which knows nothing of axum).
///
/// `503 Service Unavailable` (an open circuit, a full bulkhead) or `504 Gateway Timeout` (a
/// deadline), `Retry-After` when the wait is known, and an `application/problem+json` body
/// (RFC 9457): `type` (`urn:rampart:circuit-open`, `urn:rampart:bulkhead-full`,
/// `urn:rampart:timeout`), `title`, `status`, `detail` (the rejection's message) and, when
/// known, `retry_after` in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RejectionResponse(pub Rejected);

impl IntoResponse for RejectionResponse {
    fn into_response(self) -> Response {
        let Self(rejected) = self;
        let (kind, title) = problem_of(rejected.kind());
        let status = status_of(rejected.kind());
        let mut problem = Problem::new(kind, title, status.as_u16()).detail(rejected.message());
        if let Some(secs) = rejected.retry_after_secs() {
            problem = problem.extension("retry_after", secs);
        }
        let mut res = (
            status,
            [(
                CONTENT_TYPE,
                HeaderValue::from_static(problem::CONTENT_TYPE),
            )],
            problem.to_json(),
        )
            .into_response();
        if let Some(secs) = rejected.retry_after_secs() {
            res.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(limit) = rejected.limit() {
            let (policy, state) = rate_limit_headers(&limit);
            res.headers_mut().insert(RATE_LIMIT_POLICY, policy);
            res.headers_mut().insert(RATE_LIMIT, state);
        }
        res
    }
}

/// The IETF draft's `RateLimit-Policy` header (`"limit";q=<quota>;w=<window secs>`).
pub const RATE_LIMIT_POLICY: http::HeaderName = http::HeaderName::from_static("ratelimit-policy");
/// The IETF draft's `RateLimit` header (`"limit";r=<remaining>;t=<secs until reset>`).
pub const RATE_LIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit");

/// The `RateLimit-Policy` and `RateLimit` values of a limit (draft-ietf-httpapi-ratelimit-headers:
/// one policy, named `limit`; seconds rounded up).
fn rate_limit_headers(limit: &rampart_core::rejection::LimitInfo) -> (HeaderValue, HeaderValue) {
    let secs = |d: std::time::Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
    let policy = format!(
        "\"limit\";q={};w={}",
        limit.quota,
        secs(limit.window).max(1)
    );
    let state = format!("\"limit\";r={};t={}", limit.remaining, secs(limit.reset));
    // Digits, quotes and separators only: always a valid header value.
    (
        HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("\"limit\"")),
        HeaderValue::from_str(&state).unwrap_or(HeaderValue::from_static("\"limit\"")),
    )
}

/// The response for a rampart rejection found anywhere in `err`'s source chain, or `None` if
/// `err` is not a rejection. Pass a `BoxError` as `&*err`.
///
/// ```
/// # #[cfg(feature = "circuit-breaker")] {
/// use std::time::Duration;
/// use rampart::circuit_breaker::{BreakerError, CircuitOpen, RejectedBy};
///
/// let err = BreakerError::<std::io::Error>::Rejected(CircuitOpen::new(
///     RejectedBy::Open,
///     Some(Duration::from_millis(2500)),
/// ));
/// let res = rampart::axum::rejection_response(&err).unwrap();
/// assert_eq!(res.status(), 503);
/// assert_eq!(res.headers()["retry-after"], "3");
/// # }
/// ```
pub fn rejection_response(err: &(dyn Error + 'static)) -> Option<Response> {
    Rejected::find(err).map(|r| RejectionResponse(r).into_response())
}

/// A handler for axum's [`HandleErrorLayer`][HandleErrorLayer]: a rampart rejection becomes
/// its response (see [`rejection_response`]); any other error becomes `500 Internal Server
/// Error`, whose body does not repeat the error's text.
///
/// It takes any error that converts into a [`BoxError`], so it fits right outside a circuit
/// breaker (`BreakerError<E>`) or a bulkhead (`BulkheadError<E>`) as well as after a
/// `BoxError`-producing stack.
///
/// [HandleErrorLayer]: https://docs.rs/axum/0.8/axum/error_handling/struct.HandleErrorLayer.html
///
/// [`RespondToErrorsLayer`] applies the same mapping without axum's boxing, and is cheaper.
pub async fn handle_error<E>(err: E) -> Response
where
    E: Into<BoxError>,
{
    error_response(&*err.into())
}

/// A rejection's response, else `500` with a body that does not repeat the error's text.
fn error_response(err: &(dyn Error + 'static)) -> Response {
    rejection_response(err).unwrap_or_else(|| {
        (StatusCode::INTERNAL_SERVER_ERROR, "internal server error").into_response()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rejection::{BulkheadFull, CircuitOpen, FullReason, RejectedBy};
    use rampart_core::error::PolicyError;
    use std::{sync::Arc, time::Duration};

    type BreakerError = PolicyError<CircuitOpen, std::io::Error>;

    #[tokio::test]
    async fn open_circuit_is_503_with_retry_after() {
        let err = BreakerError::Rejected(CircuitOpen::new(
            RejectedBy::Open,
            Some(Duration::from_millis(200)),
        ));
        let res = handle_error(err).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[RETRY_AFTER], "1");
        assert_eq!(res.headers()[CONTENT_TYPE], "application/problem+json");
        let body = ::axum::body::to_bytes(res.into_body(), 1024)
            .await
            .expect("body");
        assert_eq!(
            &body[..],
            br#"{"type":"urn:rampart:circuit-open","title":"Circuit open","status":503,"detail":"circuit breaker is open","retry_after":1}"#
        );
    }

    #[tokio::test]
    async fn a_rate_limit_is_429_with_retry_after_and_the_ratelimit_headers() {
        use rampart_core::rejection::{LimitInfo, LimitReason, LimitedBy, RateLimited};
        let err = PolicyError::<_, std::io::Error>::Rejected(RateLimited::new(
            LimitedBy::Rate,
            LimitReason::OverLimit,
            1,
            Some(Duration::from_millis(1500)),
            LimitInfo {
                quota: 100,
                window: Duration::from_secs(60),
                remaining: 0,
                reset: Duration::from_millis(1500),
            },
        ));
        let res = handle_error(err).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()[RETRY_AFTER], "2");
        assert_eq!(res.headers()[RATE_LIMIT_POLICY], r#""limit";q=100;w=60"#);
        assert_eq!(res.headers()[RATE_LIMIT], r#""limit";r=0;t=2"#);
        let body = ::axum::body::to_bytes(res.into_body(), 1024)
            .await
            .expect("body");
        assert!(
            body.starts_with(
                br#"{"type":"urn:rampart:rate-limited","title":"Rate limited","status":429"#
            ),
            "{body:?}"
        );
    }

    #[tokio::test]
    async fn unknown_wait_has_no_retry_after() {
        let err = BreakerError::Rejected(CircuitOpen::new(RejectedBy::ForcedOpen, None));
        let res = handle_error(err).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(res.headers().get(RETRY_AFTER).is_none());
    }

    #[tokio::test]
    async fn other_errors_are_500_without_their_text() {
        let err = BreakerError::Inner(std::io::Error::other("secret db password in here"));
        assert!(rejection_response(&err).is_none());
        let res = handle_error(err).await;
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = ::axum::body::to_bytes(res.into_body(), 1024)
            .await
            .expect("body");
        assert_eq!(&body[..], b"internal server error");
    }

    #[tokio::test]
    async fn a_full_bulkhead_is_503_without_retry_after() {
        let full = |reason| {
            PolicyError::<_, std::io::Error>::Rejected(BulkheadFull::new(
                reason,
                Arc::from("bulk"),
                Duration::ZERO,
            ))
        };
        for reason in [
            FullReason::NoCapacity,
            FullReason::QueueFull,
            FullReason::WaitElapsed,
        ] {
            let res = handle_error(full(reason)).await;
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "{reason:?}");
            assert!(res.headers().get(RETRY_AFTER).is_none(), "{reason:?}");
        }
        let res = handle_error(full(FullReason::NoCapacity)).await;
        let body = ::axum::body::to_bytes(res.into_body(), 1024)
            .await
            .expect("body");
        assert_eq!(
            &body[..],
            br#"{"type":"urn:rampart:bulkhead-full","title":"Bulkhead full","status":503,"detail":"bulkhead is full"}"#
        );
    }
}
