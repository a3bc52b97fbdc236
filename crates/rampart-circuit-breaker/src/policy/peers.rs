//! The hooks through which [shared state](crate::shared) reaches one breaker: what it
//! publishes, the decisions peers may make for it (open, close), and the gate on its probes.
//! Nothing here waits: the request path reads one atomic more, and only when an open breaker's
//! time is over.

use std::sync::atomic::{AtomicBool, AtomicU8};

use super::*;

/// No cluster decision on the probes: this breaker probes by itself when its open time is
/// over, as without sharing (not joined, not yet asked, or the store is unreachable).
pub(crate) const GATE_LOCAL: u8 = 0;
/// This replica owns the cluster's probe of this breaker.
pub(crate) const GATE_OWNER: u8 = 1;
/// Another replica owns it: stay open until it reports.
pub(crate) const GATE_PEER: u8 = 2;

/// The link of a breaker to the [`SharedBreakers`](crate::shared::SharedBreakers) it joined.
pub(crate) struct PeerLink {
    /// Who probes: one of the `GATE_*` values.
    pub(crate) gate: AtomicU8,
    /// Set by every transition: publish at once.
    pub(crate) dirty: AtomicBool,
    /// Wakes the driver (shared by every breaker of one `SharedBreakers`).
    pub(crate) wake: Arc<tokio::sync::Notify>,
    /// The retry-after of a call rejected while another replica probes: the driver's period.
    pub(crate) recheck: Duration,
    /// Keeps the sharing (and its driver) alive while this breaker is.
    pub(crate) _keep: Arc<dyn std::any::Any + Send + Sync>,
}

impl std::fmt::Debug for PeerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLink")
            .field("gate", &self.gate)
            .field("dirty", &self.dirty)
            .finish_non_exhaustive()
    }
}

/// What a breaker publishes of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalView {
    pub(crate) state: State,
    pub(crate) mode: Mode,
    pub(crate) reason: Reason,
    pub(crate) generation: u64,
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
    pub(crate) open_left: Option<Duration>,
}

impl Core {
    /// Links this breaker to a `SharedBreakers`; `false` if it already is (to this one or
    /// another: a breaker shares through one store).
    pub(crate) fn join(&self, link: Arc<PeerLink>) -> bool {
        self.peers.set(link).is_ok()
    }

    pub(crate) fn peer_link(&self) -> Option<&Arc<PeerLink>> {
        self.peers.get()
    }

    /// Whether another replica owns the probe: then this one stays open past its time.
    #[inline]
    pub(super) fn probe_held_elsewhere(&self) -> Option<Duration> {
        self.peers
            .get()
            .filter(|l| l.gate.load(Ordering::Acquire) == GATE_PEER)
            .map(|l| l.recheck)
    }

    /// An open breaker whose time is over: held open without the lock while another replica
    /// probes for the cluster, else [`probe`](Self::probe).
    #[inline]
    pub(super) fn probe_unless_held(
        self: &Arc<Self>,
        shard: usize,
        mode: Mode,
    ) -> Result<Permit, CircuitOpen> {
        match self.probe_held_elsewhere() {
            Some(recheck) => self.reject(
                shard,
                mode,
                CircuitOpen::new(RejectedBy::Open, Some(recheck)),
            ),
            None => self.probe(self.clock.now(), shard),
        }
    }

    /// Tells the driver a transition happened.
    pub(super) fn note_transition(&self) {
        if let Some(link) = self.peers.get() {
            link.dirty.store(true, Ordering::Release);
            link.wake.notify_one();
        }
    }

    /// The breaker's state, window and open time left, to publish.
    pub(crate) fn local_view(&self) -> LocalView {
        let now = self.clock.now();
        let (state, mode, reason, generation) = {
            let m = lock(&self.machine);
            (m.state, m.mode, m.reason, m.generation)
        };
        let w = self.window_counts(Some(now));
        LocalView {
            state,
            mode,
            reason,
            generation,
            calls: w.total,
            failures: w.failures,
            slow: w.slow,
            open_left: (state == State::Open).then(|| self.open_left(now)),
        }
    }

    /// Whether `counts` (the window summed over replicas) would trip this breaker.
    pub(crate) fn would_trip(&self, calls: u64, failures: u64, slow: u64) -> bool {
        self.judge_counts(Counts {
            total: calls,
            failures,
            slow,
        })
        .is_some()
    }

    /// Opens a closed breaker on what peers reported, for `open_for` (their time left) or,
    /// if `None`, the configured open time. Not in a forced or disabled mode. `true` if it
    /// opened.
    pub(crate) fn open_by_peers(self: &Arc<Self>, open_for: Option<Duration>) -> bool {
        let now = self.clock.now();
        let t = {
            let mut m = lock(&self.machine);
            if m.state != State::Closed || !matches!(m.mode, Mode::Normal | Mode::MetricsOnly) {
                return false;
            }
            self.transition_for(&mut m, State::Open, Reason::Peers, now, open_for)
        };
        self.emit(t);
        true
    }

    /// Closes a breaker that is open (or half-open) because the replica that probed found
    /// the dependency recovered. `true` if it closed.
    pub(crate) fn close_by_peers(self: &Arc<Self>) -> bool {
        let now = self.clock.now();
        let t = {
            let mut m = lock(&self.machine);
            if m.state == State::Closed || !matches!(m.mode, Mode::Normal | Mode::MetricsOnly) {
                return false;
            }
            self.transition(&mut m, State::Closed, Reason::PeersRecovered, now)
        };
        self.emit(t);
        true
    }

    /// The breaker's configuration, for the driver.
    pub(crate) fn config(&self) -> &CircuitBreakerConfig {
        &self.cfg
    }
}
