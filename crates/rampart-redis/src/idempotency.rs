//! [`RedisIdempotencyStore`]: rampart-idempotency's [`IdempotencyStore`] on Redis, shared by
//! every replica of a service, and its [`RedisIdempotencyStoreBuilder`].

mod scripts;

use std::{fmt, future::Future, time::Duration};

use rampart_core::error::ConfigError;
use rampart_idempotency::{
    Begin, BoxFuture, Fingerprint, IdempotencyStore, Lease, LeaseToken, StoreError, StoreErrorKind,
    StoreKey, StoredResponse,
};
use redis::{RedisError, RedisResult, Value, aio::ConnectionManager};

use self::scripts::Scripts;
use crate::{
    connect::ConnectFailure,
    error::{Class, classify},
};

const COMPONENT: &str = "redis idempotency store";

/// The longest TTL sent to Redis, in milliseconds (about 35 000 years): Redis refuses an expiry
/// that overflows when added to its clock.
const MAX_TTL_MS: u64 = 1 << 50;

/// Keys removed per `UNLINK` (and asked for per `SCAN` page) by
/// [`clear`](RedisIdempotencyStore::clear).
const CLEAR_PAGE: usize = 1000;

/// Builds a [`RedisIdempotencyStore`]: made by [`RedisIdempotencyStore::builder`], connects
/// with [`connect`](Self::connect).
///
/// ```no_run
/// # async fn demo() -> Result<(), rampart_idempotency::StoreError> {
/// use std::time::Duration;
/// use rampart_redis::RedisIdempotencyStore;
///
/// let store = RedisIdempotencyStore::builder("redis://127.0.0.1:6379/0")
///     .prefix("billing:idem")
///     .connect_timeout(Duration::from_secs(1))
///     .response_timeout(Duration::from_millis(250))
///     .connect()
///     .await?;
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisIdempotencyStoreBuilder {
    url: String,
    prefix: String,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl fmt::Debug for RedisIdempotencyStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: show it without.
        f.debug_struct("RedisIdempotencyStoreBuilder")
            .field("url", &rampart_core::redact::connection_url(&self.url))
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

impl RedisIdempotencyStoreBuilder {
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "rampart:idem";
    /// The default time to establish a connection.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    /// The default time to wait for an answer: every keyed request waits for the store, so a
    /// Redis that stopped answering should be reported (`503`, or fail-open) quickly.
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

    fn new(url: String) -> Self {
        Self {
            url,
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
        }
    }

    /// The prefix of every entry's key (`<prefix>:<StoreKey>`); default `rampart:idem`. Stores
    /// with different prefixes in one database are independent, unless one prefix is another
    /// followed by `:` and a scope (`g`, `c`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long establishing a connection may take (default 2 s); `connect` fails with
    /// [`StoreErrorKind::Unavailable`] after about that long, and so does an operation that
    /// finds the connection lost and cannot re-establish it within its response timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one operation may wait for Redis (default 1 s), reconnecting included; then it
    /// fails with [`StoreErrorKind::Unavailable`]. Every keyed request waits this long at most
    /// for each of its round trips when Redis stops answering.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.prefix.is_empty() {
            return Err(ConfigError::new(COMPONENT, "prefix", "must not be empty"));
        }
        for (field, value) in [
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(
                    COMPONENT,
                    field,
                    "must be more than zero, got 0s",
                ));
            }
        }
        Ok(())
    }

    /// Connects, loads the store's scripts (so that each operation is one `EVALSHA`), and
    /// logs a warning if Redis may evict keys (`maxmemory-policy` other than `noeviction`,
    /// when `CONFIG GET` is allowed).
    ///
    /// Fails with [`StoreErrorKind::Other`] for a bad URL or setting (the error names it; a
    /// password in the URL is never shown) and for refused credentials, and with
    /// [`StoreErrorKind::Unavailable`] if Redis does not answer within about the connect
    /// timeout plus the response timeout.
    pub async fn connect(self) -> Result<RedisIdempotencyStore, StoreError> {
        let early_name = crate::connect::early_name(&self.url, &self.prefix);
        self.validate().map_err(|e| {
            StoreError::new(early_name.clone(), StoreErrorKind::Other).with_source(e)
        })?;
        let (mut conn, describe) = crate::connect::connect(
            &self.url,
            &self.prefix,
            self.connect_timeout,
            self.response_timeout,
        )
        .await
        .map_err(|(name, failure)| match failure {
            ConnectFailure::BadUrl(why) => {
                StoreError::new(name, StoreErrorKind::Other).with_source(why)
            }
            ConnectFailure::Redis(e) => from_redis(&name, e),
            ConnectFailure::TimedOut(limit) => timed_out(&name, "connect", limit),
        })?;

        let scripts = Scripts::new();
        crate::connect::load_scripts(&mut conn, scripts.all(), self.response_timeout)
            .await
            .map_err(|failure| match failure {
                ConnectFailure::Redis(e) => from_redis(&describe, e),
                _ => timed_out(&describe, "connect", self.response_timeout),
            })?;
        // Best effort: managed Redis often refuses CONFIG.
        let policy = tokio::time::timeout(
            self.response_timeout,
            redis::cmd("CONFIG")
                .arg("GET")
                .arg("maxmemory-policy")
                .query_async::<Vec<String>>(&mut conn),
        )
        .await;
        if let Ok(Ok(reply)) = policy
            && let Some(policy) = reply.get(1).filter(|p| *p != "noeviction")
        {
            tracing::warn!(
                store = %describe, policy = %policy,
                "Redis may evict keys under memory pressure (maxmemory-policy is not \
                 noeviction): an evicted lease lets a retry run its request a second time"
            );
        }
        tracing::debug!(store = %describe, "connected to the Redis idempotency store");
        Ok(RedisIdempotencyStore {
            conn,
            scripts,
            prefix: self.prefix,
            describe,
            response_timeout: self.response_timeout,
        })
    }
}

