//! [`DrainHandle`]: what a running drain worker reports ([`DrainStats`], [`DrainState`]), and
//! how it is stopped.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicU8, Ordering},
};

use rampart_core::sync::lock;
use tokio::sync::Notify;

use crate::{RedriveOutcome, Skip};

/// What a drain worker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DrainState {
    /// Not started yet.
    Starting,
    /// The dependency is not ready (its breaker is open, say): nothing is sent.
    Waiting,
    /// A pass over the parked records is under way.
    Draining,
    /// Ready, and the last pass is over: the next one starts after the poll interval.
    Idle,
    /// Stopped, by [`DrainHandle::stop`]; sends in flight when it was asked have finished.
    Stopped,
}

impl DrainState {
    /// A lowercase name, for logs: `starting`, `waiting`, `draining`, `idle`, `stopped`.
    pub const fn as_str(self) -> &'static str {
        match self {
            DrainState::Starting => "starting",
            DrainState::Waiting => "waiting",
            DrainState::Draining => "draining",
            DrainState::Idle => "idle",
            DrainState::Stopped => "stopped",
        }
    }

    const fn from_u8(n: u8) -> Self {
        match n {
            0 => DrainState::Starting,
            1 => DrainState::Waiting,
            2 => DrainState::Draining,
            3 => DrainState::Idle,
            _ => DrainState::Stopped,
        }
    }

    const fn to_u8(self) -> u8 {
        match self {
            DrainState::Starting => 0,
            DrainState::Waiting => 1,
            DrainState::Draining => 2,
            DrainState::Idle => 3,
            DrainState::Stopped => 4,
        }
    }
}

impl std::fmt::Display for DrainState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts since a drain worker started, over all its passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainStats {
    /// Passes over the store begun.
    pub passes: u64,
    /// Records delivered.
    pub delivered: u64,
    /// Records sent that failed again (back to `pending`, one more redrive counted).
    pub failed: u64,
    /// Records given up (the redrive's alert hook fired for each).
    pub given_up: u64,
    /// Records refused by a layer of the worker's own service before they went out (an open
    /// circuit, a full bulkhead): released untouched, and the pass stopped there.
    pub rejected: u64,
    /// Records skipped for another reason (held by another worker, unkeyed, finished).
    pub skipped: u64,
    /// Records the store failed for (see [`RedriveOutcome::Errored`]).
    pub errors: u64,
    /// The last error that ended a pass early (a store that could not list records).
    pub last_error: Option<String>,
}

impl DrainStats {
    pub(super) fn add(&mut self, outcome: &RedriveOutcome) {
        match outcome {
            RedriveOutcome::Delivered { .. } => self.delivered += 1,
            RedriveOutcome::Failed { .. } => self.failed += 1,
            RedriveOutcome::GivenUp { .. } => self.given_up += 1,
            RedriveOutcome::Skipped {
                why: Skip::Rejected { .. },
                ..
            } => self.rejected += 1,
            RedriveOutcome::Skipped { .. } => self.skipped += 1,
            RedriveOutcome::Errored { .. } => self.errors += 1,
        }
    }
}

/// What a worker and its handles share.
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) state: AtomicU8,
    pub(super) stats: Mutex<DrainStats>,
    pub(super) stop: AtomicBool,
    /// Woken by [`DrainHandle::stop`].
    pub(super) stopping: Notify,
    /// Woken when the worker has stopped.
    pub(super) stopped: Notify,
}

impl Shared {
    pub(super) fn set_state(&self, state: DrainState) {
        self.state.store(state.to_u8(), Ordering::Release);
        if state == DrainState::Stopped {
            self.stopped.notify_waiters();
        }
    }

    pub(super) fn state(&self) -> DrainState {
        DrainState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(super) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// A handle on a drain worker: its state and counts, and a way to stop it. Cheap to clone;
/// made by [`Drain::handle`](crate::Drain::handle) or [`Drain::spawn`](crate::Drain::spawn).
#[derive(Debug, Clone)]
pub struct DrainHandle {
    pub(super) shared: Arc<Shared>,
}

impl DrainHandle {
    /// What the worker is doing now.
    pub fn state(&self) -> DrainState {
        self.shared.state()
    }

    /// Counts since it started.
    pub fn stats(&self) -> DrainStats {
        lock(&self.shared.stats).clone()
    }

    /// Asks the worker to stop: it takes no new record, lets the sends in flight finish and
    /// be recorded, and ends. Returns at once; [`stopped`](Self::stopped) waits for the end.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.stopping.notify_waiters();
    }

    /// Completes once the worker has stopped (at once if it has).
    pub async fn stopped(&self) {
        let stopped = self.shared.stopped.notified();
        if self.state() == DrainState::Stopped {
            return;
        }
        stopped.await;
    }
}
