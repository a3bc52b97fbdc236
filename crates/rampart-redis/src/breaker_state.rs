//! [`RedisBreakerState`]: circuit-breaker state shared by every replica, a
//! [`StateBackend`] for rampart-circuit-breaker's
//! [`SharedBreakers`](rampart_circuit_breaker::shared::SharedBreakers).

use std::{fmt, time::Duration};

use rampart_circuit_breaker::shared::{BackendError, PeerSnapshots, StateBackend};
use rampart_core::{BoxFuture, error::ConfigError};
use redis::{RedisError, Script, aio::ConnectionManager};

use crate::connect::ConnectFailure;

const COMPONENT: &str = "Redis breaker state";

/// KEYS: the breaker's hash. ARGV: replica, snapshot, TTL in ms. The field's value is the
/// expiry in the server's Unix ms, a space, the snapshot.
const PUBLISH: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], (now + ttl) .. ' ' .. ARGV[2])
if redis.call('PTTL', KEYS[1]) < 2 * ttl then
  redis.call('PEXPIRE', KEYS[1], 2 * ttl)
end
return 1
";

/// KEYS: the breaker's hash. ARGV: the most fields to return. Drops expired (or malformed)
/// fields by the server's time; returns the live ones as replica, snapshot, replica, ….
const PEERS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local out = {}
local most = 2 * tonumber(ARGV[1])
for i = 1, #all, 2 do
  local v = all[i + 1]
  local sp = string.find(v, ' ', 1, true)
  local expires = sp and tonumber(string.sub(v, 1, sp - 1))
  if not expires or expires <= now then
    redis.call('HDEL', KEYS[1], all[i])
  elseif #out < most then
    out[#out + 1] = all[i]
    out[#out + 1] = string.sub(v, sp + 1)
  end
end
return out
";

/// KEYS: the probe lease. ARGV: replica, TTL in ms. `SET NX PX`, or renewed by its holder.
const ACQUIRE: &str = r"
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// KEYS: the probe lease. ARGV: replica. Deleted only by its holder.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 1
";

/// Configures a [`RedisBreakerState`]: [`RedisBreakerState::builder`].
#[derive(Clone)]
pub struct RedisBreakerStateBuilder {
    url: String,
    prefix: String,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl fmt::Debug for RedisBreakerStateBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBreakerStateBuilder")
            .field("url", &rampart_core::redact::connection_url(&self.url))
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisBreakerStateBuilder {
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "rampart:cb";

    /// The prefix of every key (default `rampart:cb`): replicas that share breakers use the
    /// same one.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long establishing the connection may take (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one operation may wait for Redis (default 250 ms). The `SharedBreakers`
    /// driver bounds each operation by its own timeout as well.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Connects and loads the scripts. A bad URL or setting is an error naming it (a
    /// password is never shown); so is a Redis that does not answer in time.
    pub async fn connect(self) -> Result<RedisBreakerState, BackendError> {
        if self.prefix.is_empty() {
            return Err(BackendError::with_source(
                "bad Redis breaker state configuration",
                ConfigError::new(COMPONENT, "prefix", "must not be empty"),
            ));
        }
        for (field, value) in [
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
        ] {
            if value.is_zero() {
                return Err(BackendError::with_source(
                    "bad Redis breaker state configuration",
                    ConfigError::new(COMPONENT, field, "must be more than zero, got 0s"),
                ));
            }
        }
        let (mut conn, describe) = crate::connect::connect(
            &self.url,
            &self.prefix,
            self.connect_timeout,
            self.response_timeout,
        )
        .await
        .map_err(|(name, failure)| match failure {
            ConnectFailure::BadUrl(why) => BackendError::new(format!("{name}: {why}")),
            ConnectFailure::Redis(e) => redis_error(&name, e),
            ConnectFailure::TimedOut(limit) => {
                BackendError::new(format!("{name}: no answer within {limit:?}"))
            }
        })?;
        let scripts = [
            Script::new(PUBLISH),
            Script::new(PEERS),
            Script::new(ACQUIRE),
            Script::new(RELEASE),
        ];
        crate::connect::load_scripts(&mut conn, &scripts, self.response_timeout)
            .await
            .map_err(|failure| match failure {
                ConnectFailure::Redis(e) => redis_error(&describe, e),
                _ => BackendError::new(format!(
                    "{describe}: loading the scripts took over {:?}",
                    self.response_timeout
                )),
            })?;
        let [publish, peers, acquire, release] = scripts;
        Ok(RedisBreakerState {
            conn,
            prefix: self.prefix,
            describe,
            publish,
            peers,
            acquire,
            release,
        })
    }
}

/// Circuit-breaker state on Redis (5.0 or later), shared by every replica that connects with
/// the same prefix: the [`StateBackend`] of a
/// [`SharedBreakers`](rampart_circuit_breaker::shared::SharedBreakers).
///
/// # Layout
///
/// For a prefix `P` (default `rampart:cb`) and a breaker `B` (for a per-key breaker,
/// `name/key`; `{` and `}` in it are written `(` and `)`), two keys in one hash slot:
///
/// | key | type | holds |
/// |---|---|---|
/// | `P:{B}` | hash | replica → `<expires> <snapshot>`: the expiry in the server's Unix ms, then the [snapshot](rampart_circuit_breaker::shared::Snapshot#format-version-1) |
/// | `P:{B}:probe` | string, with a TTL | the replica that holds the probe lease |
///
/// A replica's field counts until its expiry, judged by the server's clock (`TIME`), so
/// replicas' clocks need not agree; reading drops the expired fields, and the hash itself
/// expires two TTLs after its last write. The probe lease is `SET NX PX`, renewed by its holder
/// and deleted only by it. Each operation is one `EVALSHA`.
///
/// ```no_run
/// use rampart_circuit_breaker::{CircuitBreakerLayer, shared::SharedBreakers};
/// use rampart_redis::RedisBreakerState;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let state = RedisBreakerState::connect("redis://127.0.0.1:6379/0").await?;
/// let shared = SharedBreakers::builder(state).replica("pod-a").spawn()?;
/// let breaker = CircuitBreakerLayer::builder().name("payments").layer()?;
/// shared.join(&breaker.handle());
/// # Ok(())
/// # }
/// ```
pub struct RedisBreakerState {
    conn: ConnectionManager,
    prefix: String,
    describe: String,
    publish: Script,
    peers: Script,
    acquire: Script,
    release: Script,
}

impl fmt::Debug for RedisBreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBreakerState")
            .field("store", &self.describe)
            .finish_non_exhaustive()
    }
}

impl RedisBreakerState {
    /// Connects to `url` with the defaults (prefix `rampart:cb`, 2 s to connect, 250 ms per
    /// answer).
    pub async fn connect(url: &str) -> Result<Self, BackendError> {
        Self::builder(url).connect().await
    }

    /// Configures the connection to `url`.
    pub fn builder(url: impl Into<String>) -> RedisBreakerStateBuilder {
        RedisBreakerStateBuilder {
            url: url.into(),
            prefix: RedisBreakerStateBuilder::DEFAULT_PREFIX.to_owned(),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_millis(250),
        }
    }

    /// The hash of `breaker`'s snapshots.
    fn key(&self, breaker: &str) -> String {
        let tag: String = breaker
            .chars()
            .map(|c| match c {
                '{' => '(',
                '}' => ')',
                c => c,
            })
            .collect();
        format!("{}:{{{tag}}}", self.prefix)
    }

    fn failed(&self, what: &str, e: RedisError) -> BackendError {
        redis_error(&format!("{} ({what})", self.describe), e)
    }
}

fn redis_error(store: &str, e: RedisError) -> BackendError {
    BackendError::with_source(format!("{store}: {e}"), e)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl StateBackend for RedisBreakerState {
    fn publish<'a>(
        &'a self,
        breaker: &'a str,
        replica: &'a str,
        snapshot: &'a [u8],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            self.publish
                .key(self.key(breaker))
                .arg(replica)
                .arg(snapshot)
                .arg(millis(ttl))
                .invoke_async::<i64>(&mut conn)
                .await
                .map(drop)
                .map_err(|e| self.failed("publish", e))
        })
    }

    fn peers<'a>(&'a self, breaker: &'a str) -> BoxFuture<'a, Result<PeerSnapshots, BackendError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let flat: Vec<Vec<u8>> = self
                .peers
                .key(self.key(breaker))
                .arg(rampart_circuit_breaker::shared::MAX_PEERS + 1)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.failed("read peers", e))?;
            let mut out = Vec::with_capacity(flat.len() / 2);
            let mut it = flat.into_iter();
            while let (Some(who), Some(snapshot)) = (it.next(), it.next()) {
                out.push((String::from_utf8_lossy(&who).into_owned(), snapshot));
            }
            Ok(out)
        })
    }

    fn acquire_probe<'a>(
        &'a self,
        breaker: &'a str,
        replica: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, BackendError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            self.acquire
                .key(format!("{}:probe", self.key(breaker)))
                .arg(replica)
                .arg(millis(ttl))
                .invoke_async::<i64>(&mut conn)
                .await
                .map(|held| held == 1)
                .map_err(|e| self.failed("take the probe lease", e))
        })
    }

    fn release_probe<'a>(
        &'a self,
        breaker: &'a str,
        replica: &'a str,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            self.release
                .key(format!("{}:probe", self.key(breaker)))
                .arg(replica)
                .invoke_async::<i64>(&mut conn)
                .await
                .map(drop)
                .map_err(|e| self.failed("release the probe lease", e))
        })
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}