/// An [`IdempotencyStore`] on Redis (5.0 or later), shared by every replica that connects to
/// it with the same prefix. See the [crate docs](crate#idempotency-store) for the layout, the
/// round trips and what Redis must be configured with.
///
/// ```no_run
/// use std::sync::Arc;
/// use rampart_idempotency::{IdempotencyLayer, KeyPolicy};
/// use rampart_redis::RedisIdempotencyStore;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisIdempotencyStore::connect("redis://127.0.0.1:6379/0").await?;
/// let layer = IdempotencyLayer::builder(Arc::new(store))
///     .name("charges")
///     .policy(KeyPolicy::Required)
///     .build()?;
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
pub struct RedisIdempotencyStore {
    conn: ConnectionManager,
    scripts: Scripts,
    prefix: String,
    describe: String,
    response_timeout: Duration,
}

impl fmt::Debug for RedisIdempotencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisIdempotencyStore")
            .field("store", &self.describe)
            .field("response_timeout", &self.response_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisIdempotencyStore {
    /// Connects to the Redis at `url` (`redis://[[user]:password@]host[:port][/db]`, or
    /// `redis+unix:///path?db=N`) with the default settings: prefix `rampart:idem`, 2 s to
    /// connect and 1 s per answer. See [`builder`](Self::builder) for the others and
    /// [`RedisIdempotencyStoreBuilder::connect`] for the errors.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).connect().await
    }

    /// A builder for a store on the Redis at `url`.
    pub fn builder(url: impl Into<String>) -> RedisIdempotencyStoreBuilder {
        RedisIdempotencyStoreBuilder::new(url.into())
    }

    /// The prefix of the store's keys.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key of `key`'s entry: `<prefix>:<key.as_str()>`, e.g.
    /// `rampart:idem:g:order-42`; for `redis-cli` (`HGETALL`, `PTTL`) and tests.
    pub fn entry_key(&self, key: &StoreKey) -> String {
        let id = key.as_str();
        let mut out = String::with_capacity(self.prefix.len() + 1 + id.len());
        out.push_str(&self.prefix);
        out.push(':');
        out.push_str(id);
        out
    }

    /// Removes every entry of this store (every key starting with `<prefix>:`, found with
    /// `SCAN`), in flight or completed, and returns how many it removed. For tests and for
    /// retiring a prefix: a lease removed while its request runs lets a retry run it again.
    pub async fn clear(&self) -> Result<u64, StoreError> {
        let pattern = format!("{}:*", glob_escape(&self.prefix));
        let mut conn = self.conn.clone();
        let mut cursor = 0u64;
        let mut removed = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = self
                .run("clear", async {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(CLEAR_PAGE)
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            if !keys.is_empty() {
                let n: u64 = self
                    .run("clear", async {
                        redis::cmd("UNLINK").arg(&keys).query_async(&mut conn).await
                    })
                    .await?;
                removed += n;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    /// Runs `fut` within the response timeout.
    async fn run<T>(
        &self,
        what: &str,
        fut: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.response_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(from_redis(&self.describe, e)),
            Err(_) => Err(timed_out(&self.describe, what, self.response_timeout)),
        }
    }

    fn corrupt(&self, why: impl Into<String>) -> StoreError {
        StoreError::new(self.describe.clone(), StoreErrorKind::Corrupt).with_source(why.into())
    }

    /// What the `begin` script's reply says.
    fn parse_begin(&self, entry: &str, reply: Value) -> Result<Begin, StoreError> {
        let unexpected = || self.corrupt(format!("unexpected reply to begin on {entry}"));
        let Value::Array(items) = reply else {
            return Err(unexpected());
        };
        let mut items = items.into_iter();
        let tag = match items.next() {
            Some(Value::BulkString(tag)) => tag,
            Some(Value::SimpleString(tag)) => tag.into_bytes(),
            _ => return Err(unexpected()),
        };
        match (tag.as_slice(), items.next()) {
            (b"acquired", None) => Ok(Begin::Acquired),
            (b"mismatch", None) => Ok(Begin::Mismatch),
            (b"completed", Some(Value::BulkString(bytes))) => StoredResponse::decode(&bytes)
                .map(|res| Begin::Completed(Box::new(res)))
                .map_err(|e| self.corrupt(format!("entry {entry}: {e}"))),
            (b"in_flight", Some(Value::Int(ms))) => match u64::try_from(ms) {
                Ok(ms) => Ok(Begin::InFlight {
                    expires_in: Duration::from_millis(ms),
                }),
                // -1: something removed the lease's expiry (PERSIST); it would block the key
                // for ever.
                Err(_) => Err(self.corrupt(format!("entry {entry} is in flight with no expiry"))),
            },
            (b"corrupt", Some(Value::BulkString(why))) => {
                Err(self.corrupt(format!("entry {entry}: {}", String::from_utf8_lossy(&why))))
            }
            _ => Err(unexpected()),
        }
    }

    /// What the `complete` and `release` scripts' replies say: 1 done, 0 not.
    fn parse_flag(&self, what: &str, entry: &str, reply: i64) -> Result<bool, StoreError> {
        match reply {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.corrupt(format!("unexpected reply to {what} on {entry}: {reply}"))),
        }
    }
}

impl IdempotencyStore for RedisIdempotencyStore {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    /// One round trip: a script that reads the entry and takes the lease if there is none.
    fn begin<'a>(
        &'a self,
        key: &'a StoreKey,
        fingerprint: &'a Fingerprint,
        lease: Lease,
    ) -> BoxFuture<'a, Result<Begin, StoreError>> {
        Box::pin(async move {
            let entry = self.entry_key(key);
            let mut inv = self.scripts.begin.prepare_invoke();
            inv.key(&entry)
                .arg(fingerprint.to_hex())
                .arg(lease.token.to_hex())
                .arg(ttl_millis(lease.ttl));
            let mut conn = self.conn.clone();
            let reply: Value = self
                .run("begin", async { inv.invoke_async(&mut conn).await })
                .await?;
            self.parse_begin(&entry, reply)
        })
    }

    /// One round trip: a script that stores the response if the lease is still `token`'s.
    fn complete<'a>(
        &'a self,
        key: &'a StoreKey,
        token: LeaseToken,
        response: &'a StoredResponse,
        retention: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let entry = self.entry_key(key);
            let mut inv = self.scripts.complete.prepare_invoke();
            inv.key(&entry)
                .arg(token.to_hex())
                .arg(response.encode())
                .arg(ttl_millis(retention));
            let mut conn = self.conn.clone();
            let reply: i64 = self
                .run("complete", async { inv.invoke_async(&mut conn).await })
                .await?;
            self.parse_flag("complete", &entry, reply)
        })
    }

    /// One round trip: a script that removes the entry if it is in flight under `token`.
    fn release<'a>(
        &'a self,
        key: &'a StoreKey,
        token: LeaseToken,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let entry = self.entry_key(key);
            let mut inv = self.scripts.release.prepare_invoke();
            inv.key(&entry).arg(token.to_hex());
            let mut conn = self.conn.clone();
            let reply: i64 = self
                .run("release", async { inv.invoke_async(&mut conn).await })
                .await?;
            self.parse_flag("release", &entry, reply)
        })
    }
}

