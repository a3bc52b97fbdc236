//! Rejections as axum responses: the mapping (see the [module docs](super)).

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
/// [`RespondToErrorsLayer`](super::RespondToErrorsLayer) applies the same mapping without axum's boxing, and is cheaper.
pub async fn handle_error<E>(err: E) -> Response
where
    E: Into<BoxError>,
{
    error_response(&*err.into())
}

/// A rejection's response, else `500` with a body that does not repeat the error's text.
pub(super) fn error_response(err: &(dyn Error + 'static)) -> Response {
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
