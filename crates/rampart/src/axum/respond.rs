//! [`RespondToErrorsLayer`]: [`handle_error`](super::handle_error)'s mapping as a layer of its
//! own, with no boxed future and no clone of the service per request.

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use axum_core::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use rampart_core::error::BoxError;
use tower::{Layer, Service};

/// Makes a fallible stack infallible, as axum requires: a rampart rejection becomes its
/// response, any other error `500 Internal Server Error` (the mapping of
/// [`handle_error`](super::handle_error)).
///
/// It does what `HandleErrorLayer::new(rampart::axum::handle_error)` does, for less: axum's
/// `HandleErrorLayer` takes any async handler, so it boxes every request's future and calls a
/// clone of the whole stack inside it (one reference-count increment per layer, and an
/// allocation for axum's `Route`, on every request). This layer maps the error as the call
/// returns it. Use `HandleErrorLayer` for a handler of your own (see
/// [Custom handlers](super#custom-handlers)).
///
/// ```
/// use axum::{Router, routing::get};
/// use rampart::{ServiceBuilderExt, axum::RespondToErrorsLayer, bulkhead::BulkheadLayer};
/// use tower::ServiceBuilder;
///
/// let bulkhead = BulkheadLayer::builder().max_concurrent(64).layer().unwrap();
/// let app: Router = Router::new().route("/", get(|| async { "ok" })).layer(
///     ServiceBuilder::new()
///         .layer(RespondToErrorsLayer::new())
///         .bulkhead(bulkhead),
/// );
/// # let _ = app;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RespondToErrorsLayer(());

impl RespondToErrorsLayer {
    /// The layer.
    pub const fn new() -> Self {
        Self(())
    }
}

impl<S> Layer<S> for RespondToErrorsLayer {
    type Service = RespondToErrors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RespondToErrors {
            inner,
            not_ready: None,
        }
    }
}

/// The service of a [`RespondToErrorsLayer`]: the inner service's errors as responses.
pub struct RespondToErrors<S> {
    inner: S,
    /// The error the inner service failed to become ready with, answered by the next call.
    not_ready: Option<BoxError>,
}

impl<S: Clone> Clone for RespondToErrors<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            not_ready: None,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for RespondToErrors<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RespondToErrors")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> RespondToErrors<S> {
    rampart_core::inner_service_accessors!();
}

impl<S, Req> Service<Req> for RespondToErrors<S>
where
    S: Service<Req>,
    S::Response: IntoResponse,
    S::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = RespondToErrorsFuture<S::Future>;

    /// Ready when the inner service is. An inner service that fails to become ready (a layer
    /// that rejects in `poll_ready`) is reported as ready, and the call answers that error as
    /// its response: axum cannot take an error from `poll_ready`.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                self.not_ready = Some(e.into());
                Poll::Ready(Ok(()))
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let state = match self.not_ready.take() {
            Some(error) => State::NotReady { error: Some(error) },
            None => State::Calling {
                fut: self.inner.call(req),
            },
        };
        RespondToErrorsFuture { state }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling {
            #[pin]
            fut: F,
        },
        NotReady {
            error: Option<BoxError>,
        },
    }
}

pin_project! {
    /// The response future of [`RespondToErrors`].
    pub struct RespondToErrorsFuture<F> {
        #[pin]
        state: State<F>,
    }
}

impl<F> fmt::Debug for RespondToErrorsFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RespondToErrorsFuture")
            .finish_non_exhaustive()
    }
}

impl<F, T, E> Future for RespondToErrorsFuture<F>
where
    F: Future<Output = Result<T, E>>,
    T: IntoResponse,
    E: Into<BoxError>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Calling { fut } => fut.poll(cx).map(|out| {
                Ok(match out {
                    Ok(res) => res.into_response(),
                    Err(e) => super::response::error_response(&*e.into()),
                })
            }),
            StateProj::NotReady { error } => {
                let error = error.take().expect("polled after completion");
                Poll::Ready(Ok(super::response::error_response(&*error)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::StatusCode;
    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::rejection::{CircuitOpen, RejectedBy};
    use rampart_core::error::PolicyError;

    type Result<T> = std::result::Result<T, PolicyError<CircuitOpen, std::io::Error>>;

    async fn status_of(answer: fn() -> Result<&'static str>) -> (StatusCode, Option<String>) {
        let svc =
            RespondToErrorsLayer::new().layer(service_fn(move |_: ()| async move { answer() }));
        let res = svc.oneshot(()).await.unwrap();
        let after = res
            .headers()
            .get(http::header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        (res.status(), after)
    }

    #[tokio::test]
    async fn answers_pass_and_errors_become_their_responses() {
        assert_eq!(status_of(|| Ok("ok")).await, (StatusCode::OK, None));
        let open = || {
            Err(PolicyError::Rejected(CircuitOpen::new(
                RejectedBy::Open,
                Some(Duration::from_secs(3)),
            )))
        };
        assert_eq!(
            status_of(open).await,
            (StatusCode::SERVICE_UNAVAILABLE, Some("3".to_owned()))
        );
        let failed = || {
            Err(PolicyError::Inner(std::io::Error::other(
                "db password=hunter2",
            )))
        };
        assert_eq!(
            status_of(failed).await,
            (StatusCode::INTERNAL_SERVER_ERROR, None)
        );
    }

    /// A service that fails to become ready, once.
    #[derive(Clone)]
    struct NotReadyOnce(bool);

    impl Service<()> for NotReadyOnce {
        type Response = &'static str;
        type Error = PolicyError<CircuitOpen, std::io::Error>;
        type Future = std::future::Ready<Result<&'static str>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<()>> {
            if std::mem::replace(&mut self.0, false) {
                return Poll::Ready(Err(PolicyError::Rejected(CircuitOpen::new(
                    RejectedBy::Open,
                    None,
                ))));
            }
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, (): ()) -> Self::Future {
            std::future::ready(Ok("called"))
        }
    }

    #[tokio::test]
    async fn a_service_that_fails_to_become_ready_answers_the_next_call_with_its_error() {
        let mut svc = RespondToErrorsLayer::new().layer(NotReadyOnce(true));
        let res = svc.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        let res = svc.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "the next call reaches the service"
        );
    }
}
