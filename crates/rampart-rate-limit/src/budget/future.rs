//! [`BudgetFuture`]: the call, settled at its actual cost when it completes.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;
use rampart_core::{error::PolicyError, rejection::RateLimited};

use super::{
    core::{BudgetCore, Reservation},
    settle::Settle,
};

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

impl<F, T> BudgetFuture<F, T> {
    pub(crate) fn calling(
        fut: F,
        core: Arc<BudgetCore>,
        reservation: Reservation,
        settle: T,
    ) -> Self {
        Self {
            state: FutState::Calling {
                fut,
                settle: Some((core, reservation, settle)),
            },
        }
    }

    pub(crate) fn refused(refused: RateLimited) -> Self {
        Self {
            state: FutState::Refused {
                refused: Some(refused),
            },
        }
    }
}
