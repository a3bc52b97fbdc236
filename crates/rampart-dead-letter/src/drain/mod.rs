//! [`Drain`]: the worker that redrives parked requests by itself when their dependency
//! recovers.

mod builder;
mod handle;
#[cfg(test)]
mod tests;

use std::{
    future::{Future as _, poll_fn},
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::Poll,
    time::Duration,
};

use bytes::Bytes;
use rampart_core::{BoxFuture, readiness::Readiness, sync::lock};

pub use builder::{DEFAULT_POLL_INTERVAL, DrainBuilder};
pub use handle::{DrainHandle, DrainState, DrainStats};

use self::handle::Shared;
use crate::{AnswerBody, Redrive, RedriveOutcome, RedriveService, Skip};

/// Redrives parked requests by itself once their dependency takes calls again: the "drain on
/// recovery" half of queue-for-later.
///
/// A request that could not be served is parked (a [`DeadLetterLayer`](crate::DeadLetterLayer),
/// perhaps answering `202 Accepted` with [`AcceptForLater`](crate::AcceptForLater)); the
/// worker waits on a [`Readiness`], typically the upstream's circuit breaker handle, and while
/// it is ready, makes passes of [`Redrive::all`] over the store: paced and bounded by the
/// redrive's [`rate`](crate::RedriveBuilder::rate) and
/// [`concurrency`](crate::RedriveBuilder::concurrency), each request with its original
/// idempotency key, given up after [`max_redrives`](crate::RedriveBuilder::max_redrives)
/// with the redrive's [alert hook](crate::RedriveBuilder::on_give_up).
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use rampart_dead_letter::{Drain, DrainState, MemoryStore, Redrive};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = Arc::new(MemoryStore::bounded(10_000).unwrap());
/// # let client = tower::service_fn(|_: http::Request<bytes::Bytes>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// # });
/// // `client`: the stack the requests were parked from. The readiness is usually its
/// // circuit breaker's handle (`breaker.handle()`); here, a switch.
/// let (upstream_up, ready) = tokio::sync::watch::channel(false);
/// let redrive = Redrive::builder(store, client).rate(50.0).concurrency(4).build().unwrap();
/// let drain = Drain::builder(redrive, ready)
///     .name("billing")
///     .poll_interval(Duration::from_secs(5))
///     .build()
///     .unwrap()
///     .spawn();
/// upstream_up.send(true).unwrap(); // the dependency is back: the drain runs
/// // … at shutdown:
/// drain.stop();
/// drain.stopped().await;
/// assert_eq!(drain.state(), DrainState::Stopped);
/// # }
/// ```
///
/// # What it does
///
/// - While the readiness says no (the breaker is open), nothing is sent. When it turns (the
///   breaker's open time ends, or it closes), a pass starts at once.
/// - A pass stops taking records when the readiness turns back (the breaker reopened), when a
///   layer of the worker's own service refuses a record (an open circuit or a full bulkhead:
///   the record is released untouched, no redrive counted, see [`Skip::Rejected`]), or when
///   the worker is stopped. Sends in flight finish and are recorded.
/// - While ready, a pass runs every [`poll_interval`](DrainBuilder::poll_interval), so records
///   parked meanwhile are picked up, and records that failed again are tried again.
///
/// # Restarts, several workers, crashes
///
/// The worker keeps no state of its own: every record's state, redrive count and lease is in
/// the store. A restarted worker carries on where the last one stopped, and a record a
/// crashed worker had claimed is taken again once its lease runs out. Several workers (one per
/// replica of a service) may drain one store: each record is claimed by a compare-and-set
/// before it is sent, so exactly one of them sends it; the conformance suite's
/// `concurrent_drains` proves this for every store.
///
/// # Trade-offs
///
/// - Records parked while the worker is idle wait up to one poll interval: the worker polls
///   the store rather than being told of each park, which keeps the store contract small and
///   works for workers in other processes.
/// - A half-open breaker counts as ready, so the first records of a pass are its probes; with
///   the breaker's probe limit the rest are refused and released, and the pass waits for the
///   breaker to close. Recovery is found by the records themselves, not by live traffic.
/// - With a readiness that cannot say when it changes ([`ready_fn`](rampart_core::readiness::ready_fn)),
///   a recovery is noticed at the next poll.
///
/// # Metrics
///
/// `rampart_dead_letter_drain_passes_total` (counter) and `rampart_dead_letter_drain_waiting`
/// (gauge, 1 while the dependency is not ready), labelled `name`; each record's outcome is
/// counted by the redrive's `rampart_dead_letter_redriven_total`.
pub struct Drain<S> {
    redrive: Redrive<S>,
    readiness: Arc<dyn Readiness>,
    name: Arc<str>,
    poll_interval: Duration,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for Drain<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drain")
            .field("name", &self.name)
            .field("redrive", &self.redrive)
            .field("poll_interval", &self.poll_interval)
            .field("state", &self.shared.state())
            .finish_non_exhaustive()
    }
}

