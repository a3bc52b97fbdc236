//! [`MemoryStore`]: a bounded in-process store, for a single server instance and for tests.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use rampart_core::{
    clock::{Instant, SharedClock, default_clock, saturating_add},
    error::ConfigError,
};

use crate::{
    fingerprint::Fingerprint,
    response::StoredResponse,
    store::{
        Begin, BoxFuture, IdempotencyStore, Lease, LeaseToken, StoreError, StoreErrorKind, StoreKey,
    },
};

/// Leases and responses in memory, bounded by entry count and by bytes.
///
/// Only for one process: replicas behind a load balancer each have their own, so a retry that
/// lands on another replica runs again. Use a shared store (Redis) there.
///
/// # Bounds and eviction
///
/// - At most [`max_entries`](MemoryStoreBuilder::max_entries) entries (10 000 by default),
///   in flight or completed, and at most [`max_bytes`](MemoryStoreBuilder::max_bytes) bytes
///   of stored responses (64 MiB by default; a response counts its
///   [`encoded_len`](StoredResponse::encoded_len) plus its key).
/// - Expired entries (a lease past its TTL, a response past its retention) are dropped first,
///   on every call, in order of expiry: no background task.
/// - When still full, **completed** entries are evicted, the one closest to its expiry first
///   (with one retention, the oldest). A retry of an evicted key runs the request again: size
///   the store for your peak keyed-request rate × retention, or turn eviction off with
///   [`evict_completed(false)`](MemoryStoreBuilder::evict_completed) to refuse instead.
/// - An **in-flight** lease is never evicted: doing so would let a concurrent retry run the
///   request twice. When the entries are all live leases, `begin` fails with
///   [`StoreErrorKind::Full`], which the layer answers with `503` problem+json.
/// - A single response larger than `max_bytes` is refused with [`StoreErrorKind::Full`]
///   by `complete` (the layer then releases the lease and says the response was not stored).
///
/// # Shards
///
/// A store of at least 16 384 entries is split into 16 shards by a hash of the key, each with
/// its own lock and a sixteenth of both bounds, so that the worker threads of a busy server do
/// not queue on one lock (on two cores under load, one lock cost a third of a keyed POST's
/// throughput in context switches). The trade-offs: eviction takes the oldest entry *of the
/// key's shard*, not of the whole store; a shard can be full of live leases (and refuse) a
/// little before the whole store would be; and the largest response a sharded store takes is a
/// sixteenth of `max_bytes` (4 MiB of the default 64 MiB). A smaller store is one shard, with
/// the bounds exactly as configured.
///
/// Time is read from an injected clock (tokio's by default, so TTLs follow paused time in
/// tests).
///
/// ```
/// use rampart_idempotency::MemoryStore;
///
/// let store = MemoryStore::builder().max_entries(50_000).max_bytes(256 << 20).build().unwrap();
/// assert!(MemoryStore::bounded(0).unwrap_err().to_string().contains("max_entries"));
/// # let _ = store;
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    shards: Box<[Mutex<Inner>]>,
    /// Picks a key's shard (random keys, so that a client cannot aim at one).
    hasher: std::hash::RandomState,
    /// The bounds as configured, for the whole store.
    max_entries: usize,
    max_bytes: usize,
    /// The bounds of one shard.
    shard_entries: usize,
    shard_bytes: usize,
    evict_completed: bool,
    clock: SharedClock,
}

/// What a [`MemoryStore`] holds now: [`MemoryStore::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryStats {
    /// Entries in flight (leases).
    pub in_flight: usize,
    /// Completed entries (stored responses).
    pub completed: usize,
    /// Bytes of stored responses.
    pub bytes: usize,
    /// Completed entries evicted before their retention ended, since the store was made.
    pub evicted: u64,
}

/// Stores of at least this many entries are sharded.
const SHARDED_FROM: usize = 16_384;
/// The shards of a sharded store.
const SHARDS: usize = 16;

/// The maps share each key (one allocation per key, not one per map).
#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<Arc<str>, Entry>,
    /// In-flight entries by expiry: `(expires, seq)` → key.
    leases: BTreeMap<(Instant, u64), Arc<str>>,
    /// Completed entries by expiry.
    completed: BTreeMap<(Instant, u64), Arc<str>>,
    bytes: usize,
    seq: u64,
    evicted: u64,
}

#[derive(Debug)]
struct Entry {
    /// The key, as the expiry maps hold it.
    key: Arc<str>,
    fingerprint: Fingerprint,
    expires: Instant,
    seq: u64,
    state: State,
}

#[derive(Debug)]
enum State {
    InFlight(LeaseToken),
    Completed {
        response: Box<StoredResponse>,
        size: usize,
    },
}

