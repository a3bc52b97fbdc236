//! [`BudgetLayer`]: a [`Budget`] spent by the calls of the services it wraps.

use std::{fmt, sync::Arc};

use rampart_core::error::ConfigError;
use tower_layer::Layer;

use super::{
    config::Budget,
    core::BudgetCore,
    handle::BudgetHandle,
    persist,
    service::BudgetService,
    settle::KeepEstimate,
    store::{BudgetStoreError, BudgetStoreErrorKind},
};
use crate::cost::UnitCost;

/// Spends a [`Budget`] by each call's cost: reserves the [`estimate`](Self::estimate) before
/// the call, refuses it if the budget cannot cover it, [`settle`](Self::settle)s the actual
/// cost after. See the [module docs](crate::budget). Shared by every clone and `layer()` call.
pub struct BudgetLayer<C = UnitCost, T = KeepEstimate> {
    core: Arc<BudgetCore>,
    estimate: C,
    settle: T,
}

impl<C: Clone, T: Clone> Clone for BudgetLayer<C, T> {
    fn clone(&self) -> Self {
        Self {
            core: self.core.clone(),
            estimate: self.estimate.clone(),
            settle: self.settle.clone(),
        }
    }
}

impl<C, T> fmt::Debug for BudgetLayer<C, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetLayer")
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl BudgetLayer {
    /// A layer spending `budget`, every call estimated at 1 and settled at its estimate.
    ///
    /// A budget with a [`store`](Budget::store) is made by [`connect`](Self::connect) instead
    /// (an error naming `store` here).
    pub fn new(budget: Budget) -> Result<Self, ConfigError> {
        if budget.store.is_some() {
            return Err(ConfigError::new(
                "budget",
                "store",
                "a budget kept in a store is made by BudgetLayer::connect, which loads it",
            ));
        }
        Ok(Self::from_core(Arc::new(budget.core()?)))
    }

    /// A layer spending `budget`, which takes up what its [`store`](Budget::store) kept for it
    /// (the spending of the current period; a snapshot of an earlier period, or of another
    /// period configuration, is left behind) and saves its spending there from a background
    /// task on the current tokio runtime, at most every [`save_every`](Budget::save_every),
    /// until the layer and every service and handle made from it are dropped. Call
    /// [`BudgetHandle::flush`] at shutdown to save the last interval's spending too.
    ///
    /// Errors: the configuration's (kind `Config`, naming the field), the store's when it
    /// cannot be read (`Unavailable`) or holds what is not a snapshot (`Corrupt`). A budget
    /// without a store connects too (nothing to load).
    ///
    /// A save that fails is logged (`warn`), counted (`rampart_budget_store_errors_total`) and
    /// tried again at the next interval; the budget goes on deciding in memory meanwhile.
    pub async fn connect(budget: Budget) -> Result<Self, BudgetStoreError> {
        let store = budget.store.clone();
        let every = budget.save_every;
        let core = Arc::new(budget.core().map_err(|e| {
            BudgetStoreError::new("budget", BudgetStoreErrorKind::Config).with_source(e)
        })?);
        if let Some(store) = store {
            persist::load(&core, store.as_ref()).await?;
            persist::spawn_saver(Arc::downgrade(&core), store, every);
        }
        Ok(Self::from_core(core))
    }

    fn from_core(core: Arc<BudgetCore>) -> Self {
        Self {
            core,
            estimate: UnitCost,
            settle: KeepEstimate,
        }
    }
}

impl<C, T> BudgetLayer<C, T> {
    /// Reserves what `estimate` says before each call.
    pub fn estimate<C2>(self, estimate: C2) -> BudgetLayer<C2, T> {
        BudgetLayer {
            core: self.core,
            estimate,
            settle: self.settle,
        }
    }

    /// Settles each call at what `settle` says it cost.
    pub fn settle<T2>(self, settle: T2) -> BudgetLayer<C, T2> {
        BudgetLayer {
            core: self.core,
            estimate: self.estimate,
            settle,
        }
    }

    /// The handle: what is spent, and the budget changed at run time.
    pub fn handle(&self) -> BudgetHandle {
        BudgetHandle {
            core: self.core.clone(),
        }
    }
}

impl<S, C: Clone, T: Clone> Layer<S> for BudgetLayer<C, T> {
    type Service = BudgetService<S, C, T>;

    fn layer(&self, inner: S) -> Self::Service {
        BudgetService {
            inner,
            core: self.core.clone(),
            estimate: self.estimate.clone(),
            settle: self.settle.clone(),
        }
    }
}
