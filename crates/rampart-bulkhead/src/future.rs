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
pub(crate) struct WaitGuard {
    pub(crate) core: Arc<Core>,
    pub(crate) waiter: Arc<Waiter>,
    pub(crate) armed: bool,
}

impl WaitGuard {
    pub(crate) fn take_permit(&mut self) -> Permit {
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
    /// A call waiting for a permit: its deadline, the ready service and the request.
    struct Wait<S, Req> {
        #[pin]
        sleep: Sleep,
        svc: Option<S>,
        req: Option<Req>,
        guard: WaitGuard,
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
            // Boxed: the waiting path allocates anyway (its place in the queue), and inline it
            // would make every call's future several times larger, to be moved around.
            wait: Pin<Box<Wait<S, Req>>>,
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
    // Always inlined (the slow path is out of line): the future is written straight into the
    // caller's frame instead of through memory the caller reads back at once.
    #[inline(always)]
    pub(crate) fn start(
        core: &Arc<Core>,
        inner: &mut S,
        class: usize,
        req: Req,
        release: H,
    ) -> Self {
        if core.try_acquire(class) {
            return Self {
                state: State::Called {
                    fut: inner.call(req),
                    permit: Some(Permit::new(core.clone(), class)),
                },
                release,
            };
        }
        Self::start_slow(core, inner, class, req, release)
    }

    /// No permit free at once: wait in line, or be rejected. Out of line, so that the admitted
    /// path above is small enough to inline into `call`.
    #[cold]
    #[inline(never)]
    fn start_slow(core: &Arc<Core>, inner: &mut S, class: usize, req: Req, release: H) -> Self {
        let state = match core.acquire_slow(class) {
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
                    wait: Box::pin(Wait {
                        sleep: tokio::time::sleep(core.max_wait),
                        svc: Some(ready),
                        req: Some(req),
                        guard: WaitGuard {
                            core: core.clone(),
                            waiter,
                            armed: true,
                        },
                    }),
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
    wait: Pin<&mut Wait<S, Req>>,
    cx: &mut Context<'_>,
) -> Poll<Result<(S::Future, Permit), BulkheadFull>>
where
    S: Service<Req>,
{
    let this = wait.project();
    let (sleep, svc, req, wait) = (this.sleep, this.svc, this.req, this.guard);
    let mut granted = wait.waiter.is_granted();
    if !granted {
        wait.waiter.register(cx.waker());
        granted = wait.waiter.is_granted();
    }
    if !granted {
        ready!(sleep.poll(cx));
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

    // Always inlined: the output (a `Result` with a rejection in it) is too large for registers,
    // and handing it back through memory right after writing it stalls the caller.
    #[inline(always)]
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
                StateProj::Waiting { wait } => match ready!(poll_wait(wait.as_mut(), cx)) {
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
