//! [`ResponseFuture`].

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;
use rampart_core::classify::Classify;

use crate::{
    error::{BreakerError, CircuitOpen},
    policy::CallGuard,
};

pin_project! {
    /// The response future of [`CircuitBreaker`](crate::CircuitBreaker): the inner call plus
    /// the guard that records its outcome, or a ready rejection.
    ///
    /// Dropping it before it completes frees the call's place (a half-open probe slot) and
    /// counts the call as ignored.
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C> {
        Called {
            #[pin]
            fut: F,
            guard: Option<CallGuard<C>>,
        },
        Rejected {
            rejection: Option<CircuitOpen>,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn called(fut: F, guard: CallGuard<C>) -> Self {
        Self {
            kind: Kind::Called {
                fut,
                guard: Some(guard),
            },
        }
    }

    pub(crate) fn rejected(rejection: CircuitOpen) -> Self {
        Self {
            kind: Kind::Rejected {
                rejection: Some(rejection),
            },
        }
    }
}

impl<F, C> std::fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Called { guard, .. } => f
                .debug_struct("ResponseFuture::Called")
                .field("guard", guard)
                .finish(),
            Kind::Rejected { rejection } => f
                .debug_struct("ResponseFuture::Rejected")
                .field("rejection", rejection)
                .finish(),
        }
    }
}

impl<F, C, Res, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Res, E>>,
    C: Classify<Res, E>,
{
    type Output = Result<C::Response<CallGuard<C>>, BreakerError<E>>;

    // Always inlined: the output (a `Result` with a rejection in it) is too large for registers,
    // and handing it back through memory right after writing it stalls the caller.
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { fut, guard } => {
                let result = ready!(fut.poll(cx));
                let held = guard
                    .as_mut()
                    .expect("ResponseFuture polled after completion");
                // Most outcomes are known now: record them in place, without moving the guard
                // or taking another reference to the lane. Only a stream whose outcome comes at
                // its end takes the guard along.
                let classified = held.lane().0.classifier.classify_now(result);
                Poll::Ready(match classified {
                    Ok((outcome, response)) => {
                        held.finish(outcome);
                        *guard = None;
                        response.map_err(BreakerError::Inner)
                    }
                    Err(result) => {
                        let guard = guard
                            .take()
                            .expect("ResponseFuture polled after completion");
                        let lane = guard.lane().clone();
                        lane.0
                            .classifier
                            .classify(result, guard)
                            .map_err(BreakerError::Inner)
                    }
                })
            }
            KindProj::Rejected { rejection } => {
                let r = rejection
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Err(BreakerError::Rejected(r)))
            }
        }
    }
}