impl Drain<()> {
    /// A builder: a worker that runs `redrive` whenever `readiness` says the dependency takes
    /// calls: the upstream breaker's `CircuitBreakerHandle` (rampart-circuit-breaker), a
    /// health probe passing (rampart-health's `HealthRegistry::readiness`), a
    /// `tokio::sync::watch::Receiver<bool>`, [`AlwaysReady`](rampart_core::readiness::AlwaysReady), …
    pub fn builder<S>(redrive: Redrive<S>, readiness: impl Readiness) -> DrainBuilder<S> {
        DrainBuilder::new(redrive, Arc::new(readiness))
    }
}

impl<S> Drain<S> {
    /// A handle on the worker, valid before and after it runs.
    pub fn handle(&self) -> DrainHandle {
        DrainHandle {
            shared: self.shared.clone(),
        }
    }

    /// Runs the worker on a tokio task; returns its handle.
    pub fn spawn<B, ResB>(self) -> DrainHandle
    where
        S: RedriveService<B, ResB> + Sync,
        B: From<Bytes> + Send + 'static,
        ResB: AnswerBody,
    {
        let handle = self.handle();
        tokio::spawn(self.run());
        handle
    }

    /// Runs the worker until it is [stopped](DrainHandle::stop); returns its counts.
    pub async fn run<B, ResB>(self) -> DrainStats
    where
        S: RedriveService<B, ResB>,
        B: From<Bytes> + Send + 'static,
        ResB: AnswerBody,
    {
        let name = self.name.to_string();
        let passes = metrics::counter!("rampart_dead_letter_drain_passes_total", rampart_core::registry::INSTANCE_LABEL => name.clone());
        let waiting = metrics::gauge!("rampart_dead_letter_drain_waiting", rampart_core::registry::INSTANCE_LABEL => name);
        let shared = &*self.shared;
        tracing::info!(target: "rampart::dead_letter", drain = %self.name, "drain worker started");
        while !shared.stop_requested() {
            let changed = self.readiness.changed_soon();
            if !self.readiness.is_ready() {
                if shared.state() != DrainState::Waiting {
                    tracing::info!(target: "rampart::dead_letter", drain = %self.name, "dependency not ready; drain waits");
                }
                shared.set_state(DrainState::Waiting);
                waiting.set(1.0);
                self.pause(Some(changed)).await;
                continue;
            }
            waiting.set(0.0);
            shared.set_state(DrainState::Draining);
            passes.increment(1);
            lock(&shared.stats).passes += 1;
            let rejected = AtomicBool::new(false);
            let result = self
                .redrive
                .all_while(
                    |p| {
                        if let RedriveOutcome::Skipped {
                            why: Skip::Rejected { .. },
                            ..
                        } = p.outcome
                        {
                            rejected.store(true, Ordering::Release);
                        }
                        lock(&shared.stats).add(p.outcome);
                    },
                    || {
                        !rejected.load(Ordering::Acquire)
                            && !shared.stop_requested()
                            && self.readiness.is_ready()
                    },
                )
                .await;
            match result {
                Ok(summary) if summary.seen > 0 => tracing::info!(
                    target: "rampart::dead_letter", drain = %self.name,
                    delivered = summary.delivered, failed = summary.failed,
                    given_up = summary.given_up, skipped = summary.skipped, errors = summary.errors,
                    "drain pass done"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(target: "rampart::dead_letter", drain = %self.name, error = %e, "drain pass ended early: the store failed");
                    lock(&shared.stats).last_error = Some(e.to_string());
                }
            }
            if shared.stop_requested() || !self.readiness.is_ready() {
                continue;
            }
            // Refused locally (the breaker half-open with its probes taken, say): wait for a
            // change as a not-ready dependency would, instead of trying again at once.
            let changed = rejected
                .load(Ordering::Acquire)
                .then(|| self.readiness.changed_soon());
            shared.set_state(DrainState::Idle);
            self.pause(changed).await;
        }
        waiting.set(0.0);
        shared.set_state(DrainState::Stopped);
        tracing::info!(target: "rampart::dead_letter", drain = %self.name, "drain worker stopped");
        lock(&shared.stats).clone()
    }

    /// Waits the poll interval, or less: until `changed` (if any) completes or a stop is asked.
    async fn pause(&self, changed: Option<BoxFuture<'static, ()>>) {
        let stopping = pin!(self.shared.stopping.notified());
        let mut stopping = stopping;
        stopping.as_mut().enable();
        if self.shared.stop_requested() {
            return;
        }
        let mut sleep = pin!(tokio::time::sleep(self.poll_interval));
        let mut changed = changed;
        poll_fn(|cx| {
            let changed_now = changed
                .as_mut()
                .is_some_and(|c| c.as_mut().poll(cx).is_ready());
            if changed_now
                || sleep.as_mut().poll(cx).is_ready()
                || stopping.as_mut().poll(cx).is_ready()
            {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}
