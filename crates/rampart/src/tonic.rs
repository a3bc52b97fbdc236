//! Rejections as `tonic::Status`: `UNAVAILABLE` with `grpc-retry-pushback-ms`, or
//! `RESOURCE_EXHAUSTED`.
//!
//! | rejection | code | metadata |
//! |---|---|---|
//! | open circuit | `UNAVAILABLE` | `grpc-retry-pushback-ms: <ms, rounded up>` when the wait is known |
//! | full bulkhead | `RESOURCE_EXHAUSTED` | none |
//!
//! `UNAVAILABLE` is the code gRPC clients retry by default, and `grpc-retry-pushback-ms` is the
//! gRPC retry design's way for the server side to say how long to hold off.
//!
//! A full bulkhead is `RESOURCE_EXHAUSTED`, the code gRPC defines for "out of capacity", and
//! carries no pushback: a bulkhead cannot know when a permit frees up, and a made-up delay
//! would make clients retry in lockstep. gRPC retry policies retry `RESOURCE_EXHAUSTED` only
//! when it is listed in their `retryableStatusCodes`; a client-side bulkhead's rejection is the
//! caller's own overload, which retrying at once would only feed.
//!
//! # Client side: a breaker around a `Channel`
//!
//! A tonic client turns its transport's error into a `Status` by looking for a `Status` in the
//! error chain; anything else becomes `UNKNOWN`. Put a [`MapRejectionLayer`] (or
//! [`ServiceBuilderExt::rejections_as_status`](crate::ServiceBuilderExt::rejections_as_status))
//! *outside* the breaker so an open circuit reaches the caller as `UNAVAILABLE`:
//!
//! ```no_run
//! # async fn demo(channel: tonic::transport::Channel) {
//! use rampart::{ServiceBuilderExt, circuit_breaker::CircuitBreakerLayer};
//! use rampart::core::classify::GrpcClassifier;
//! use tower::ServiceBuilder;
//!
//! let breaker = CircuitBreakerLayer::builder()
//!     .name("inventory-grpc")
//!     .layer()
//!     .unwrap()
//!     .classifier(GrpcClassifier::new()); // status read from headers or trailers
//!
//! let svc = ServiceBuilder::new()
//!     .rejections_as_status()
//!     .circuit_breaker(breaker)
//!     .service(channel);
//! // let client = SomeClient::new(svc);
//! # let _ = svc;
//! # }
//! ```
//!
//! # Server side
//!
//! tonic's server does the same conversion for errors of its layers, so the same layer in
//! `Server::builder().layer(…)`, outside a breaker or any other rampart layer, answers
//! `UNAVAILABLE` (or `RESOURCE_EXHAUSTED`) instead of `UNKNOWN`. A server-side bulkhead bounds
//! the requests the server works on at once:
//!
//! ```no_run
//! # async fn demo(routes: tonic::service::Routes, addr: std::net::SocketAddr) {
//! use rampart::{ServiceBuilderExt, bulkhead::BulkheadLayer};
//! use tower::ServiceBuilder;
//!
//! let bulkhead = BulkheadLayer::builder().name("grpc-server").max_concurrent(64).layer().unwrap();
//! tonic::transport::Server::builder()
//!     .layer(ServiceBuilder::new().rejections_as_status().bulkhead(bulkhead))
//!     .add_routes(routes)
//!     .serve(addr)
//!     .await
//!     .unwrap();
//! # }
//! ```

