//! Breakers that learn together: each replica's breakers share their state through a store
//! (Redis, NATS JetStream KV, or [memory](MemoryBackend) in one process), so that ten replicas
//! of a service do not each learn on their own, at ten times the load, that a dependency is
//! down — and without a network round trip on any request.
//!
//! ```
//! use std::time::Duration;
//! use rampart_circuit_breaker::{CircuitBreakerLayer, shared::{Decision, MemoryBackend, SharedBreakers}};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = MemoryBackend::new(); // rampart_redis::RedisBreakerState in production
//! let shared = SharedBreakers::builder(backend)
//!     .replica("pod-a")
//!     .decision(Decision::quorum(2))
//!     .publish_every(Duration::from_secs(1))
//!     .spawn()?;
//! let breaker = CircuitBreakerLayer::builder().name("payments").layer()?;
//! shared.join(&breaker.handle());
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! - **The local breaker decides every call.** Peers' state reaches it in the background: it
//!   may be *opened* by them (per the [`Decision`]), *closed* when the replica that probed for
//!   the cluster found the dependency recovered, and held open while another replica probes.
//!   Nothing on the request path reads the network; a closed breaker's admission costs what
//!   it did (one atomic load), an open one's one atomic more once its time is over.
//! - **Snapshots.** A background task (the [`Driver`]) publishes each joined breaker's
//!   [`Snapshot`] (state, mode, window counts, open time left *as a duration*) at once on each
//!   transition and every [`publish_every`](SharedBreakersBuilder::publish_every) (1 s by
//!   default), with a liveness TTL of three periods: a replica that stops publishing drops
//!   out. On each period it reads the peers' snapshots and judges them.
//! - **One probe for the cluster.** When a breaker opens, its replica asks for the breaker's
//!   probe lease (Redis `SET NX PX`, a KV create) before it publishes the open, so the replica
//!   that opened first usually gets it (a follower whose round falls in between may win it
//!   instead: still one owner). The replica that holds it probes when the
//!   open time is over, as a lone breaker would; the others stay open (rejecting with a
//!   retry-after of one period) until the owner reports. When the owner's probes close its
//!   breaker, the replicas that waited on it (or followed peers into open) close too
//!   ([`Reason::PeersRecovered`](crate::Reason::PeersRecovered)); when they fail, it re-opens
//!   and keeps the lease. A lease outlives the open time by
//!   [`probe_lease`](SharedBreakersBuilder::probe_lease) (30 s); if its owner vanishes, another
//!   replica takes it on the next period. So a recovering dependency sees one replica's
//!   probes, not one set per replica.
//! - **Store down or slow.** Every store operation has a timeout (250 ms by default). On any
//!   failure the driver falls back to local-only at once: every breaker probes by itself
//!   again, nothing is decided from peers, the failure is counted and
//!   [`status`](SharedBreakers::status) (and rampart-health's `SharedBreakersCheck`) reports
//!   *degraded* with the reason; the next period tries again, and a full round that works
//!   rejoins. Requests never fail or slow because the store is down.
//! - **Clocks.** Snapshots carry durations, not instants, and liveness is judged by the
//!   store's own time, so replicas' clocks need not agree. A followed open time is the peer's
//!   time left when it published, up to one period old: followers may probe up to a period
//!   late, never early.
//! - **Per-key breakers** ([`join_keyed`](SharedBreakers::join_keyed)) share per key, under the
//!   store name `name/key`. The registry's bounds (`max_keys`, idle eviction) bound what is
//!   published: a flood of keys cannot flood the store. Peers' state reaches the keys this
//!   replica has a breaker for; a new key's breaker joins on the next period.
//! - **Trust.** A peer's snapshot is one short line of numbers and names
//!   ([format](Snapshot#format-version-1)), at most 192 bytes; anything else is ignored and
//!   counted (`rampart_circuit_breaker_shared_bad_snapshots_total`), and so is any peer beyond
//!   the 256th. A peer can open this replica's breaker only through the decision configured
//!   here, for at most this breaker's own longest open time.
//!
//! # Cost
//!
//! Per period and joined breaker: one write and one read (two round trips), one more while
//! the breaker is open (the lease); per transition, one write. Operations run one after
//! another, so with many keyed breakers a period takes their count times a round trip.
//!
//! # Metrics
//!
//! Labelled `name` (the replica): `rampart_circuit_breaker_shared_errors_total`,
//! `rampart_circuit_breaker_shared_bad_snapshots_total`,
//! `rampart_circuit_breaker_shared_decisions_total{decision="open"|"close"}`, and the gauge
//! `rampart_circuit_breaker_shared_degraded` (1 while local-only).

