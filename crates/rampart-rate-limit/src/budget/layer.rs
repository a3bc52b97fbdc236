//! [`Budget`] (the configuration), [`BudgetLayer`], its [`BudgetService`] and [`BudgetFuture`],
//! and the [`BudgetHandle`].

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::SystemTime,
};

use pin_project_lite::pin_project;
use rampart_core::{error::ConfigError, error::PolicyError, rejection::RateLimited};
use tower_layer::Layer;
use tower_service::Service;

use super::{
    core::{AlertHook, BudgetAlert, BudgetCore, BudgetStats, Reservation},
    period::Period,
    settle::{KeepEstimate, Settle},
};
use crate::cost::{Cost, UnitCost};

/// A budget: `total` units per [`Period`], with alert thresholds.
#[derive(Clone)]
pub struct Budget {
    name: Arc<str>,
    total: u64,
    period: Period,
    thresholds: Vec<u8>,
    on_alert: Option<AlertHook>,
    wall_clock: Option<SystemTime>,
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budget")
            .field("name", &self.name)
            .field("total", &self.total)
            .field("period", &self.period)
            .field("thresholds", &self.thresholds)
            .finish_non_exhaustive()
    }
}

impl Budget {
    /// `total` units per `period`; alerts at 80 % and 100 %.
    pub fn new(total: u64, period: Period) -> Self {
        Self {
            name: Arc::from("default"),
            total,
            period,
            thresholds: vec![80, 100],
            on_alert: None,
            wall_clock: None,
        }
    }

    /// The `name` label of its metrics and events (default `"default"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The thresholds, in percent (1–100), each of which fires the alert once per period.
    pub fn thresholds(mut self, percents: impl IntoIterator<Item = u8>) -> Self {
        self.thresholds = percents.into_iter().collect();
        self
    }

    /// Called (outside any lock) when a threshold is reached.
    pub fn on_alert(mut self, hook: impl Fn(&BudgetAlert) + Send + Sync + 'static) -> Self {
        self.on_alert = Some(Arc::new(hook));
        self
    }

    /// The wall time the budget starts at (default: the system's now); for tests and replays.
    pub fn starting_at(mut self, wall: SystemTime) -> Self {
        self.wall_clock = Some(wall);
        self
    }

    fn core(self) -> Result<BudgetCore, ConfigError> {
        const C: &str = "budget";
        if self.total == 0 {
            return Err(ConfigError::new(C, "total", "must be at least 1, got 0"));
        }
        self.period
            .check()
            .map_err(|why| ConfigError::new(C, "period", why))?;
        if self.thresholds.len() > 32 {
            return Err(ConfigError::new(C, "thresholds", "at most 32"));
        }
        if let Some(t) = self.thresholds.iter().find(|t| !(1..=100).contains(*t)) {
            return Err(ConfigError::new(
                C,
                "thresholds",
                format!("each must be 1 to 100 (percent), got {t}"),
            ));
        }
        Ok(BudgetCore::new(
            self.name,
            self.total,
            self.period,
            self.thresholds,
            self.on_alert,
            self.wall_clock.unwrap_or_else(SystemTime::now),
        ))
    }
}

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
    pub fn new(budget: Budget) -> Result<Self, ConfigError> {
        Ok(Self {
            core: Arc::new(budget.core()?),
            estimate: UnitCost,
            settle: KeepEstimate,
        })
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

/// A budget's state and controls.
#[derive(Debug, Clone)]
pub struct BudgetHandle {
    core: Arc<BudgetCore>,
}

impl BudgetHandle {
    /// What is spent and left in the current period.
    pub fn stats(&self) -> BudgetStats {
        self.core.stats()
    }

    /// Changes the budget per period, from the next call on (what is spent stays spent).
    pub fn set_total(&self, total: u64) -> Result<(), ConfigError> {
        if total == 0 {
            return Err(ConfigError::new(
                "budget",
                "total",
                "must be at least 1, got 0",
            ));
        }
        self.core.set_total(total);
        Ok(())
    }
}

/// A service whose calls spend a budget. Made by [`BudgetLayer`].
pub struct BudgetService<S, C, T> {
    inner: S,
    core: Arc<BudgetCore>,
    estimate: C,
    settle: T,
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
            Ok(reservation) => BudgetFuture {
                state: FutState::Calling {
                    fut: self.inner.call(req),
                    settle: Some((self.core.clone(), reservation, self.settle.clone())),
                },
            },
            Err(refused) => BudgetFuture {
                state: FutState::Refused {
                    refused: Some(refused),
                },
            },
        }
    }
}

pin_project! {
    #[project = FutProj]
    enum FutState<F, T> {
        Calling {
            #[pin]
            fut: F,
            settle: Option<(Arc<BudgetCore>, Reservation, T)>,
        },
        Refused {
            refused: Option<RateLimited>,
        },
    }
}

pin_project! {
    /// The response future of [`BudgetService`]: the call, settled when it completes.
    pub struct BudgetFuture<F, T> {
        #[pin]
        state: FutState<F, T>,
    }
}

impl<F, T> fmt::Debug for BudgetFuture<F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetFuture").finish_non_exhaustive()
    }
}

impl<F, T, Res, E> Future for BudgetFuture<F, T>
where
    F: Future<Output = Result<Res, E>>,
    T: Settle<Res, E>,
{
    type Output = Result<Res, PolicyError<RateLimited, E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            FutProj::Calling { fut, settle } => {
                let result = ready!(fut.poll(cx));
                if let Some((core, reservation, settle)) = settle.take() {
                    let actual = settle.actual(result.as_ref(), reservation.estimate);
                    core.settle(reservation, actual);
                }
                Poll::Ready(result.map_err(PolicyError::Inner))
            }
            FutProj::Refused { refused } => match refused.take() {
                Some(r) => Poll::Ready(Err(PolicyError::Rejected(r))),
                None => unreachable!("a refused call's future is polled after it was ready"),
            },
        }
    }
}
