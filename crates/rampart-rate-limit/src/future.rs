//! [`ResponseFuture`]: the inner call, or the wait before it, or the refusal.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use pin_project_lite::pin_project;
use rampart_core::{error::PolicyError, rejection::RateLimited};
use tokio::time::Sleep;
use tower_service::Service;

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Calling {
            #[pin]
            fut: S::Future,
        },
        Waiting {
            // Boxed: only a call that waits pays for the timer.
            sleep: Pin<Box<Sleep>>,
            svc: Option<S>,
            req: Option<Req>,
        },
        Refused {
            refused: Option<RateLimited>,
        },
    }
}

pin_project! {
    /// The response future of [`RateLimit`](crate::RateLimit).
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ResponseFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S: Service<Req>, Req> ResponseFuture<S, Req> {
    #[inline]
    pub(crate) fn now(fut: S::Future) -> Self {
        Self {
            state: State::Calling { fut },
        }
    }

    pub(crate) fn after(wait: Duration, svc: S, req: Req) -> Self {
        Self {
            state: State::Waiting {
                sleep: Box::pin(tokio::time::sleep(wait)),
                svc: Some(svc),
                req: Some(req),
            },
        }
    }

    pub(crate) fn refused(refused: RateLimited) -> Self {
        Self {
            state: State::Refused {
                refused: Some(refused),
            },
        }
    }
}

impl<S: Service<Req>, Req> Future for ResponseFuture<S, Req> {
    type Output = Result<S::Response, PolicyError<RateLimited, S::Error>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { fut } => {
                    return fut.poll(cx).map_err(PolicyError::Inner);
                }
                StateProj::Waiting { sleep, svc, req } => {
                    ready!(sleep.as_mut().poll(cx));
                    let (Some(mut svc), Some(req)) = (svc.take(), req.take()) else {
                        unreachable!("a waiting call holds its service and request until it goes")
                    };
                    let fut = svc.call(req);
                    this.state.set(State::Calling { fut });
                }
                StateProj::Refused { refused } => {
                    let Some(refused) = refused.take() else {
                        unreachable!("a refused call's future is polled after it was ready")
                    };
                    return Poll::Ready(Err(PolicyError::Rejected(refused)));
                }
            }
        }
    }
}
