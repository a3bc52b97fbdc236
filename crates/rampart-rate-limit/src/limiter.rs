//! The two shapes a layer holds: one cell for every call ([`SingleLimit`]) or one per key
//! ([`KeyedLimit`]), over the shared [`Core`](crate::state::Core).

use std::{fmt, marker::PhantomData, sync::Arc, time::Duration};

use rampart_core::{
    clock::SharedClock,
    key::KeyExtractor,
    registry::{KeyedRegistry, RegistryLimits},
    rejection::RateLimited,
};

use crate::{gcra::Cell, handle::RateLimitHandle, state::Core};

/// The shapes of limit a [`RateLimitLayer`](crate::RateLimitLayer) holds: one for every call
/// ([`SingleLimit`]) or one per key ([`KeyedLimit`]). Sealed: its methods are the layer's own.
pub trait Limit<Req>: Send + Sync + 'static + sealed::Sealed {
    /// Decides a call of `req` costing `cost`: go now (`Ok(None)`), go after a wait
    /// (`Ok(Some(wait))`, the cost reserved), or the refusal.
    #[doc(hidden)]
    fn check(&self, req: &Req, cost: u64) -> Result<Option<Duration>, RateLimited>;
}

/// What every shape of limit has: its shared state.
pub trait HasCore: Send + Sync + 'static + sealed::Sealed {
    #[doc(hidden)]
    fn handle(&self) -> RateLimitHandle;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::SingleLimit {}
    impl<X, K> Sealed for super::KeyedLimit<X, K> {}
}

/// One limit for every call: the shape [`RateLimitBuilder::layer`](crate::RateLimitBuilder::layer)
/// builds.
#[derive(Debug)]
pub struct SingleLimit {
    pub(crate) core: Arc<Core>,
    cell: Cell,
}

impl SingleLimit {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        Self {
            core,
            cell: Cell::default(),
        }
    }
}

impl<Req> Limit<Req> for SingleLimit {
    #[inline]
    fn check(&self, _: &Req, cost: u64) -> Result<Option<Duration>, RateLimited> {
        self.core.decide(&self.cell, cost).into_result()
    }
}

impl HasCore for SingleLimit {
    fn handle(&self) -> RateLimitHandle {
        RateLimitHandle::new(self.core.clone())
    }
}

/// A key's own limit.
#[derive(Debug)]
pub(crate) struct KeyCell {
    cell: Cell,
    core: Arc<Core>,
}

/// One limit per key, in a bounded registry: the shape
/// [`RateLimitBuilder::keyed`](crate::RateLimitBuilder::keyed) builds. An idle key (one whose
/// debt is paid) may be evicted; a key still in debt is kept (forgetting it would grant it a
/// fresh burst), and a new key that finds the registry full of keys in debt shares one
/// overflow limit, as does a request with no key.
pub struct KeyedLimit<X, K> {
    pub(crate) core: Arc<Core>,
    pub(crate) keys: KeyedRegistry<K, KeyCell>,
    extractor: X,
    shared: Cell,
    _key: PhantomData<fn() -> K>,
}

impl<X, K: std::hash::Hash + Eq + Clone> KeyedLimit<X, K> {
    pub(crate) fn new(
        core: Arc<Core>,
        extractor: X,
        limits: RegistryLimits,
        clock: SharedClock,
    ) -> Self {
        Self {
            keys: KeyedRegistry::new(limits, clock, |k: &KeyCell| k.cell.in_debt(k.core.now())),
            core,
            extractor,
            shared: Cell::default(),
            _key: PhantomData,
        }
    }
}

impl<X, K: fmt::Debug> fmt::Debug for KeyedLimit<X, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimit")
            .field("name", &self.core.name)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl<X, K> KeyedLimit<X, K>
where
    K: std::hash::Hash + Eq + Clone,
{
    /// How many keys have a limit of their own now.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }
}

impl<X, K> HasCore for KeyedLimit<X, K>
where
    X: Send + Sync + 'static,
    K: Send + Sync + 'static,
{
    fn handle(&self) -> RateLimitHandle {
        RateLimitHandle::new(self.core.clone())
    }
}

impl<X, K, Req> Limit<Req> for KeyedLimit<X, K>
where
    X: KeyExtractor<Req, Key = K>,
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    Req: 'static,
{
    #[inline]
    fn check(&self, req: &Req, cost: u64) -> Result<Option<Duration>, RateLimited> {
        let core = &self.core;
        let decided = self.extractor.extract(req).and_then(|key| {
            self.keys.with(
                key,
                |_| KeyCell {
                    cell: Cell::default(),
                    core: core.clone(),
                },
                |k| core.decide(&k.cell, cost),
            )
        });
        decided
            .unwrap_or_else(|| core.decide(&self.shared, cost))
            .into_result()
    }
}
