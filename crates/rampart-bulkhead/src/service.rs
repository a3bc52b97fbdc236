//! [`Bulkhead`] and [`KeyedBulkhead`]: `poll_ready` and `call` only.

use std::{
    fmt,
    marker::PhantomData,
    sync::Arc,
    task::{Context, Poll},
};

use rampart_core::key::KeyExtractor;
use tower_service::Service;

use crate::{
    error::BulkheadError,
    future::ResponseFuture,
    handle::BulkheadHandle,
    partitions::Partitions,
    policy::Core,
    priority::Prioritize,
    release::{OnResponse, Release},
};

/// A service behind a bulkhead. Made by [`BulkheadLayer`](crate::BulkheadLayer).
///
/// `poll_ready` is the inner service's; `call` takes a permit. With no permit free the call
/// waits up to `max_wait` in its class's queue (the ready inner service goes along with it and
/// a clone takes its place, hence `S: Clone`), or is rejected at once: the returned future
/// resolves to [`BulkheadError::Rejected`] without calling the inner service. Failing in the
/// future rather than holding back `poll_ready` is what makes it work under axum, which does
/// not honour back-pressure.
pub struct Bulkhead<S, P, H = OnResponse> {
    inner: S,
    core: Arc<Core>,
    prioritize: P,
    release: H,
}

impl<S: Clone, P: Clone, H: Clone> Clone for Bulkhead<S, P, H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            core: self.core.clone(),
            prioritize: self.prioritize.clone(),
            release: self.release.clone(),
        }
    }
}

impl<S: fmt::Debug, P, H> fmt::Debug for Bulkhead<S, P, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("inner", &self.inner)
            .field("bulkhead", &self.core.name)
            .finish()
    }
}

impl<S, P, H> Bulkhead<S, P, H> {
    pub(crate) fn from_parts(inner: S, core: Arc<Core>, prioritize: P, release: H) -> Self {
        Self {
            inner,
            core,
            prioritize,
            release,
        }
    }

    /// A handle on the bulkhead.
    pub fn handle(&self) -> BulkheadHandle {
        BulkheadHandle {
            core: self.core.clone(),
        }
    }

    rampart_core::inner_service_accessors!();
}

impl<S, P, H, Req> Service<Req> for Bulkhead<S, P, H>
where
    S: Service<Req> + Clone,
    P: Prioritize<Req>,
    H: Release<S::Response>,
{
    type Response = H::Response;
    type Error = BulkheadError<S::Error>;
    type Future = ResponseFuture<S, Req, H>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(BulkheadError::Inner)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let class = if self.core.has_classes() {
            self.core.class_index(self.prioritize.class_of(&req))
        } else {
            0
        };
        ResponseFuture::start(
            &self.core,
            &mut self.inner,
            class,
            req,
            self.release.clone(),
        )
    }
}

/// A service behind one bulkhead partition per key. Made by
/// [`KeyedBulkheadLayer`](crate::KeyedBulkheadLayer).
pub struct KeyedBulkhead<S, X, K, P, H = OnResponse> {
    inner: S,
    partitions: Arc<Partitions<K>>,
    extractor: X,
    prioritize: P,
    release: H,
    _key: PhantomData<fn() -> K>,
}

impl<S: Clone, X: Clone, K, P: Clone, H: Clone> Clone for KeyedBulkhead<S, X, K, P, H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            partitions: self.partitions.clone(),
            extractor: self.extractor.clone(),
            prioritize: self.prioritize.clone(),
            release: self.release.clone(),
            _key: PhantomData,
        }
    }
}

impl<S: fmt::Debug, X, K: fmt::Debug, P, H> fmt::Debug for KeyedBulkhead<S, X, K, P, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBulkhead")
            .field("inner", &self.inner)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl<S, X, K, P, H> KeyedBulkhead<S, X, K, P, H> {
    pub(crate) fn from_parts(
        inner: S,
        partitions: Arc<Partitions<K>>,
        extractor: X,
        prioritize: P,
        release: H,
    ) -> Self {
        Self {
            inner,
            partitions,
            extractor,
            prioritize,
            release,
            _key: PhantomData,
        }
    }

    rampart_core::inner_service_accessors!();
}

impl<S, X, K, P, H, Req> Service<Req> for KeyedBulkhead<S, X, K, P, H>
where
    S: Service<Req> + Clone,
    X: KeyExtractor<Req, Key = K>,
    K: std::hash::Hash + Eq + Clone + fmt::Debug,
    P: Prioritize<Req>,
    H: Release<S::Response>,
{
    type Response = H::Response;
    type Error = BulkheadError<S::Error>;
    type Future = ResponseFuture<S, Req, H>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(BulkheadError::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let core = self.partitions.core(self.extractor.extract(&req));
        let class = if core.has_classes() {
            core.class_index(self.prioritize.class_of(&req))
        } else {
            0
        };
        ResponseFuture::start(&core, &mut self.inner, class, req, self.release.clone())
    }
}
