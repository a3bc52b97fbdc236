//! [`BudgetService`]: reserves each call's estimate, or refuses the call.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use rampart_core::{error::PolicyError, rejection::RateLimited};
use tower_service::Service;

use super::{core::BudgetCore, future::BudgetFuture, settle::Settle};
use crate::cost::Cost;

/// A service whose calls spend a budget. Made by [`BudgetLayer`](super::BudgetLayer).
pub struct BudgetService<S, C, T> {
    pub(crate) inner: S,
    pub(crate) core: Arc<BudgetCore>,
    pub(crate) estimate: C,
    pub(crate) settle: T,
}

impl<S, C, T> BudgetService<S, C, T> {
    rampart_core::inner_service_accessors!();
}

impl<S: Clone, C: Clone, T: Clone> Clone for BudgetService<S, C, T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            core: self.core.clone(),
            estimate: self.estimate.clone(),
            settle: self.settle.clone(),
        }
    }
}

impl<S: fmt::Debug, C, T> fmt::Debug for BudgetService<S, C, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, C, T, Req> Service<Req> for BudgetService<S, C, T>
where
    S: Service<Req>,
    C: Cost<Req>,
    T: Settle<S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = PolicyError<RateLimited, S::Error>;
    type Future = BudgetFuture<S::Future, T>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(PolicyError::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let estimate = self.estimate.cost(&req);
        match self.core.reserve(estimate) {
            Ok(reservation) => BudgetFuture::calling(
                self.inner.call(req),
                self.core.clone(),
                reservation,
                self.settle.clone(),
            ),
            Err(refused) => BudgetFuture::refused(refused),
        }
    }
}
