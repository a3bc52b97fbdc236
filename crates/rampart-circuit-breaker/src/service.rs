//! [`CircuitBreaker`] and [`KeyedCircuitBreaker`]: `poll_ready` and `call` only.

use std::{
    fmt,
    marker::PhantomData,
    sync::Arc,
    task::{Context, Poll},
};

use rampart_core::{classify::Classify, key::KeyExtractor};
use tower_service::Service;

use crate::{
    error::BreakerError,
    future::ResponseFuture,
    handle::CircuitBreakerHandle,
    policy::{CallGuard, Lanes, current_shard},
    registry::Registry,
};

/// A service guarded by a circuit breaker. Made by [`CircuitBreakerLayer`](crate::CircuitBreakerLayer).
///
/// It fails fast: `poll_ready` only asks the inner service, and `call` decides. A rejected call
/// never reaches the inner service; its future resolves at once to
/// [`BreakerError::Rejected`]. (Deciding in `call` rather than `poll_ready` is what makes the
/// breaker work under axum, which does not honour back-pressure.)
pub struct CircuitBreaker<S, C> {
    inner: S,
    lanes: Lanes<C>,
}

impl<S: Clone, C> Clone for CircuitBreaker<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            lanes: self.lanes.clone(),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for CircuitBreaker<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("breaker", &self.lanes[0].0.core)
            .finish()
    }
}

impl<S, C> CircuitBreaker<S, C> {
    pub(crate) fn from_parts(inner: S, lanes: Lanes<C>) -> Self {
        Self { inner, lanes }
    }

    /// A handle on the breaker.
    pub fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle {
            core: self.lanes[0].0.core.clone(),
        }
    }

    rampart_core::inner_service_accessors!();
}

impl<S, C, Req> Service<Req> for CircuitBreaker<S, C>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error>,
{
    type Response = C::Response<CallGuard<C>>;
    type Error = BreakerError<S::Error>;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(BreakerError::Inner)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match CallGuard::acquire(&self.lanes[current_shard()]) {
            Ok(guard) => ResponseFuture::called(self.inner.call(req), guard),
            Err(rejection) => ResponseFuture::rejected(rejection),
        }
    }
}

/// A service guarded by one circuit breaker per key. Made by
/// [`KeyedCircuitBreakerLayer`](crate::KeyedCircuitBreakerLayer).
pub struct KeyedCircuitBreaker<S, X, K, C> {
    inner: S,
    registry: Arc<Registry<K, C>>,
    extractor: X,
    _key: PhantomData<fn() -> K>,
}

impl<S: Clone, X: Clone, K, C> Clone for KeyedCircuitBreaker<S, X, K, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            registry: self.registry.clone(),
            extractor: self.extractor.clone(),
            _key: PhantomData,
        }
    }
}

impl<S: fmt::Debug, X, K: fmt::Debug, C> fmt::Debug for KeyedCircuitBreaker<S, X, K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreaker")
            .field("inner", &self.inner)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl<S, X, K, C> KeyedCircuitBreaker<S, X, K, C> {
    pub(crate) fn from_parts(inner: S, registry: Arc<Registry<K, C>>, extractor: X) -> Self {
        Self {
            inner,
            registry,
            extractor,
            _key: PhantomData,
        }
    }

    rampart_core::inner_service_accessors!();
}

impl<S, X, K, C, Req> Service<Req> for KeyedCircuitBreaker<S, X, K, C>
where
    S: Service<Req>,
    X: KeyExtractor<Req, Key = K>,
    K: std::hash::Hash + Eq + Clone + fmt::Debug,
    C: Classify<S::Response, S::Error>,
{
    type Response = C::Response<CallGuard<C>>;
    type Error = BreakerError<S::Error>;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(BreakerError::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let lane = self
            .registry
            .lane(self.extractor.extract(&req), current_shard());
        match CallGuard::acquire_owned(lane) {
            Ok(guard) => ResponseFuture::called(self.inner.call(req), guard),
            Err(rejection) => ResponseFuture::rejected(rejection),
        }
    }
}