/// Configures a [`MemoryStore`].
#[derive(Debug)]
pub struct MemoryStoreBuilder {
    max_entries: usize,
    max_bytes: usize,
    evict_completed: bool,
    clock: Option<SharedClock>,
}

impl MemoryStoreBuilder {
    /// At most `n` entries, in flight or completed (10 000 by default; at least 1).
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }

    /// At most `n` bytes of stored responses (64 MiB by default; at least 1).
    pub fn max_bytes(mut self, n: usize) -> Self {
        self.max_bytes = n;
        self
    }

    /// Whether completed entries may be evicted before their retention ends to make room
    /// (`true` by default). With `false`, a full store refuses new keys with
    /// [`StoreErrorKind::Full`] (`503`) until entries expire: no retry ever runs twice, but a
    /// burst of keys locks the route out for up to the retention.
    pub fn evict_completed(mut self, evict: bool) -> Self {
        self.evict_completed = evict;
        self
    }

    /// Reads time from `clock` (tokio's clock by default).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Checks the configuration: both bounds at least 1.
    pub fn build(self) -> Result<MemoryStore, ConfigError> {
        if self.max_entries == 0 {
            return Err(ConfigError::new(
                "memory idempotency store",
                "max_entries",
                "must be at least 1, got 0",
            ));
        }
        if self.max_bytes == 0 {
            return Err(ConfigError::new(
                "memory idempotency store",
                "max_bytes",
                "must be at least 1, got 0",
            ));
        }
        let shards = if self.max_entries >= SHARDED_FROM {
            SHARDS
        } else {
            1
        };
        Ok(MemoryStore {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            hasher: std::hash::RandomState::new(),
            max_entries: self.max_entries,
            max_bytes: self.max_bytes,
            shard_entries: self.max_entries.div_ceil(shards),
            shard_bytes: self.max_bytes.div_ceil(shards),
            evict_completed: self.evict_completed,
            clock: self.clock.unwrap_or_else(default_clock),
        })
    }
}

