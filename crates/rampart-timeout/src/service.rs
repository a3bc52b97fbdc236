//! [`Timeout`] and its [`ResponseFuture`].

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderValue, Request};
use pin_project_lite::pin_project;
use rampart_core::{
    deadline::{Deadline, grpc_timeout, parse_grpc_timeout},
    error::PolicyError,
};
use tokio::time::Sleep;
use tower_service::Service;

use crate::{
    class::RequestHead,
    config::Config,
    error::{DeadlineExceeded, TimeoutError},
};

const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// A service whose calls are timed out by operation class. Made by
/// [`TimeoutLayer`](crate::TimeoutLayer).
pub struct Timeout<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: Clone> Clone for Timeout<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Timeout<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Timeout<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    rampart_core::inner_service_accessors!();
}

impl<S, B> Service<Request<B>> for Timeout<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = TimeoutError<S::Error>;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(PolicyError::Inner)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let config = &*self.config;
        let name = config.classify.class(&RequestHead {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            extensions: req.extensions(),
        });
        let (class, timeout) = config.lookup(name);
        let own = Deadline::after(timeout);
        let mut deadline = own;
        if config.honour_grpc_timeout
            && let Some(d) = req
                .headers()
                .get(&GRPC_TIMEOUT)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_grpc_timeout)
        {
            deadline = deadline.min(Deadline::after(d));
        }
        let deadline = deadline.tighten(req.extensions_mut());
        if config.send_grpc_timeout
            && let Ok(v) = HeaderValue::from_str(&grpc_timeout(deadline.remaining()))
        {
            req.headers_mut().insert(GRPC_TIMEOUT, v);
        }
        let error = DeadlineExceeded::new(config.name, class, timeout, deadline != own);
        if deadline.has_passed() {
            // Already late (an outer deadline passed): the inner service is not called.
            return ResponseFuture {
                state: State::Expired { error: Some(error) },
            };
        }
        ResponseFuture {
            state: State::Running {
                fut: self.inner.call(req),
                timer: Timer::Idle {
                    deadline: deadline.instant(),
                },
                error,
            },
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running {
            #[pin]
            fut: F,
            #[pin]
            timer: Timer,
            error: DeadlineExceeded,
        },
        Expired {
            error: Option<DeadlineExceeded>,
        },
    }
}

pin_project! {
    /// The deadline's timer, made only once the inner future is pending: a call answered in
    /// its first poll (a cache hit, a health check, a trivial route) never touches tokio's
    /// timer or its runtime handle (whose reference count every worker thread would share).
    #[project = TimerProj]
    enum Timer {
        Idle { deadline: tokio::time::Instant },
        Armed {
            #[pin]
            sleep: Sleep,
        },
    }
}

pin_project! {
    /// The response future of [`Timeout`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = Result<T, TimeoutError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Running {
                fut,
                mut timer,
                error,
            } => {
                if let Poll::Ready(out) = fut.poll(cx) {
                    return Poll::Ready(out.map_err(PolicyError::Inner));
                }
                if let TimerProj::Idle { deadline } = timer.as_mut().project() {
                    let sleep = tokio::time::sleep_until(*deadline);
                    timer.set(Timer::Armed { sleep });
                }
                if let TimerProj::Armed { sleep } = timer.project()
                    && sleep.poll(cx).is_ready()
                {
                    return Poll::Ready(Err(elapsed(*error)));
                }
                Poll::Pending
            }
            StateProj::Expired { error } => {
                let error = error
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Err(elapsed(error)))
            }
        }
    }
}

#[cold]
fn elapsed<E>(error: DeadlineExceeded) -> TimeoutError<E> {
    tracing::debug!(
        target: "rampart::timeout",
        class = error.class(), timeout = ?error.timeout(), inherited = error.inherited(),
        "deadline exceeded"
    );
    metrics::counter!(
        "rampart_timeout_elapsed_total",
        rampart_core::registry::INSTANCE_LABEL => error.name(),
        "class" => error.class()
    )
    .increment(1);
    PolicyError::Rejected(error)
}
