//! [`RateLimit`]: the service.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use rampart_core::error::PolicyError;
use tower_service::Service;

use crate::{cost::Cost, future::ResponseFuture, limiter::Limit};

/// A service whose calls are limited. Made by [`RateLimitLayer`](crate::RateLimitLayer).
///
/// `poll_ready` is the inner service's: the limit never holds back readiness (as tower's
/// `LoadShed`, it answers a refused call at once through the future), so it works under axum,
/// which ignores backpressure. A call that must wait keeps the inner service that was made
/// ready and leaves a clone in its place.
pub struct RateLimit<S, L, C> {
    inner: S,
    limit: Arc<L>,
    cost: C,
}

impl<S: Clone, L, C: Clone> Clone for RateLimit<S, L, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limit: self.limit.clone(),
            cost: self.cost.clone(),
        }
    }
}

impl<S: fmt::Debug, L, C> fmt::Debug for RateLimit<S, L, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, L, C> RateLimit<S, L, C> {
    pub(crate) fn new(inner: S, limit: Arc<L>, cost: C) -> Self {
        Self { inner, limit, cost }
    }

    rampart_core::inner_service_accessors!();
}

impl<S, L, C, Req> Service<Req> for RateLimit<S, L, C>
where
    S: Service<Req> + Clone,
    L: Limit<Req>,
    C: Cost<Req>,
{
    type Response = S::Response;
    type Error = PolicyError<rampart_core::rejection::RateLimited, S::Error>;
    type Future = ResponseFuture<S, Req>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(PolicyError::Inner)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let cost = self.cost.cost(&req);
        match self.limit.check(&req, cost) {
            Ok(None) => ResponseFuture::now(self.inner.call(req)),
            Ok(Some(wait)) => {
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::after(wait, ready, req)
            }
            Err(refused) => ResponseFuture::refused(refused),
        }
    }
}
