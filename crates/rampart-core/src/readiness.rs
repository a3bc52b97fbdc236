//! [`Readiness`]: whether a dependency takes calls now, and a way to wait until that changes.
//!
//! The vocabulary between a signal of recovery and what acts on it: a circuit breaker's
//! handle is one (ready unless open), a health check can be one, and the dead-letter drain
//! worker waits on one before it redrives parked requests, and stops when it turns.
//!
//! ```
//! use rampart_core::readiness::Readiness;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let (tx, rx) = tokio::sync::watch::channel(false);
//! assert!(!rx.is_ready());
//! let changed = rx.changed_soon(); // watches from now on
//! tx.send(true).unwrap();
//! changed.await;
//! assert!(rx.is_ready());
//! # }
//! ```

use std::{fmt, sync::Arc};

use crate::BoxFuture;

/// Whether a dependency takes calls now, and a future that completes when that may have
/// changed.
///
/// Implementations: a circuit breaker's handle (rampart-circuit-breaker), a
/// `tokio::sync::watch::Receiver<bool>`, [`AlwaysReady`] and [`ready_fn`] (a closure, polled).
pub trait Readiness: Send + Sync + 'static {
    /// `true` if calls to the dependency may go ahead now.
    fn is_ready(&self) -> bool;

    /// A future that completes when [`is_ready`](Self::is_ready) may have changed since this
    /// call: it watches from the moment it is made, not from its first poll, so that a caller
    /// that makes it, then reads `is_ready`, then awaits it, misses no change. It may complete
    /// with nothing changed (callers read `is_ready` again), and it may never complete for a
    /// readiness that cannot say when it changes ([`ready_fn`]): callers that must notice
    /// such a change poll `is_ready` on a timer as well.
    fn changed_soon(&self) -> BoxFuture<'static, ()>;
}

impl<R: Readiness + ?Sized> Readiness for Arc<R> {
    fn is_ready(&self) -> bool {
        (**self).is_ready()
    }

    fn changed_soon(&self) -> BoxFuture<'static, ()> {
        (**self).changed_soon()
    }
}

impl<R: Readiness + ?Sized> Readiness for Box<R> {
    fn is_ready(&self) -> bool {
        (**self).is_ready()
    }

    fn changed_soon(&self) -> BoxFuture<'static, ()> {
        (**self).changed_soon()
    }
}

/// Ready while the channel's value is `true`; changes when a new value is sent. A closed
/// channel (the sender dropped) keeps its last value and never changes again.
impl Readiness for tokio::sync::watch::Receiver<bool> {
    fn is_ready(&self) -> bool {
        *self.borrow()
    }

    fn changed_soon(&self) -> BoxFuture<'static, ()> {
        let mut rx = self.clone();
        rx.mark_unchanged();
        Box::pin(async move {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

/// Always ready: for a drain that should run whenever there is work.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysReady;

impl Readiness for AlwaysReady {
    fn is_ready(&self) -> bool {
        true
    }

    fn changed_soon(&self) -> BoxFuture<'static, ()> {
        Box::pin(std::future::pending())
    }
}

/// A readiness read from a closure, e.g. over a health check's last result. It cannot say when
/// it changes (its [`changed_soon`](Readiness::changed_soon) never completes), so its users
/// notice a change when they next poll it.
///
/// ```
/// use std::sync::{Arc, atomic::{AtomicBool, Ordering}};
/// use rampart_core::readiness::{Readiness, ready_fn};
///
/// let healthy = Arc::new(AtomicBool::new(false));
/// let h = healthy.clone();
/// let ready = ready_fn(move || h.load(Ordering::Acquire));
/// assert!(!ready.is_ready());
/// healthy.store(true, Ordering::Release);
/// assert!(ready.is_ready());
/// ```
pub fn ready_fn<F>(f: F) -> ReadyFn<F>
where
    F: Fn() -> bool + Send + Sync + 'static,
{
    ReadyFn(f)
}

/// A [`Readiness`] from a closure. Made by [`ready_fn`].
#[derive(Clone, Copy)]
pub struct ReadyFn<F>(F);

impl<F> fmt::Debug for ReadyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadyFn").finish_non_exhaustive()
    }
}

impl<F> Readiness for ReadyFn<F>
where
    F: Fn() -> bool + Send + Sync + 'static,
{
    fn is_ready(&self) -> bool {
        (self.0)()
    }

    fn changed_soon(&self) -> BoxFuture<'static, ()> {
        Box::pin(std::future::pending())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_watch_wakes_for_a_change_sent_before_the_first_poll_only() {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tx.send(true).unwrap(); // before the future is made: not its change
        let changed = rx.changed_soon();
        let early = tokio::time::timeout(std::time::Duration::from_secs(1), changed).await;
        assert!(early.is_err(), "an old change does not wake a new watcher");
        let changed = rx.changed_soon();
        tx.send(false).unwrap(); // after it is made, before it is polled
        changed.await;
        assert!(!rx.is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_watch_keeps_its_value_and_never_wakes() {
        let (tx, rx) = tokio::sync::watch::channel(true);
        drop(tx);
        assert!(rx.is_ready());
        let r = tokio::time::timeout(std::time::Duration::from_secs(60), rx.changed_soon()).await;
        assert!(r.is_err());
    }
}