use std::{
    fmt,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use rampart_core::{error::ConfigError, sync::lock};

use crate::{
    handle::CircuitBreakerHandle,
    layer::KeyedCircuitBreakerHandle,
    policy::{Core, GATE_LOCAL, GATE_OWNER, GATE_PEER, PeerLink},
};

mod backend;
mod decision;
mod driver;
mod snapshot;

pub use self::{
    backend::{BackendError, MemoryBackend, PeerSnapshots, StateBackend},
    decision::Decision,
    driver::{Driver, MAX_PEERS},
    snapshot::{MAX_OPEN_LEFT, MAX_SNAPSHOT_LEN, Snapshot},
};

const WHO: &str = "shared breakers";

/// Shares the state of the breakers that [join](Self::join) it with the same breakers of
/// other replicas, through a [`StateBackend`]. See the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct SharedBreakers {
    inner: Arc<Inner>,
}

type Enumerate = Box<dyn Fn() -> Vec<Arc<Core>> + Send + Sync>;

pub(crate) struct Inner {
    backend: Arc<dyn StateBackend>,
    replica: Arc<str>,
    decision: Decision,
    every: Duration,
    ttl: Duration,
    op_timeout: Duration,
    probe_lease: Duration,
    wake: Arc<tokio::sync::Notify>,
    singles: Mutex<Vec<Weak<Core>>>,
    keyed: Mutex<Vec<Enumerate>>,
    degraded: Mutex<Option<(String, SystemTime)>>,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    errors: AtomicU64,
    bad: AtomicU64,
    opened: AtomicU64,
    closed: AtomicU64,
}

impl fmt::Debug for SharedBreakers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBreakers")
            .field("replica", &self.inner.replica)
            .field("backend", &self.inner.backend.describe())
            .field("decision", &self.inner.decision)
            .finish_non_exhaustive()
    }
}

/// What a [`SharedBreakers`] is doing: [`SharedBreakers::status`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SharedStatus {
    /// This replica's name.
    pub replica: String,
    /// The backend, described.
    pub backend: String,
    /// While local-only: why (the last failure) and since when.
    pub degraded: Option<(String, SystemTime)>,
    /// Breakers joined (keyed ones counted as they exist now).
    pub breakers: usize,
    /// Breakers whose cluster probe this replica owns.
    pub probes_owned: usize,
    /// Breakers held open while another replica probes.
    pub probes_deferred: usize,
    /// Store operations that failed or timed out.
    pub errors: u64,
    /// Peer snapshots ignored as unreadable (or beyond the 256th peer).
    pub bad_snapshots: u64,
    /// Breakers opened on peers' reports.
    pub opened_by_peers: u64,
    /// Breakers closed because the probing replica found the dependency recovered.
    pub closed_by_peers: u64,
}

impl SharedBreakers {
    /// Configures shared breakers over `backend`.
    pub fn builder(backend: impl StateBackend) -> SharedBreakersBuilder {
        SharedBreakersBuilder {
            backend: Arc::new(backend),
            replica: None,
            decision: Decision::default(),
            every: Duration::from_secs(1),
            liveness: None,
            op_timeout: Duration::from_millis(250),
            probe_lease: Duration::from_secs(30),
        }
    }

    /// Shares `breaker`'s state. `false` if it already shares through a `SharedBreakers`
    /// (this one or another): a breaker joins one.
    pub fn join(&self, breaker: &CircuitBreakerHandle) -> bool {
        let joined = self.inner.link(&breaker.core);
        if joined {
            lock(&self.inner.singles).push(Arc::downgrade(&breaker.core));
            self.inner.wake.notify_one();
        }
        joined
    }

    /// Shares the state of every breaker of a per-key layer, each under `name/key`: those it
    /// has now, those it makes later (joined on the driver's next period) and the breaker of
    /// requests without a key. The registry stays bounded as configured.
    pub fn join_keyed<K, C>(&self, breakers: &KeyedCircuitBreakerHandle<K, C>)
    where
        K: std::hash::Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
        C: Clone + Send + Sync + 'static,
    {
        lock(&self.inner.keyed).push(Box::new(breakers.cores()));
        self.inner.wake.notify_one();
    }