impl MemoryStore {
    /// A builder with the defaults: 10 000 entries, 64 MiB, eviction of completed entries,
    /// tokio's clock.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            max_entries: 10_000,
            max_bytes: 64 << 20,
            evict_completed: true,
            clock: None,
        }
    }

    /// A store of at most `max_entries` entries, with the other defaults.
    pub fn bounded(max_entries: usize) -> Result<Self, ConfigError> {
        Self::builder().max_entries(max_entries).build()
    }

    /// What the store holds now (expired entries not yet dropped included).
    pub fn stats(&self) -> MemoryStats {
        let mut stats = MemoryStats::default();
        for shard in &self.shards {
            let inner = rampart_core::sync::lock(shard);
            stats.in_flight += inner.leases.len();
            stats.completed += inner.completed.len();
            stats.bytes += inner.bytes;
            stats.evicted += inner.evicted;
        }
        stats
    }

    /// How an error names a shard's share of the bounds: nothing for a store of one shard.
    fn shard_note(&self) -> String {
        match self.shards.len() {
            1 => String::new(),
            n => format!(" in the key's shard, one of {n}"),
        }
    }

    /// The shard of `key`, locked.
    fn lock(&self, key: &StoreKey) -> std::sync::MutexGuard<'_, Inner> {
        let shard = if self.shards.len() == 1 {
            0
        } else {
            use std::hash::BuildHasher as _;
            (self.hasher.hash_one(key.as_str()) as usize) % self.shards.len()
        };
        // Every change below leaves the maps consistent before anything that could panic.
        rampart_core::sync::lock(&self.shards[shard])
    }

    fn error(&self, kind: StoreErrorKind, why: String) -> StoreError {
        StoreError::new(self.describe(), kind).with_source(why)
    }

    fn begin_now(
        &self,
        key: &StoreKey,
        fingerprint: &Fingerprint,
        lease: Lease,
    ) -> Result<Begin, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock(key);
        inner.expire(now);
        if let Some(e) = inner.entries.get(key.as_str()) {
            if e.fingerprint != *fingerprint {
                return Ok(Begin::Mismatch);
            }
            return Ok(match &e.state {
                State::InFlight(_) => Begin::InFlight {
                    expires_in: e.expires.saturating_duration_since(now),
                },
                State::Completed { response, .. } => Begin::Completed(response.clone()),
            });
        }
        while inner.entries.len() >= self.shard_entries {
            if !(self.evict_completed && inner.evict_oldest()) {
                return Err(self.error(
                    StoreErrorKind::Full,
                    format!(
                        "{} entries{}, {} of them in flight",
                        inner.entries.len(),
                        self.shard_note(),
                        inner.leases.len()
                    ),
                ));
            }
        }
        let expires = saturating_add(now, lease.ttl);
        let seq = inner.next_seq();
        let shared: Arc<str> = Arc::from(key.as_str());
        inner.leases.insert((expires, seq), shared.clone());
        inner.entries.insert(
            shared.clone(),
            Entry {
                key: shared,
                fingerprint: *fingerprint,
                expires,
                seq,
                state: State::InFlight(lease.token),
            },
        );
        Ok(Begin::Acquired)
    }

    fn complete_now(
        &self,
        key: &StoreKey,
        token: LeaseToken,
        response: &StoredResponse,
        retention: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock(key);
        inner.expire(now);
        let size = response.encoded_len() + key.as_str().len();
        let held = |e: &Entry| matches!(e.state, State::InFlight(t) if t == token);
        if inner.bytes + size > self.shard_bytes {
            // Room must be made first; a lost lease is told before anything is evicted.
            if !inner.entries.get(key.as_str()).is_some_and(held) {
                return Ok(false);
            }
            if size > self.shard_bytes {
                return Err(self.error(
                    StoreErrorKind::Full,
                    format!(
                        "a response of {size} bytes exceeds max_bytes ({}{})",
                        self.max_bytes,
                        self.shard_note()
                    ),
                ));
            }
            while inner.bytes + size > self.shard_bytes {
                if !(self.evict_completed && inner.evict_oldest()) {
                    return Err(self.error(
                        StoreErrorKind::Full,
                        format!(
                            "{} of {} bytes used{}; {size} more needed",
                            inner.bytes,
                            self.shard_bytes,
                            self.shard_note()
                        ),
                    ));
                }
            }
        }
        let expires = saturating_add(now, retention);
        let seq = inner.next_seq();
        let inner = &mut *inner;
        // One lookup on the common path (no room to make): eviction removes completed entries
        // only, so a lease held above is still held here.
        let Some(e) = inner.entries.get_mut(key.as_str()).filter(|e| held(e)) else {
            return Ok(false);
        };
        inner.leases.remove(&(e.expires, e.seq));
        inner.completed.insert((expires, seq), e.key.clone());
        inner.bytes += size;
        e.expires = expires;
        e.seq = seq;
        e.state = State::Completed {
            // Its own bytes, not slices of a connection's buffer: see `compacted`.
            response: Box::new(response.compacted()),
            size,
        };
        Ok(true)
    }

    fn release_now(&self, key: &StoreKey, token: LeaseToken) -> bool {
        let now = self.clock.now();
        let mut inner = self.lock(key);
        inner.expire(now);
        match inner.entries.get(key.as_str()) {
            Some(Entry {
                state: State::InFlight(t),
                expires,
                seq,
                ..
            }) if *t == token => {
                let at = (*expires, *seq);
                inner.leases.remove(&at);
                inner.entries.remove(key.as_str());
                true
            }
            _ => false,
        }
    }
}

impl Inner {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Drops every entry whose lease or retention has passed.
    fn expire(&mut self, now: Instant) {
        while let Some(entry) = self.leases.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.entries.remove(&key);
        }
        while let Some(entry) = self.completed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.remove_completed(&key);
        }
    }

    /// Evicts the completed entry closest to its expiry; `false` if there is none.
    fn evict_oldest(&mut self) -> bool {
        let Some((_, key)) = self.completed.pop_first() else {
            return false;
        };
        self.remove_completed(&key);
        self.evicted += 1;
        metrics::counter!("rampart_idempotency_memory_evictions_total").increment(1);
        tracing::debug!(
            target: "rampart::idempotency",
            key = %key,
            "stored response evicted before its retention ended (memory store full)"
        );
        true
    }

    fn remove_completed(&mut self, key: &str) {
        if let Some(Entry {
            state: State::Completed { size, .. },
            ..
        }) = self.entries.remove(key)
        {
            self.bytes -= size;
        }
    }
}

impl IdempotencyStore for MemoryStore {
    fn describe(&self) -> String {
        format!(
            "memory({} entries, {} bytes)",
            self.max_entries, self.max_bytes
        )
    }

    fn begin<'a>(
        &'a self,
        key: &'a StoreKey,
        fingerprint: &'a Fingerprint,
        lease: Lease,
    ) -> BoxFuture<'a, Result<Begin, StoreError>> {
        Box::pin(async move { self.begin_now(key, fingerprint, lease) })
    }

    fn complete<'a>(
        &'a self,
        key: &'a StoreKey,
        token: LeaseToken,
        response: &'a StoredResponse,
        retention: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move { self.complete_now(key, token, response, retention) })
    }

    fn release<'a>(
        &'a self,
        key: &'a StoreKey,
        token: LeaseToken,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move { Ok(self.release_now(key, token)) })
    }
}

#[cfg(test)]
mod tests;
