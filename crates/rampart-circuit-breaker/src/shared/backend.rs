//! [`StateBackend`]: where replicas' snapshots meet, and [`MemoryBackend`], one in memory.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use rampart_core::{BoxFuture, sync::lock};
use tokio::time::Instant;

/// A store of breaker snapshots and probe leases that every replica reaches. Implemented by
/// `rampart_redis::RedisBreakerState` (a hash per breaker) and by [`MemoryBackend`] (one
/// process: tests, demos).
///
/// A backend keeps, per breaker, each replica's latest snapshot until its `ttl` runs out (a
/// replica that stops publishing drops out), and at most one probe lease. Expiry is judged by
/// the store's own time, so replicas' clocks need not agree. Every call is made by the
/// [`SharedBreakers`](super::SharedBreakers) driver in the background, under a timeout; none
/// is ever on a request's path.
pub trait StateBackend: Send + Sync + 'static {
    /// Keeps `snapshot` as `replica`'s view of `breaker` for `ttl`.
    fn publish<'a>(
        &'a self,
        breaker: &'a str,
        replica: &'a str,
        snapshot: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BackendError>>;

    /// Every replica's live snapshot of `breaker`, as `(replica, snapshot)`, in any order
    /// (this replica's own included: the driver skips it).
    fn peers<'a>(&'a self, breaker: &'a str) -> BoxFuture<'a, Result<PeerSnapshots, BackendError>>;

    /// Takes (or, for the replica that holds it, renews) the probe lease of `breaker` for
    /// `ttl`: `true` if `replica` holds it now, `false` if another does.
    fn acquire_probe<'a>(
        &'a self,
        breaker: &'a str,
        replica: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, BackendError>>;

    /// Gives up the probe lease of `breaker` if `replica` holds it.
    fn release_probe<'a>(
        &'a self,
        breaker: &'a str,
        replica: &'a str,
    ) -> BoxFuture<'a, Result<(), BackendError>>;

    /// What this backend is, for logs and health (`redis://127.0.0.1:6379 prefix rampart`);
    /// no credentials.
    fn describe(&self) -> String;
}

/// Every replica's snapshot of one breaker, as [`StateBackend::peers`] returns them:
/// `(replica, snapshot)`.
pub type PeerSnapshots = Vec<(String, Vec<u8>)>;

/// A [`StateBackend`] operation that failed: the store is unreachable, too slow, or answered
/// with an error.
#[derive(Debug)]
pub struct BackendError {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl BackendError {
    /// An error saying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// An error saying `message`, caused by `source`.
    pub fn with_source(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A [`StateBackend`] in this process's memory: for tests and demos of several "replicas"
/// (several [`SharedBreakers`](super::SharedBreakers)) in one process. Clones share the
/// store. Time is tokio's, so TTLs follow paused time.
///
/// [`set_unavailable`](Self::set_unavailable) makes every operation fail, as an unreachable
/// store would.
#[derive(Clone, Default)]
pub struct MemoryBackend {
    inner: Arc<Mutex<Memory>>,
}

#[derive(Default)]
struct Memory {
    /// breaker → replica → (snapshot, expires).
    snapshots: HashMap<String, HashMap<String, (Vec<u8>, Instant)>>,
    /// breaker → (holder, expires).
    probes: HashMap<String, (String, Instant)>,
    unavailable: bool,
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = lock(&self.inner);
        f.debug_struct("MemoryBackend")
            .field("breakers", &m.snapshots.len())
            .field("unavailable", &m.unavailable)
            .finish()
    }
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every operation fail (`true`) or work again (`false`).
    pub fn set_unavailable(&self, unavailable: bool) {
        lock(&self.inner).unavailable = unavailable;
    }

    /// Who holds `breaker`'s probe lease now.
    pub fn probe_holder(&self, breaker: &str) -> Option<String> {
        let now = Instant::now();
        lock(&self.inner)
            .probes
            .get(breaker)
            .filter(|(_, until)| *until > now)
            .map(|(who, _)| who.clone())
    }

    fn with<T>(&self, f: impl FnOnce(&mut Memory, Instant) -> T) -> Result<T, BackendError> {
        let mut m = lock(&self.inner);
        if m.unavailable {
            return Err(BackendError::new("the memory backend is set unavailable"));
        }
        Ok(f(&mut m, Instant::now()))
    }
}

impl StateBackend for MemoryBackend {
    fn publish<'a>(
        &'a self,
        breaker: &'a str,
        replica: &'a str,
        snapshot: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        let r = self.with(|m, now| {
            m.snapshots.entry(breaker.to_owned()).or_default().insert(
                replica.to_owned(),
                (
                    snapshot.to_vec(),
                    rampart_core::clock::saturating_add(now, ttl),
                ),
            );
        });
        Box::pin(std::future::ready(r))
    }

    fn peers<'a>(&'a self, breaker: &'a str) -> BoxFuture<'a, Result<PeerSnapshots, BackendError>> {
        let r = self.with(|m, now| {
            let Some(all) = m.snapshots.get_mut(breaker) else {
                return Vec::new();
            };
            all.retain(|_, (_, until)| *until > now);
            all.iter()
                .map(|(who, (snap, _))| (who.clone(), snap.clone()))
                .collect()
        });
        Box::pin(std::future::ready(r))
    }

    fn acquire_probe<'a>(
        &'a self,
        breaker: &'a str,
        replica: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        let r = self.with(|m, now| {
            let until = rampart_core::clock::saturating_add(now, ttl);
            match m.probes.get_mut(breaker) {
                Some((who, expires)) if *expires > now && who != replica => false,
                Some(held) => {
                    *held = (replica.to_owned(), until);
                    true
                }
                None => {
                    m.probes
                        .insert(breaker.to_owned(), (replica.to_owned(), until));
                    true
                }
            }
        });
        Box::pin(std::future::ready(r))
    }

    fn release_probe<'a>(
        &'a self,
        breaker: &'a str,
        replica: &'a str,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        let r = self.with(|m, _| {
            if m.probes.get(breaker).is_some_and(|(who, _)| who == replica) {
                m.probes.remove(breaker);
            }
        });
        Box::pin(std::future::ready(r))
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}