    /// What it is doing now.
    pub fn status(&self) -> SharedStatus {
        let cores = self.inner.members();
        let gates = |g| {
            cores
                .iter()
                .filter(|c| {
                    c.peer_link()
                        .is_some_and(|l| l.gate.load(Ordering::Acquire) == g)
                })
                .count()
        };
        let c = &self.inner.counters;
        SharedStatus {
            replica: self.inner.replica.to_string(),
            backend: self.inner.backend.describe(),
            degraded: lock(&self.inner.degraded).clone(),
            breakers: cores.len(),
            probes_owned: gates(GATE_OWNER),
            probes_deferred: gates(GATE_PEER),
            errors: c.errors.load(Ordering::Relaxed),
            bad_snapshots: c.bad.load(Ordering::Relaxed),
            opened_by_peers: c.opened.load(Ordering::Relaxed),
            closed_by_peers: c.closed.load(Ordering::Relaxed),
        }
    }

    /// This replica's name.
    pub fn replica(&self) -> &str {
        &self.inner.replica
    }
}

impl Inner {
    /// Links `core` to this `SharedBreakers` (which the link keeps alive); `false` if it is
    /// linked already.
    fn link(self: &Arc<Self>, core: &Arc<Core>) -> bool {
        core.join(Arc::new(PeerLink {
            gate: std::sync::atomic::AtomicU8::new(GATE_LOCAL),
            dirty: std::sync::atomic::AtomicBool::new(true),
            wake: self.wake.clone(),
            recheck: self.every,
            _keep: self.clone(),
        }))
    }

    /// Every joined breaker alive now; keyed breakers made since the last call are linked.
    fn members(self: &Arc<Self>) -> Vec<Arc<Core>> {
        let mut cores: Vec<Arc<Core>> = {
            let mut singles = lock(&self.singles);
            singles.retain(|w| w.strong_count() > 0);
            singles.iter().filter_map(Weak::upgrade).collect()
        };
        for enumerate in lock(&self.keyed).iter() {
            for core in enumerate() {
                let ours = match core.peer_link() {
                    Some(link) => Arc::ptr_eq(&link.wake, &self.wake),
                    None => self.link(&core),
                };
                if ours {
                    cores.push(core);
                }
            }
        }
        cores
    }

    /// The store failed: local-only until a round works again.
    fn degrade(&self, cores: &[Arc<Core>], reason: &str) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        let labels = [(
            rampart_core::registry::INSTANCE_LABEL,
            self.replica.to_string(),
        )];
        metrics::counter!("rampart_circuit_breaker_shared_errors_total", &labels).increment(1);
        metrics::gauge!("rampart_circuit_breaker_shared_degraded", &labels).set(1.0);
        for core in cores {
            if let Some(link) = core.peer_link() {
                link.gate.store(GATE_LOCAL, Ordering::Release);
            }
        }
        let mut degraded = lock(&self.degraded);
        if degraded.is_none() {
            tracing::warn!(target: "rampart::circuit_breaker", replica = %self.replica, backend = %self.backend.describe(), reason, "shared breaker state unreachable: each breaker decides alone until it is back");
        }
        *degraded = Some((reason.to_owned(), SystemTime::now()));
    }

    /// A round worked: shared again.
    fn recover(&self) {
        let mut degraded = lock(&self.degraded);
        if degraded.take().is_some() {
            tracing::info!(target: "rampart::circuit_breaker", replica = %self.replica, "shared breaker state reachable again");
            metrics::gauge!(
                "rampart_circuit_breaker_shared_degraded",
                rampart_core::registry::INSTANCE_LABEL => self.replica.to_string()
            )
            .set(0.0);
        }
    }
}

/// Configures a [`SharedBreakers`]: [`SharedBreakers::builder`].
pub struct SharedBreakersBuilder {
    backend: Arc<dyn StateBackend>,
    replica: Option<String>,
    decision: Decision,
    every: Duration,
    liveness: Option<Duration>,
    op_timeout: Duration,
    probe_lease: Duration,
}

impl fmt::Debug for SharedBreakersBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBreakersBuilder")
            .field("backend", &self.backend.describe())
            .field("replica", &self.replica)
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
}