use std::{
    error::Error,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use ::tonic::{Code, Status, metadata::MetadataValue};
use pin_project_lite::pin_project;
use rampart_core::error::BoxError;
use tower::{Layer, Service};

use crate::rejection::{Rejected, RejectionKind};

use rampart_core::header::GRPC_RETRY_PUSHBACK_MS;

/// The gRPC code for a kind of rejection.
const fn code_of(kind: RejectionKind) -> Code {
    match kind {
        RejectionKind::CircuitOpen => Code::Unavailable,
        RejectionKind::BulkheadFull => Code::ResourceExhausted,
        RejectionKind::Timeout => Code::DeadlineExceeded,
        RejectionKind::RateLimited | RejectionKind::BudgetExhausted => Code::ResourceExhausted,
        // A kind added to rampart-core after this mapping: the call was refused.
        _ => Code::Unavailable,
    }
}

/// The `Status` for a rejection: `UNAVAILABLE` (an open circuit), `RESOURCE_EXHAUSTED` (a full
/// bulkhead, a rate limit, a cost budget) or `DEADLINE_EXCEEDED` (a deadline), with the
/// rejection's message, and the retry delay in `grpc-retry-pushback-ms` when it is known.
///
/// A function rather than `From<Rejected> for Status`: both types are foreign to this crate.
pub fn status(rejected: Rejected) -> Status {
    let mut status = Status::new(code_of(rejected.kind()), rejected.message());
    if let Some(ms) = rejected.retry_after_millis() {
        status
            .metadata_mut()
            .insert(GRPC_RETRY_PUSHBACK_MS, MetadataValue::from(ms));
    }
    status
}

/// The `Status` for a rampart rejection found anywhere in `err`'s source chain, or `None` if
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
/// let status = rampart::tonic::status_from(&err).unwrap();
/// assert_eq!(status.code(), tonic::Code::Unavailable);
/// assert_eq!(status.metadata().get("grpc-retry-pushback-ms").unwrap(), "2500");
/// # }
/// ```
pub fn status_from(err: &(dyn Error + 'static)) -> Option<Status> {
    Rejected::find(err).map(status)
}

/// A rampart rejection becomes a boxed [`Status`] (see [`status_from`]), which tonic hands to
/// the caller as is; any other error is boxed unchanged, so tonic maps it as it always does.
///
/// This is what [`MapRejection`] does to its inner service's errors; use it directly in a
/// `map_err` of your own.
pub fn map_rejection<E>(err: E) -> BoxError
where
    E: Into<BoxError>,
{
    let err: BoxError = err.into();
    match status_from(&*err) {
        Some(status) => Box::new(status),
        None => err,
    }
}

/// Applies [`MapRejection`]: rampart rejections from the layers inside become
/// `tonic::Status`es. Put it outside every rampart layer of a tonic client or server.
#[derive(Debug, Clone, Copy, Default)]
pub struct MapRejectionLayer;

impl MapRejectionLayer {
    /// The layer.
    pub const fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for MapRejectionLayer {
    type Service = MapRejection<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MapRejection { inner }
    }
}

/// A service whose errors go through [`map_rejection`]: rejections become [`Status`]es, other
/// errors are boxed unchanged. Made by [`MapRejectionLayer`].
#[derive(Debug, Clone)]
pub struct MapRejection<S> {
    inner: S,
}

impl<S> MapRejection<S> {
    /// Wraps `inner`.
    pub const fn new(inner: S) -> Self {
        Self { inner }
    }

    rampart_core::inner_service_accessors!();
}

impl<S, Req> Service<Req> for MapRejection<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = MapRejectionFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(map_rejection)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        MapRejectionFuture {
            inner: self.inner.call(req),
        }
    }
}

pin_project! {
    /// The response future of [`MapRejection`].
    #[derive(Debug)]
    pub struct MapRejectionFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, T, E> Future for MapRejectionFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(ready!(self.project().inner.poll(cx)).map_err(map_rejection))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rejection::{BulkheadFull, CircuitOpen, FullReason, RejectedBy};
    use rampart_core::error::PolicyError;
    use std::{sync::Arc, time::Duration};

    type BreakerError<E> = PolicyError<CircuitOpen, E>;

    #[test]
    fn open_circuit_is_unavailable_with_pushback() {
        let err = BreakerError::<std::io::Error>::Rejected(CircuitOpen::new(
            RejectedBy::Open,
            Some(Duration::from_millis(1234)),
        ));
        let boxed = map_rejection(err);
        // tonic's own conversion keeps our status.
        let status = Status::from_error(boxed);
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "circuit breaker is open");
        assert_eq!(
            status
                .metadata()
                .get(GRPC_RETRY_PUSHBACK_MS)
                .expect("pushback"),
            "1234"
        );
    }

    #[test]
    fn unknown_wait_has_no_pushback() {
        let err = CircuitOpen::new(RejectedBy::HalfOpenFull, None);
        let status = status_from(&err).expect("a status");
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.metadata().get(GRPC_RETRY_PUSHBACK_MS).is_none());
    }

    #[test]
    fn other_errors_pass_through_unchanged() {
        let err = BreakerError::Inner(std::io::Error::other("reset"));
        let boxed = map_rejection(err);
        assert!(boxed.downcast_ref::<Status>().is_none());
        assert_eq!(boxed.to_string(), "reset");
    }

    #[tokio::test]
    async fn the_layer_maps_rejections_of_the_service_inside() {
        use tower::{ServiceBuilder, ServiceExt, service_fn};
        let svc = ServiceBuilder::new()
            .layer(MapRejectionLayer::new())
            .service(service_fn(|open: bool| async move {
                if open {
                    Err::<(), _>(BreakerError::Rejected(CircuitOpen::new(
                        RejectedBy::Open,
                        None,
                    )))
                } else {
                    Err(BreakerError::Inner(std::io::Error::other("reset")))
                }
            }));
        let err = svc.clone().oneshot(true).await.expect_err("rejected");
        let status = err.downcast_ref::<Status>().expect("a Status");
        assert_eq!(status.code(), Code::Unavailable);
        let err = svc.oneshot(false).await.expect_err("failed");
        assert!(err.downcast_ref::<Status>().is_none());
        assert_eq!(err.to_string(), "reset");
    }

    #[test]
    fn a_full_bulkhead_is_resource_exhausted_without_pushback() {
        for reason in [
            FullReason::NoCapacity,
            FullReason::QueueFull,
            FullReason::WaitElapsed,
        ] {
            let full = BulkheadFull::new(reason, Arc::from("bulk"), Duration::ZERO);
            // Through `map_rejection` and tonic's own conversion, as a client or server sees it.
            let status = Status::from_error(map_rejection(
                PolicyError::<_, std::io::Error>::Rejected(full),
            ));
            assert_eq!(status.code(), Code::ResourceExhausted, "{reason:?}");
            assert_eq!(status.message(), reason.message());
            assert!(status.metadata().get(GRPC_RETRY_PUSHBACK_MS).is_none());
        }
    }
}
