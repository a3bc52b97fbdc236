//! [`NatsBreakerState`]: circuit-breaker state shared by every replica through JetStream
//! key-value buckets, a [`StateBackend`] for rampart-circuit-breaker's
//! [`SharedBreakers`](rampart_circuit_breaker::shared::SharedBreakers).

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_nats::{
    ConnectOptions,
    jetstream::{
        self,
        kv::{CreateErrorKind, Operation, Store},
        stream::{self, StorageType},
    },
};
use bytes::Bytes;
use futures_util::StreamExt as _;
use rampart_circuit_breaker::shared::{BackendError, MAX_PEERS, PeerSnapshots, StateBackend};
use rampart_core::{BoxFuture, error::chain_line, sync::lock};
use tokio::time::Instant;

/// At most this many breakers' snapshots are kept from the watch; more are ignored.
const MAX_WATCHED_BREAKERS: usize = 65_536;

/// Configures a [`NatsBreakerState`]: [`NatsBreakerState::builder`].
#[derive(Clone)]
pub struct NatsBreakerStateBuilder {
    url: String,
    bucket: String,
    liveness: Duration,
    replicas: usize,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl fmt::Debug for NatsBreakerStateBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBreakerStateBuilder")
            .field("url", &rampart_core::redact::connection_url(&self.url))
            .field("bucket", &self.bucket)
            .field("liveness", &self.liveness)
            .finish_non_exhaustive()
    }
}

impl NatsBreakerStateBuilder {
    /// The snapshots' bucket (default `rampart_cb`); the probe leases are in `<bucket>_probes`.
    pub fn bucket(mut self, bucket: impl Into<String>) -> Self {
        self.bucket = bucket.into();
        self
    }

    /// How long a snapshot counts (default 3 s: three of `SharedBreakers`' default periods):
    /// the bucket's `max_age`, set when it is created. Use the `SharedBreakers`' liveness.
    pub fn liveness(mut self, liveness: Duration) -> Self {
        self.liveness = liveness;
        self
    }

    /// JetStream replicas of both buckets, when they are created (1 by default).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// How long connecting may take (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one operation may wait for the server (default 250 ms).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Connects, opens (or creates) both buckets and starts watching the snapshots.
    pub async fn connect(self) -> Result<NatsBreakerState, BackendError> {
        let valid_bucket = !self.bucket.is_empty()
            && self.bucket.len() <= 200
            && self
                .bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_bucket {
            return Err(BackendError::new(format!(
                "bad NATS breaker state configuration: bucket must be 1 to 200 characters of \
                 A-Z a-z 0-9 _ -, got {:?}",
                self.bucket
            )));
        }
        for (field, value) in [
            ("liveness", self.liveness),
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
        ] {
            if value.is_zero() {
                return Err(BackendError::new(format!(
                    "bad NATS breaker state configuration: {field} must be more than zero"
                )));
            }
        }
        let (addrs, servers) = crate::connect::addrs(&self.url)
            .map_err(|why| BackendError::new(format!("bad NATS breaker state URL: {why}")))?;
        let describe = format!("{servers} (bucket {})", self.bucket);
        let options = ConnectOptions::new()
            .name("rampart-circuit-breaker")
            .connection_timeout(self.connect_timeout)
            .request_timeout(Some(self.response_timeout));
        let limit = self.connect_timeout.saturating_add(self.response_timeout);
        let client = match tokio::time::timeout(limit, options.connect(addrs)).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                return Err(BackendError::new(format!(
                    "{describe}: connect: {}",
                    chain_line(&e)
                )));
            }
            Err(_) => {
                return Err(BackendError::new(format!(
                    "{describe}: connect: no answer within {limit:?}"
                )));
            }
        };
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(self.response_timeout)
            .ack_timeout(self.response_timeout)
            .build(client);
        let bucket = |name: String, max_age: Duration, what: &str| stream::Config {
            name: format!("KV_{name}"),
            description: Some(format!("rampart circuit breakers: {what}")),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            max_age,
            max_bytes: -1,
            max_message_size: 1024,
            storage: StorageType::Memory,
            num_replicas: self.replicas,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            ..Default::default()
        };
        let open = async {
            let snapshots = crate::connect::open_bucket(
                &jetstream,
                &self.bucket,
                bucket(
                    self.bucket.clone(),
                    self.liveness,
                    "each replica's snapshot",
                ),
            )
            .await?;
            let probes_name = format!("{}_probes", self.bucket);
            let probes = crate::connect::open_bucket(
                &jetstream,
                &probes_name,
                bucket(
                    probes_name.clone(),
                    Duration::from_secs(3600),
                    "probe leases",
                ),
            )
            .await?;
            Ok::<_, String>((snapshots, probes))
        };
        let (snapshots, probes) = match tokio::time::timeout(self.response_timeout * 4, open).await
        {
            Ok(Ok(kvs)) => kvs,
            Ok(Err(why)) => {
                return Err(BackendError::new(format!(
                    "{describe}: open buckets: {why}"
                )));
            }
            Err(_) => {
                return Err(BackendError::new(format!(
                    "{describe}: open buckets: no answer within {:?}",
                    self.response_timeout * 4
                )));
            }
        };
        let watched = Arc::new(Watched::default());
        let watcher = tokio::spawn(watch(snapshots.clone(), Arc::downgrade(&watched)));
        Ok(NatsBreakerState {
            snapshots,
            probes,
            describe,
            liveness: self.liveness,
            watched,
            observed: Mutex::default(),
            watcher,
        })
    }
}

