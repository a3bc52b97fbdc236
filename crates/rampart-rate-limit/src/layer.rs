//! [`RateLimitLayer`].

use std::{fmt, hash::Hash, sync::Arc};

use rampart_core::error::ConfigError;
use tower_layer::Layer;

use crate::{
    config::{COMPONENT, RateLimitBuilder},
    cost::UnitCost,
    handle::RateLimitHandle,
    limiter::{HasCore, KeyedLimit, SingleLimit},
    quota::Quota,
    service::RateLimit,
};

/// Limits the rate of calls: GCRA with a burst, a cost per call ([`cost`](Self::cost)), one
/// limit for every call or one per key ([`RateLimitBuilder::keyed`]).
///
/// The limit lives behind an `Arc`: every clone of the layer and every service it makes share
/// it (axum calls `layer()` more than once; tower's `RateLimit` keeps its state per service).
/// `L` is the limit's shape, `C` the cost.
pub struct RateLimitLayer<L = SingleLimit, C = UnitCost> {
    limit: Arc<L>,
    cost: C,
}

impl<L, C: Clone> Clone for RateLimitLayer<L, C> {
    fn clone(&self) -> Self {
        Self {
            limit: self.limit.clone(),
            cost: self.cost.clone(),
        }
    }
}

impl<L, C> fmt::Debug for RateLimitLayer<L, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer").finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// A limit of `quota` for every call, refusing at once what is over it.
    pub fn new(quota: Quota) -> Result<Self, ConfigError> {
        Self::builder(quota).layer()
    }

    /// A builder for a limit of `quota`.
    pub fn builder(quota: Quota) -> RateLimitBuilder {
        RateLimitBuilder::new(quota)
    }
}

impl<L, C> RateLimitLayer<L, C> {
    pub(crate) fn from_limit(limit: Arc<L>, cost: C) -> Self {
        Self { limit, cost }
    }

    /// Charges each call what `cost` says (a [`cost_fn`](crate::cost_fn)) instead of `1`.
    pub fn cost<C2>(self, cost: C2) -> RateLimitLayer<L, C2> {
        RateLimitLayer {
            limit: self.limit,
            cost,
        }
    }
}

impl<L, C> RateLimitLayer<L, C> {
    /// Decides a call of `req` without a tower service, for adapters that drive the limit
    /// themselves (rampart-reqwest's middleware): go now (`Ok(None)`), go after the wait
    /// (`Ok(Some(wait))`, the cost already reserved: the caller must wait it out, not ask
    /// again), or the refusal.
    pub fn check<Req>(
        &self,
        req: &Req,
    ) -> Result<Option<std::time::Duration>, rampart_core::rejection::RateLimited>
    where
        L: crate::Limit<Req>,
        C: crate::Cost<Req>,
    {
        self.limit.check(req, self.cost.cost(req))
    }
}

impl<L: HasCore, C> RateLimitLayer<L, C> {
    /// The handle: stats, shadow mode and quota changes at run time.
    pub fn handle(&self) -> RateLimitHandle {
        self.limit.handle()
    }

    /// The limit's shape: for a keyed limit, how many keys it holds.
    pub fn limit(&self) -> &L {
        &self.limit
    }
}

impl<S, L, C: Clone> Layer<S> for RateLimitLayer<L, C> {
    type Service = RateLimit<S, L, C>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.limit.clone(), self.cost.clone())
    }
}

impl RateLimitBuilder {
    /// One limit for every call.
    pub fn layer(self) -> Result<RateLimitLayer, ConfigError> {
        Ok(RateLimitLayer::from_limit(
            Arc::new(SingleLimit::new(self.core()?)),
            UnitCost,
        ))
    }

    /// One limit per key, from `extractor` (per tenant, per host, per route: the
    /// `rampart_core::key` extractors or a `key_fn`). Requests without a key share one limit.
    pub fn keyed<X, K>(self, extractor: X) -> Result<RateLimitLayer<KeyedLimit<X, K>>, ConfigError>
    where
        K: Hash + Eq + Clone,
    {
        self.limits.validate(COMPONENT)?;
        let core = self.core()?;
        let keyed = KeyedLimit::new(core, extractor, self.limits, self.clock.clone());
        Ok(RateLimitLayer::from_limit(Arc::new(keyed), UnitCost))
    }
}
