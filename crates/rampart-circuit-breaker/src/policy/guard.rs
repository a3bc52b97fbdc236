//! What an adapter holds: a shard's [`Lane`] into a breaker, and the [`CallGuard`] of an
//! admitted call.

use super::*;

/// One shard's entry point into a breaker: what a call clones (a thread-local reference count)
/// instead of the breaker's shared `Arc`, plus the classifier the adapter judges responses with.
#[derive(Debug)]
pub(crate) struct Lane<C> {
    pub(crate) core: Arc<Core>,
    pub(crate) shard: usize,
    pub(crate) classifier: C,
}

/// The lanes of one breaker, one per shard.
pub(crate) type Lanes<C> = Arc<[Arc<Padded<Lane<C>>>]>;

pub(crate) fn lanes<C: Clone>(core: &Arc<Core>, classifier: &C) -> Lanes<C> {
    (0..shard_count())
        .map(|shard| {
            Arc::new(Padded(Lane {
                core: core.clone(),
                shard,
                classifier: classifier.clone(),
            }))
        })
        .collect()
}

/// Holds an admitted call's place in the breaker until its outcome is known.
///
/// It is the [`Record`]er handed to the classifier: recording the outcome completes the call;
/// dropping it unrecorded (the response future or the response body was dropped) counts the
/// call as ignored and frees its half-open probe slot.
pub struct CallGuard<C> {
    pub(super) lane: Arc<Padded<Lane<C>>>,
    pub(super) permit: Permit,
    pub(super) armed: bool,
}

impl<C> std::fmt::Debug for CallGuard<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallGuard")
            .field("breaker", &self.lane.0.core.name)
            .field("kind", &self.permit.kind)
            .finish()
    }
}

impl<C> CallGuard<C> {
    /// Tries to admit a call through `lane`.
    #[inline]
    pub(crate) fn acquire(lane: &Arc<Padded<Lane<C>>>) -> Result<Self, CircuitOpen> {
        let permit = lane.0.core.acquire(lane.0.shard)?;
        Ok(Self {
            lane: lane.clone(),
            permit,
            armed: true,
        })
    }

    /// Like [`acquire`](Self::acquire), keeping the given reference.
    #[inline]
    pub(crate) fn acquire_owned(lane: Arc<Padded<Lane<C>>>) -> Result<Self, CircuitOpen> {
        let permit = lane.0.core.acquire(lane.0.shard)?;
        Ok(Self {
            lane,
            permit,
            armed: true,
        })
    }

    /// The lane (for its classifier).
    pub(crate) fn lane(&self) -> &Arc<Padded<Lane<C>>> {
        &self.lane
    }

    /// The classifier of the breaker that admitted the call: what an adapter judges the call's
    /// result with before it [records](Record::record) the outcome.
    #[inline]
    pub fn classifier(&self) -> &C {
        &self.lane.0.classifier
    }
}

impl<C> CallGuard<C> {
    /// Records the outcome in place; the guard is spent (dropping it then records nothing).
    #[inline]
    pub(crate) fn finish(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.armed, false) {
            let lane = &self.lane.0;
            lane.core.complete(lane.shard, &self.permit, outcome);
        }
    }
}

impl<C: Send + Sync + 'static> Record for CallGuard<C> {
    #[inline]
    fn record(mut self, outcome: Outcome) {
        self.finish(outcome);
    }
}

impl<C> Drop for CallGuard<C> {
    fn drop(&mut self) {
        if self.armed {
            let lane = &self.lane.0;
            lane.core.cancel(lane.shard, self.permit);
        }
    }
}

impl Core {
    /// A call's future or response body was dropped before it completed.
    pub(crate) fn cancel(&self, shard: usize, permit: Permit) {
        self.shard(shard).ignored.fetch_add(1, Ordering::Relaxed);
        self.metrics.ignored.increment(1);
        if permit.kind == PermitKind::Probe {
            let mut m = lock(&self.machine);
            if m.generation == permit.generation && m.state == State::HalfOpen {
                m.probes_in_flight = m.probes_in_flight.saturating_sub(1);
                m.probes_admitted = m.probes_admitted.saturating_sub(1);
            }
        }
    }
}
