//! A call waiting for a permit, and what admission and abandoning a wait answer.

use super::*;

pub(super) const WAITING: u8 = 0;
pub(super) const GRANTED: u8 = 1;
pub(super) const GONE: u8 = 2;

/// A call waiting for a permit.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub(super) class: usize,
    pub(super) since: Instant,
    pub(super) state: AtomicU8,
    pub(super) waker: Mutex<Option<Waker>>,
}

impl Waiter {
    pub(crate) fn is_granted(&self) -> bool {
        self.state.load(Ordering::Acquire) == GRANTED
    }

    pub(crate) fn register(&self, waker: &Waker) {
        let mut w = lock(&self.waker);
        match &*w {
            Some(old) if old.will_wake(waker) => {}
            _ => *w = Some(waker.clone()),
        }
    }

    pub(super) fn grant(&self) {
        self.state.store(GRANTED, Ordering::Release);
        if let Some(w) = lock(&self.waker).take() {
            w.wake();
        }
    }
}

/// The outcome of [`Core::acquire`].
#[derive(Debug)]
pub(crate) enum Acquire {
    /// A permit, now.
    Now,
    /// Wait for this waiter to be granted (or give up after `max_wait`).
    Wait(Arc<Waiter>),
    /// Rejected.
    Rejected(BulkheadFull),
}

/// What [`Core::abandon`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Abandon {
    /// The waiter was still queued; it is gone now.
    Removed,
    /// The waiter had been granted a permit meanwhile; the caller now holds it.
    WasGranted,
}
