//! [`RemoteRateLimitLayer`]: a rate limit decided elsewhere (a limit every replica shares, on
//! Redis), one round trip per call.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use pin_project_lite::pin_project;
use rampart_core::{BoxFuture, error::PolicyError, rejection::RateLimited};
use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;

use crate::cost::{Cost, UnitCost};

/// A limit whose decision is asynchronous: rampart-redis's `RedisRateLimiter` (keyed), or your
/// own. The future decides a call of `req` costing `cost`, as [`RateLimitLayer::check`]
/// does: go now (`Ok(None)`), go after the wait (`Ok(Some(wait))`, reserved), or the refusal.
/// It must not hang: a backend that does not answer decides by its own fallback.
///
/// [`RateLimitLayer::check`]: crate::RateLimitLayer::check
pub trait RemoteLimit<Req>: Send + Sync + 'static {
    /// Decides a call.
    fn check(
        &self,
        req: &Req,
        cost: u64,
    ) -> BoxFuture<'static, Result<Option<Duration>, RateLimited>>;
}

/// A rate limit decided by a [`RemoteLimit`] before each call: the same refusals
/// ([`RateLimited`]), costs and waits as [`RateLimitLayer`](crate::RateLimitLayer), with the
/// decision's round trip (and its boxed future) on every call. Shared by every clone and
/// `layer()` call.
pub struct RemoteRateLimitLayer<R, C = UnitCost> {
    limit: Arc<R>,
    cost: C,
}

impl<R, C: Clone> Clone for RemoteRateLimitLayer<R, C> {
    fn clone(&self) -> Self {
        Self {
            limit: self.limit.clone(),
            cost: self.cost.clone(),
        }
    }
}

impl<R: fmt::Debug, C> fmt::Debug for RemoteRateLimitLayer<R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteRateLimitLayer")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl<R> RemoteRateLimitLayer<R> {
    /// Calls are decided by `limit`, each costing 1.
    pub fn new(limit: R) -> Self {
        Self {
            limit: Arc::new(limit),
            cost: UnitCost,
        }
    }
}

impl<R, C> RemoteRateLimitLayer<R, C> {
    /// Charges each call what `cost` says.
    pub fn cost<C2>(self, cost: C2) -> RemoteRateLimitLayer<R, C2> {
        RemoteRateLimitLayer {
            limit: self.limit,
            cost,
        }
    }

    /// The limit.
    pub fn limit(&self) -> &R {
        &self.limit
    }
}

impl<S, R, C: Clone> Layer<S> for RemoteRateLimitLayer<R, C> {
    type Service = RemoteRateLimit<S, R, C>;

    fn layer(&self, inner: S) -> Self::Service {
        RemoteRateLimit {
            inner,
            limit: self.limit.clone(),
            cost: self.cost.clone(),
        }
    }
}

/// A service whose calls a [`RemoteLimit`] decides. Made by [`RemoteRateLimitLayer`].
pub struct RemoteRateLimit<S, R, C> {
    inner: S,
    limit: Arc<R>,
    cost: C,
}

impl<S, R, C> RemoteRateLimit<S, R, C> {
    rampart_core::inner_service_accessors!();
}

impl<S: Clone, R, C: Clone> Clone for RemoteRateLimit<S, R, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limit: self.limit.clone(),
            cost: self.cost.clone(),
        }
    }
}

impl<S: fmt::Debug, R, C> fmt::Debug for RemoteRateLimit<S, R, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteRateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, R, C, Req> Service<Req> for RemoteRateLimit<S, R, C>
where
    S: Service<Req> + Clone,
    R: RemoteLimit<Req>,
    C: Cost<Req>,
{
    type Response = S::Response;
    type Error = PolicyError<RateLimited, S::Error>;
    type Future = RemoteFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(PolicyError::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let decision = self.limit.check(&req, self.cost.cost(&req));
        // The decision takes a round trip: keep the service made ready for the call.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        RemoteFuture {
            state: RemoteState::Deciding {
                decision,
                svc: Some(ready),
                req: Some(req),
            },
        }
    }
}

pin_project! {
    #[project = RemoteProj]
    enum RemoteState<S, Req>
    where
        S: Service<Req>,
    {
        Deciding {
            decision: BoxFuture<'static, Result<Option<Duration>, RateLimited>>,
            svc: Option<S>,
            req: Option<Req>,
        },
        Waiting {
            sleep: Pin<Box<Sleep>>,
            svc: Option<S>,
            req: Option<Req>,
        },
        Calling {
            #[pin]
            fut: S::Future,
        },
    }
}

pin_project! {
    /// The response future of [`RemoteRateLimit`]: the decision, the wait, then the call.
    pub struct RemoteFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: RemoteState<S, Req>,
    }
}

impl<S: Service<Req>, Req> fmt::Debug for RemoteFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteFuture").finish_non_exhaustive()
    }
}

impl<S: Service<Req>, Req> Future for RemoteFuture<S, Req> {
    type Output = Result<S::Response, PolicyError<RateLimited, S::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                RemoteProj::Deciding { decision, svc, req } => {
                    let decided = ready!(decision.as_mut().poll(cx));
                    let (Some(mut svc), Some(req)) = (svc.take(), req.take()) else {
                        unreachable!("a deciding call holds its service and request")
                    };
                    match decided {
                        Ok(None) => {
                            let fut = svc.call(req);
                            this.state.set(RemoteState::Calling { fut });
                        }
                        Ok(Some(wait)) => this.state.set(RemoteState::Waiting {
                            sleep: Box::pin(tokio::time::sleep(wait)),
                            svc: Some(svc),
                            req: Some(req),
                        }),
                        Err(refused) => return Poll::Ready(Err(PolicyError::Rejected(refused))),
                    }
                }
                RemoteProj::Waiting { sleep, svc, req } => {
                    ready!(sleep.as_mut().poll(cx));
                    let (Some(mut svc), Some(req)) = (svc.take(), req.take()) else {
                        unreachable!("a waiting call holds its service and request")
                    };
                    let fut = svc.call(req);
                    this.state.set(RemoteState::Calling { fut });
                }
                RemoteProj::Calling { fut } => return fut.poll(cx).map_err(PolicyError::Inner),
            }
        }
    }
}
