//! Rejections as axum responses: `503 Service Unavailable` with `Retry-After`.
//!
//! | rejection | status | headers |
//! |---|---|---|
//! | open circuit | `503 Service Unavailable` | `Retry-After: <seconds, rounded up, ≥ 1>` when known |
//!
//! The body is a short plain-text message. Any other error is the inner service's own failure:
//! [`handle_error`] answers `500 Internal Server Error` for it, without leaking its text.
//!
//! # With `HandleErrorLayer`
//!
//! axum requires infallible services, so a layer that can reject needs a
//! [`HandleErrorLayer`](::axum::error_handling::HandleErrorLayer) *outside* it (earlier in the
//! `ServiceBuilder`):
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
//! axum calls `layer` once per route (and clones services per connection): every route above
//! shares one breaker, because its state lives in the layer. Use `route_layer` with separate
//! layers, or a `KeyedCircuitBreakerLayer` keyed by path, for one breaker per route.
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

use std::error::Error;

use ::axum::{
    http::{HeaderValue, StatusCode, header::RETRY_AFTER},
    response::{IntoResponse, Response},
};
use rampart_core::error::BoxError;

use crate::rejection::{Rejected, RejectionKind};

/// The HTTP status for a kind of rejection.
const fn status_of(kind: RejectionKind) -> StatusCode {
    match kind {
        RejectionKind::CircuitOpen => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// `503 Service Unavailable` (for an open circuit), `Retry-After` when the wait is known, and
/// the rejection's message as a plain-text body.
impl IntoResponse for Rejected {
    fn into_response(self) -> Response {
        let mut res = (status_of(self.kind()), self.message()).into_response();
        if let Some(secs) = self.retry_after_secs() {
            res.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
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
    Rejected::find(err).map(IntoResponse::into_response)
}

/// A handler for [`HandleErrorLayer`](::axum::error_handling::HandleErrorLayer): a rampart
/// rejection becomes its response (see [`rejection_response`]); any other error becomes
/// `500 Internal Server Error`, whose body does not repeat the error's text.
///
/// It takes any error that converts into a [`BoxError`], so it fits right outside a circuit
/// breaker (`BreakerError<E>`) as well as after a `BoxError`-producing stack.
pub async fn handle_error<E>(err: E) -> Response
where
    E: Into<BoxError>,
{
    let err: BoxError = err.into();
    rejection_response(&*err).unwrap_or_else(|| {
        (StatusCode::INTERNAL_SERVER_ERROR, "internal server error").into_response()
    })
}

#[cfg(all(test, feature = "circuit-breaker"))]
mod tests {
    use super::*;
    use rampart_circuit_breaker::{BreakerError, CircuitOpen, RejectedBy};
    use std::time::Duration;

    #[tokio::test]
    async fn open_circuit_is_503_with_retry_after() {
        let err = BreakerError::<std::io::Error>::Rejected(CircuitOpen::new(
            RejectedBy::Open,
            Some(Duration::from_millis(200)),
        ));
        let res = handle_error(err).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[RETRY_AFTER], "1");
    }

    #[tokio::test]
    async fn unknown_wait_has_no_retry_after() {
        let err = BreakerError::<std::io::Error>::Rejected(CircuitOpen::new(
            RejectedBy::ForcedOpen,
            None,
        ));
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
}