/// Circuit-breaker state on NATS JetStream (nats-server 2.9 or later, with JetStream), shared
/// by every replica that uses the same bucket: the [`StateBackend`] of a
/// [`SharedBreakers`](rampart_circuit_breaker::shared::SharedBreakers).
///
/// # Layout
///
/// Two key-value buckets, in memory storage (state that is republished every period needs no
/// disk), created on first connect:
///
/// | bucket | key | value |
/// |---|---|---|
/// | `rampart_cb` (`max_age` = liveness) | `s.<breaker>.<replica>` | the replica's [snapshot](rampart_circuit_breaker::shared::Snapshot#format-version-1) |
/// | `rampart_cb_probes` | `p.<breaker>` | `<replica> <lease ms>`: the probe lease |
///
/// In keys, every byte of a name but `A-Z a-z 0-9 _ -` is written `=XX` (hex). A replica that
/// stops publishing drops out when its key reaches the bucket's `max_age` (the server's
/// clock).
///
/// **Watched, not polled**: a watch of `s.>` keeps every snapshot in memory as it changes, so
/// reading peers costs no round trip; publishing is one `put`. While the watch is down, reading
/// peers fails (and `SharedBreakers` goes local-only) until it is back.
///
/// **Probe leases** are taken with `create` (fails if the key exists) and renewed or taken
/// over with `update` at the revision read (compare-and-set). JetStream 2.9 has no per-key
/// TTL, so a lease's expiry is judged by each replica from when it first saw the lease's
/// revision: a replica takes over a lease only once it has seen the same revision for the
/// lease's whole time. Clocks need not agree; a take-over comes at most one period late.
pub struct NatsBreakerState {
    snapshots: Store,
    probes: Store,
    describe: String,
    liveness: Duration,
    watched: Arc<Watched>,
    /// Lease key → (revision, when this replica first saw it).
    observed: Mutex<HashMap<String, (u64, Instant)>>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Drop for NatsBreakerState {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl fmt::Debug for NatsBreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBreakerState")
            .field("store", &self.describe)
            .finish_non_exhaustive()
    }
}

/// What the watch saw.
#[derive(Default)]
struct Watched {
    up: AtomicBool,
    /// Breaker key → replica key → (snapshot, when it arrived).
    snapshots: Mutex<HashMap<String, Replicas>>,
}

/// One breaker's snapshots: replica key → (snapshot, when it arrived).
type Replicas = HashMap<String, (Bytes, Instant)>;

