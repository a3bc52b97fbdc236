//! [`AcquirePermit`]: a permit taken outside tower, for adapters that are not tower services
//! (rampart-reqwest's middleware). The same rules as the service: the fast path, the bounded
//! queue by priority, `max_wait`, and the same [`BulkheadFull`] rejections.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use tokio::time::Sleep;

use crate::{
    error::BulkheadFull,
    future::WaitGuard,
    policy::{Abandon, Acquire, Core, Permit},
};

/// The future of [`BulkheadLayer::acquire`](crate::BulkheadLayer::acquire) and
/// [`KeyedBulkheadLayer::acquire`](crate::KeyedBulkheadLayer::acquire): a [`Permit`] now, after
/// waiting in line (at most the bulkhead's `max_wait`), or a [`BulkheadFull`] rejection.
///
/// Dropping it while it waits leaves the queue (and gives back a permit granted meanwhile).
/// Hold the permit for as long as the call runs; dropping it releases it.
#[derive(Debug)]
#[must_use = "a permit is only taken when the future is awaited"]
pub struct AcquirePermit {
    state: State,
}

#[derive(Debug)]
enum State {
    Done(Option<Result<Permit, BulkheadFull>>),
    // Boxed: only a call that waits pays for it, and it allocates its place in line anyway.
    Waiting {
        sleep: Pin<Box<Sleep>>,
        guard: WaitGuard,
    },
}

impl AcquirePermit {
    /// Asks `core` for a permit of class `class`.
    pub(crate) fn new(core: &Arc<Core>, class: usize) -> Self {
        if core.try_acquire(class) {
            return Self::done(Ok(Permit::new(core.clone(), class)));
        }
        match core.acquire_slow(class) {
            Acquire::Now => Self::done(Ok(Permit::new(core.clone(), class))),
            Acquire::Rejected(rejection) => Self::done(Err(rejection)),
            Acquire::Wait(waiter) => Self {
                state: State::Waiting {
                    sleep: Box::pin(tokio::time::sleep(core.max_wait)),
                    guard: WaitGuard {
                        core: core.clone(),
                        waiter,
                        armed: true,
                    },
                },
            },
        }
    }

    fn done(result: Result<Permit, BulkheadFull>) -> Self {
        Self {
            state: State::Done(Some(result)),
        }
    }
}

impl Future for AcquirePermit {
    type Output = Result<Permit, BulkheadFull>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let (sleep, guard) = match &mut this.state {
            State::Done(result) => {
                return Poll::Ready(
                    result
                        .take()
                        .expect("AcquirePermit polled after completion"),
                );
            }
            State::Waiting { sleep, guard } => (sleep, guard),
        };
        let mut granted = guard.waiter.is_granted();
        if !granted {
            guard.waiter.register(cx.waker());
            granted = guard.waiter.is_granted();
        }
        if !granted {
            ready!(sleep.as_mut().poll(cx));
            match guard.core.abandon(&guard.waiter) {
                // Granted just as the wait ran out: use the permit.
                Abandon::WasGranted => {}
                Abandon::Removed => {
                    guard.armed = false;
                    let rejection = guard.core.wait_elapsed(&guard.waiter);
                    this.state = State::Done(None);
                    return Poll::Ready(Err(rejection));
                }
            }
        }
        let permit = guard.take_permit();
        this.state = State::Done(None);
        Poll::Ready(Ok(permit))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{BulkheadLayer, FullReason};

    #[tokio::test(start_paused = true)]
    async fn waits_in_line_then_gets_the_freed_permit_or_times_out() {
        let bulkhead = BulkheadLayer::builder()
            .max_concurrent(1)
            .max_wait(Duration::from_secs(1))
            .layer()
            .unwrap();
        let first = bulkhead.acquire(None).await.unwrap();
        let waiting = tokio::spawn({
            let b = bulkhead.clone();
            async move { b.acquire(None).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(bulkhead.handle().stats().queued, 1);
        drop(first);
        let second = waiting.await.unwrap().expect("handed the freed permit");
        assert_eq!(bulkhead.handle().stats().active, 1);

        let err = bulkhead.acquire(None).await.unwrap_err();
        assert_eq!(err.reason(), FullReason::WaitElapsed);
        assert_eq!(err.waited(), Duration::from_secs(1));
        drop(second);
        assert_eq!(bulkhead.handle().stats().active, 0);
    }

    #[tokio::test]
    async fn a_dropped_waiter_leaves_the_queue() {
        let bulkhead = BulkheadLayer::builder()
            .max_concurrent(1)
            .max_wait(Duration::from_secs(60))
            .layer()
            .unwrap();
        let held = bulkhead.acquire(None).await.unwrap();
        let mut waiting = Box::pin(bulkhead.acquire(None));
        assert!(futures_poll_once(waiting.as_mut()).is_none());
        assert_eq!(bulkhead.handle().stats().queued, 1);
        drop(waiting);
        assert_eq!(bulkhead.handle().stats().queued, 0);
        drop(held);
        assert!(bulkhead.acquire(None).await.is_ok());
    }

    fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        let mut f = f;
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match std::pin::Pin::new(&mut f).poll(&mut cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        }
    }
}