/// The idempotency store error for a Redis error: Redis out of memory (`maxmemory`) is
/// [`StoreErrorKind::Full`], a key of another type under the prefix
/// [`StoreErrorKind::Corrupt`], refused credentials or permissions [`StoreErrorKind::Other`],
/// anything else (a connection refused or dropped, a server loading, a read-only replica)
/// [`StoreErrorKind::Unavailable`].
fn from_redis(store: &str, err: RedisError) -> StoreError {
    let kind = match classify(&err) {
        Class::OutOfMemory => StoreErrorKind::Full,
        Class::WrongType => StoreErrorKind::Corrupt,
        Class::Config => StoreErrorKind::Other,
        Class::Unavailable => StoreErrorKind::Unavailable,
    };
    StoreError::new(store, kind).with_source(err)
}

/// No answer within `limit`.
fn timed_out(store: &str, what: &str, limit: Duration) -> StoreError {
    StoreError::new(store, StoreErrorKind::Unavailable)
        .with_source(format!("{what}: no answer within {limit:?}"))
}

/// `ttl` in whole milliseconds, rounded up, from 1 to [`MAX_TTL_MS`]: Redis expires a key with
/// a TTL of 0 at once.
fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_nanos().div_ceil(1_000_000))
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_TTL_MS)
}