/// Keeps `watched` up to date from the snapshots' bucket; re-watches after a failure.
async fn watch(kv: Store, watched: std::sync::Weak<Watched>) {
    loop {
        if let Ok(mut entries) = kv.watch_with_history("s.>").await {
            if let Some(w) = watched.upgrade() {
                w.up.store(true, Ordering::Release);
            }
            while let Some(entry) = entries.next().await {
                let Ok(entry) = entry else { break };
                let Some(w) = watched.upgrade() else { return };
                let Some((breaker, replica)) =
                    entry.key.strip_prefix("s.").and_then(|k| k.split_once('.'))
                else {
                    continue;
                };
                let mut all = lock(&w.snapshots);
                if entry.operation == Operation::Put {
                    if all.len() >= MAX_WATCHED_BREAKERS && !all.contains_key(breaker) {
                        continue;
                    }
                    all.entry(breaker.to_owned())
                        .or_default()
                        .insert(replica.to_owned(), (entry.value, Instant::now()));
                } else if let Some(replicas) = all.get_mut(breaker) {
                    replicas.remove(replica);
                }
            }
        }
        match watched.upgrade() {
            Some(w) => w.up.store(false, Ordering::Release),
            None => return,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl NatsBreakerState {
    /// Connects to `url` (`nats://host:port`, several separated by commas) with the defaults.
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        Self::builder(url).connect().await
    }

    /// Configures the connection to `url`.
    pub fn builder(url: impl Into<String>) -> NatsBreakerStateBuilder {
        NatsBreakerStateBuilder {
            url: url.into(),
            bucket: "rampart_cb".to_owned(),
            liveness: Duration::from_secs(3),
            replicas: 1,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_millis(250),
        }
    }

    fn failed(
        &self,
        what: &str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> BackendError {
        BackendError::new(format!("{} ({what}): {}", self.describe, chain_line(&e)))
    }
}

/// `name` as one key token: `A-Z a-z 0-9 _ -` kept, every other byte `=XX`.
pub(crate) fn token(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// The name a [`token`] was made from.
pub(crate) fn untoken(token: &str) -> Option<String> {
    let mut out = Vec::with_capacity(token.len());
    let mut bytes = token.bytes();
    while let Some(b) = bytes.next() {
        if b == b'=' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

impl StateBackend for NatsBreakerState {
    fn publish<'a>(
        &'a self,
        breaker: &'a str,
        replica: &'a str,
        snapshot: &'a [u8],
        _ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let key = format!("s.{}.{}", token(breaker), token(replica));
            self.snapshots
                .put(key, Bytes::copy_from_slice(snapshot))
                .await
                .map(drop)
                .map_err(|e| self.failed("publish", e))
        })
    }

    fn peers<'a>(&'a self, breaker: &'a str) -> BoxFuture<'a, Result<PeerSnapshots, BackendError>> {
        let result = if self.watched.up.load(Ordering::Acquire) {
            let now = Instant::now();
            let all = lock(&self.watched.snapshots);
            Ok(all
                .get(&token(breaker))
                .map(|replicas| {
                    replicas
                        .iter()
                        .filter(|(_, (_, at))| now.saturating_duration_since(*at) < self.liveness)
                        .take(MAX_PEERS + 1)
                        .filter_map(|(who, (snap, _))| Some((untoken(who)?, snap.to_vec())))
                        .collect()
                })
                .unwrap_or_default())
        } else {
            Err(BackendError::new(format!(
                "{}: the watch of the snapshots is down",
                self.describe
            )))
        };
        Box::pin(std::future::ready(result))
    }

    fn acquire_probe<'a>(
        &'a self,
        breaker: &'a str,
        replica: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move {
            let key = format!("p.{}", token(breaker));
            let value = Bytes::from(format!("{replica} {}", ttl.as_millis()));
            let entry = self
                .probes
                .entry(key.as_str())
                .await
                .map_err(|e| self.failed("read the probe lease", e))?;
            let Some(entry) = entry.filter(|e| e.operation == Operation::Put) else {
                return match self.probes.create(key.as_str(), value).await {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(self.failed("take the probe lease", e)),
                };
            };
            let text = String::from_utf8_lossy(&entry.value);
            let (holder, lease) = text.split_once(' ').unwrap_or((&text, ""));
            let lease = Duration::from_millis(lease.parse().unwrap_or(30_000));
            if holder != replica {
                let now = Instant::now();
                let mut observed = lock(&self.observed);
                let seen = observed.entry(key.clone()).or_insert((entry.revision, now));
                if seen.0 != entry.revision {
                    *seen = (entry.revision, now);
                }
                if now.saturating_duration_since(seen.1) < lease {
                    return Ok(false);
                }
            }
            // Renewed by its holder, or taken over once expired: only at the revision read.
            Ok(self
                .probes
                .update(key.as_str(), value, entry.revision)
                .await
                .is_ok())
        })
    }

    fn release_probe<'a>(
        &'a self,
        breaker: &'a str,
        replica: &'a str,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let key = format!("p.{}", token(breaker));
            let entry = self
                .probes
                .entry(key.as_str())
                .await
                .map_err(|e| self.failed("read the probe lease", e))?;
            if let Some(entry) = entry.filter(|e| e.operation == Operation::Put)
                && entry.value.split(|b| *b == b' ').next() == Some(replica.as_bytes())
            {
                // Someone else's newer revision stays.
                let _ = self
                    .probes
                    .delete_expect_revision(key.as_str(), Some(entry.revision))
                    .await;
            }
            Ok(())
        })
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_one_key_token_and_reads_back() {
        for name in [
            "payments",
            "hosts/\"db.internal:5432\"",
            "pod-a.eu:1",
            "é{}",
        ] {
            let t = token(name);
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-=".contains(&b)),
                "{t}"
            );
            assert_eq!(untoken(&t).as_deref(), Some(name));
        }
        assert_eq!(untoken("=G1"), None);
        assert_eq!(untoken("=4"), None);
    }
}