impl SharedBreakersBuilder {
    /// This replica's name among its peers: 1 to 64 characters of `A-Z a-z 0-9 . _ : -`,
    /// unique per replica (a pod name). Default: `$HOSTNAME` if it is such a name, else
    /// `replica-` and a random number.
    pub fn replica(mut self, name: impl Into<String>) -> Self {
        self.replica = Some(name.into());
        self
    }

    /// How peers' snapshots are judged ([`Decision::default`]: a quorum of 2 or half).
    pub fn decision(mut self, decision: Decision) -> Self {
        self.decision = decision;
        self
    }

    /// How often every snapshot is published and peers' are read (1 s by default; 10 ms to
    /// 1 min). Transitions are published at once in between.
    pub fn publish_every(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    /// How long a snapshot counts after it was published (three periods by default; at least
    /// one period): a replica silent for longer is no longer a peer.
    pub fn liveness(mut self, ttl: Duration) -> Self {
        self.liveness = Some(ttl);
        self
    }

    /// The timeout of each store operation (250 ms by default; at most one period): past it,
    /// the driver goes local-only.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// How long the probe lease outlives the open time (30 s by default; more than one
    /// period): the time the owner has to probe before another replica may take over.
    pub fn probe_lease(mut self, lease: Duration) -> Self {
        self.probe_lease = lease;
        self
    }

    /// Checks the configuration; the `SharedBreakers` and its [`Driver`], to spawn.
    pub fn build(self) -> Result<(SharedBreakers, Driver), ConfigError> {
        let ms = |d: Duration| d.as_millis();
        if self.every < Duration::from_millis(10) || self.every > Duration::from_secs(60) {
            return Err(ConfigError::new(
                WHO,
                "publish_every",
                format!("must be 10 ms to 60 s, got {} ms", ms(self.every)),
            ));
        }
        let ttl = self.liveness.unwrap_or(self.every * 3);
        if ttl < self.every {
            return Err(ConfigError::new(
                WHO,
                "liveness",
                format!(
                    "must be at least publish_every ({} ms), got {} ms",
                    ms(self.every),
                    ms(ttl)
                ),
            ));
        }
        if self.op_timeout.is_zero() || self.op_timeout > self.every {
            return Err(ConfigError::new(
                WHO,
                "timeout",
                format!(
                    "must be above 0 and at most publish_every ({} ms), got {} ms",
                    ms(self.every),
                    ms(self.op_timeout)
                ),
            ));
        }
        if self.probe_lease <= self.every {
            return Err(ConfigError::new(
                WHO,
                "probe_lease",
                format!(
                    "must be more than publish_every ({} ms), got {} ms",
                    ms(self.every),
                    ms(self.probe_lease)
                ),
            ));
        }
        self.decision.validate()?;
        let replica = match self.replica {
            Some(r) if valid_replica(&r) => r,
            Some(r) => {
                return Err(ConfigError::new(
                    WHO,
                    "replica",
                    format!("must be 1 to 64 characters of A-Z a-z 0-9 . _ : -, got {r:?}"),
                ));
            }
            None => std::env::var("HOSTNAME")
                .ok()
                .filter(|h| valid_replica(h))
                .unwrap_or_else(|| format!("replica-{:016x}", fastrand::u64(..))),
        };
        let inner = Arc::new(Inner {
            backend: self.backend,
            replica: replica.into(),
            decision: self.decision,
            every: self.every,
            ttl,
            op_timeout: self.op_timeout,
            probe_lease: self.probe_lease,
            wake: Arc::default(),
            singles: Mutex::default(),
            keyed: Mutex::default(),
            degraded: Mutex::default(),
            counters: Counters::default(),
        });
        let driver = Driver::new(Arc::downgrade(&inner), self.every);
        Ok((SharedBreakers { inner }, driver))
    }

    /// As [`build`](Self::build), with the driver spawned on the current tokio runtime (an
    /// error naming `runtime` outside one).
    pub fn spawn(self) -> Result<SharedBreakers, ConfigError> {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return Err(ConfigError::new(
                WHO,
                "runtime",
                "spawn must be called within a tokio runtime (or use build and spawn the driver)",
            ));
        };
        let (shared, driver) = self.build()?;
        rt.spawn(driver);
        Ok(shared)
    }
}

/// 1 to 64 characters of `A-Z a-z 0-9 . _ : -`.
pub(crate) fn valid_replica(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests;