/// `s` with the characters `SCAN … MATCH` treats as a pattern escaped.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use redis::ErrorKind;

    use super::*;

    #[test]
    fn ttls_are_whole_milliseconds_rounded_up() {
        assert_eq!(ttl_millis(Duration::ZERO), 1);
        assert_eq!(ttl_millis(Duration::from_nanos(1)), 1);
        assert_eq!(ttl_millis(Duration::from_micros(1500)), 2);
        assert_eq!(ttl_millis(Duration::from_secs(60)), 60_000);
        assert_eq!(ttl_millis(Duration::MAX), MAX_TTL_MS);
    }

    #[test]
    fn prefixes_are_escaped_for_scan() {
        assert_eq!(glob_escape("rampart:idem"), "rampart:idem");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn redis_errors_map_to_the_stores_kinds() {
        let oom = RedisError::from((
            ErrorKind::Extension,
            "OOM command not allowed when used memory > 'maxmemory'.",
        ));
        assert_eq!(from_redis("s", oom).kind(), StoreErrorKind::Full);
        let wrong = RedisError::from((
            ErrorKind::Extension,
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        ));
        assert_eq!(from_redis("s", wrong).kind(), StoreErrorKind::Corrupt);
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(from_redis("s", io).kind(), StoreErrorKind::Unavailable);
        let auth = RedisError::from((ErrorKind::AuthenticationFailed, "WRONGPASS"));
        assert_eq!(from_redis("s", auth).kind(), StoreErrorKind::Other);
    }

    #[tokio::test]
    async fn bad_settings_name_the_field_and_hide_the_password() {
        let err = RedisIdempotencyStore::builder("redis://127.0.0.1:1")
            .prefix("")
            .connect()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Other);
        assert!(err.to_string().contains("prefix"), "{err}");
        let err = RedisIdempotencyStore::builder("redis://127.0.0.1:1")
            .response_timeout(Duration::ZERO)
            .connect()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("response_timeout"), "{err}");
        let err = RedisIdempotencyStore::connect("redis://u:s3cret@127.0.0.1:6379/x")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Other);
        let text = err.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("expected redis://"), "{text}");
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_unavailable_quickly() {
        // Port 1 on loopback: nothing listens there, the connection is refused at once.
        let started = Instant::now();
        let err = RedisIdempotencyStore::builder("redis://user:s3cret@127.0.0.1:1/0")
            .connect_timeout(Duration::from_millis(500))
            .response_timeout(Duration::from_millis(500))
            .connect()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
        assert!(started.elapsed() < Duration::from_secs(2), "{err}");
        let text = err.to_string();
        assert!(text.contains("redis://127.0.0.1:1/0"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}
