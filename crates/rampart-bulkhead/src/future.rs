//! [`ResponseFuture`].

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use crate::{
    error::{BulkheadError, BulkheadFull},
    policy::{Abandon, Acquire, Core, Permit, Waiter},
    release::{OnResponse, Release},
};

/// A queued call's place in line; gives it up (or releases the permit it was handed) when
/// dropped before the call starts.
#[derive(Debug)]
struct WaitGuard {
    core: Arc<Core>,
    waiter: Arc<Waiter>,
    armed: bool,
}

impl WaitGuard {
    fn take_permit(&mut self) -> Permit {
        self.armed = false;
        Permit::new(self.core.clone(), Core::waiter_class(&self.waiter))
    }
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        if self.armed && self.core.abandon(&self.waiter) == Abandon::WasGranted {
            self.core.release(Core::waiter_class(&self.waiter));
        }
    }
}

pin_project! {
    /// The response future of [`Bulkhead`](crate::Bulkhead): the inner call holding its permit,
    /// a call waiting for a permit, or a ready rejection.
    ///
    /// The permit is released when this future completes or is dropped; a waiting call that is
    /// dropped leaves the queue.
    pub struct ResponseFuture<S, Req, H = OnResponse>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
        release: H,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Called {
            #[pin]
            fut: S::Future,
            permit: Option<Permit>,
        },
        Waiting {
            // Boxed: the waiting path allocates anyway (its place in the queue), and a `Sleep`
            // inline would make every call's future several times larger, to be moved around.
            sleep: Pin<Box<Sleep>>,
            svc: Option<S>,
            req: Option<Req>,
            wait: WaitGuard,
        },
        Rejected {
            rejection: Option<BulkheadFull>,
        },
    }
}

impl<S, Req, H> ResponseFuture<S, Req, H>
where
    S: Service<Req> + Clone,
{
    /// Admits `req` of class `class` through `core`: calls `inner` at once if a permit is free,
    /// otherwise queues (taking the ready `inner` along and leaving a clone in its place), or
    /// rejects.
    #[inline]
    pub(crate) fn start(
        core: &Arc<Core>,
        inner: &mut S,
        class: usize,
        req: Req,
        release: H,
    ) -> Self {
        let state = match core.acquire(class) {
            Acquire::Now => State::Called {
                fut: inner.call(req),
                permit: Some(Permit::new(core.clone(), class)),
            },
            Acquire::Rejected(rejection) => State::Rejected {
                rejection: Some(rejection),
            },
            Acquire::Wait(waiter) => {
                let fresh = inner.clone();
                let ready = std::mem::replace(inner, fresh);
                State::Waiting {
                    sleep: Box::pin(tokio::time::sleep(core.max_wait)),
                    svc: Some(ready),
                    req: Some(req),
                    wait: WaitGuard {
                        core: core.clone(),
                        waiter,
                        armed: true,
                    },
                }
            }
        };
        Self { state, release }
    }
}

impl<S, Req, H> std::fmt::Debug for ResponseFuture<S, Req, H>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Called { .. } => "called",
            State::Waiting { .. } => "waiting",
            State::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

/// The waiting state's step, kept out of line so that the admitted path of `poll` stays small
/// enough to inline: either the permit came (the call is started), or the wait ran out.
#[cold]
#[inline(never)]
fn poll_wait<S, Req>(
    sleep: &mut Pin<Box<Sleep>>,
    svc: &mut Option<S>,
    req: &mut Option<Req>,
    wait: &mut WaitGuard,
    cx: &mut Context<'_>,
) -> Poll<Result<(S::Future, Permit), BulkheadFull>>
where
    S: Service<Req>,
{
    let mut granted = wait.waiter.is_granted();
    if !granted {
        wait.waiter.register(cx.waker());
        granted = wait.waiter.is_granted();
    }
    if !granted {
        ready!(sleep.as_mut().poll(cx));
        match wait.core.abandon(&wait.waiter) {
            // Granted just as the wait ran out: use the permit.
            Abandon::WasGranted => {}
            Abandon::Removed => {
                wait.armed = false;
                return Poll::Ready(Err(wait.core.wait_elapsed(&wait.waiter)));
            }
        }
    }
    let permit = wait.take_permit();
    let mut svc = svc.take().expect("ResponseFuture polled after completion");
    let req = req.take().expect("ResponseFuture polled after completion");
    Poll::Ready(Ok((svc.call(req), permit)))
}

impl<S, Req, H> Future for ResponseFuture<S, Req, H>
where
    S: Service<Req>,
    H: Release<S::Response>,
{
    type Output = Result<H::Response, BulkheadError<S::Error>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut state = this.state;
        let release = this.release;
        loop {
            match state.as_mut().project() {
                StateProj::Called { fut, permit } => {
                    let out = ready!(fut.poll(cx));
                    let permit = permit
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(match out {
                        Ok(response) => Ok(release.attach(response, permit)),
                        Err(e) => Err(BulkheadError::Inner(e)),
                    });
                }
                StateProj::Rejected { rejection } => {
                    let r = rejection
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Err(BulkheadError::Rejected(r)));
                }
                StateProj::Waiting {
                    sleep,
                    svc,
                    req,
                    wait,
                } => match ready!(poll_wait(sleep, svc, req, wait, cx)) {
                    Ok((fut, permit)) => state.set(State::Called {
                        fut,
                        permit: Some(permit),
                    }),
                    Err(r) => {
                        state.set(State::Rejected { rejection: None });
                        return Poll::Ready(Err(BulkheadError::Rejected(r)));
                    }
                },
            }
        }
    }
}
