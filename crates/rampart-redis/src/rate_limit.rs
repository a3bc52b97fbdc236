//! [`RedisRateLimiter`]: one GCRA rate limit shared by every replica, decided in one atomic
//! script on Redis's clock, with a local fallback when Redis does not answer.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use rampart_core::{
    error::ConfigError,
    key::key_fn,
    rejection::{LimitInfo, LimitReason, LimitedBy, RateLimited},
    store::{ErrorKind, StoreError},
};
use rampart_rate_limit::{KeyedLimit, Quota, RateLimitLayer};
use redis::{RedisError, Script, aio::ConnectionManager};

use crate::{
    connect::ConnectFailure,
    error::{Class, classify},
    refusals::Refusals,
};

/// Why a [`RedisRateLimiter`] could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimiterErrorKind {
    /// A bad setting or URL, or refused credentials.
    Config,
    /// Redis did not answer in time, or refused the connection.
    Unavailable,
}

impl ErrorKind for RateLimiterErrorKind {
    const STORE: &'static str = "rate-limit";

    fn describe(self) -> &'static str {
        match self {
            RateLimiterErrorKind::Config => "configuration",
            RateLimiterErrorKind::Unavailable => "unavailable",
        }
    }
}

/// The error of [`RedisRateLimiterBuilder::connect`].
pub type RateLimiterError = StoreError<RateLimiterErrorKind>;

fn from_redis(store: &str, err: RedisError) -> RateLimiterError {
    let kind = match classify(&err) {
        Class::Config | Class::WrongType => RateLimiterErrorKind::Config,
        Class::OutOfMemory | Class::Unavailable => RateLimiterErrorKind::Unavailable,
    };
    StoreError::new(store, kind).with_source(err)
}

/// The decision, atomic on the server. `KEYS[1]`: the key's theoretical arrival time, in
/// microseconds of Redis's own clock (`TIME`: one clock for every replica, never theirs).
/// `ARGV`: the interval per unit (µs), the burst, the cost, the longest wait allowed (µs).
/// Answers `{status, wait, remaining, used}`: status 1 admitted (after `wait` µs, the cost
/// reserved), 0 refused (it would fit after `wait` µs), -1 refused for good (the cost is over
/// the burst); `remaining` the units that could go at once, `used` how far the TAT runs ahead
/// of now (µs). The key expires when its debt is paid.
const GCRA: &str = r#"
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local tau = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local used = tat - now
local function left(u) return math.floor(math.max(tau - u, 0) / interval) end
if cost > burst then return {-1, 0, left(used), used} end
local new_tat = tat + cost * interval
local wait = new_tat - now - tau
if wait > max_wait then return {0, wait, left(used), used} end
if wait < 0 then wait = 0 end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, wait, left(new_tat - now), new_tat - now}
"#;

/// What a [`RedisRateLimiter`] does when Redis does not answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisFallback {
    /// Decide locally, at the limit divided by the number of replicas sharing it (each
    /// replica then admits its share; the whole may admit up to `replicas` × the local burst
    /// at once while Redis is away). The default, with 1 replica: the whole limit locally.
    Local {
        /// How many replicas share the limit.
        replicas: u32,
    },
    /// Refuse every call (fail closed), with no `Retry-After`.
    Refuse,
}

/// Configures a [`RedisRateLimiter`].
#[derive(Debug, Clone)]
pub struct RedisRateLimiterBuilder {
    url: String,
    prefix: String,
    name: String,
    quota: Quota,
    max_wait: Duration,
    connect_timeout: Duration,
    response_timeout: Duration,
    fallback: RedisFallback,
    refusal_cache: usize,
}

impl RedisRateLimiterBuilder {
    /// Keys start with `prefix` (default `rampart:rate-limit`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The limit's name: part of its keys, and its `name` label (default `default`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Lets a call over the limit wait up to `max_wait` for its turn (default: refuse at once).
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// How long connecting may take (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a decision may wait on Redis before the fallback decides (default 50 ms): a
    /// call is never held longer than this by the limiter's backend.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Remembers Redis's refusals for up to `keys` keys (default 10 000; 0: off): a key over
    /// its limit is refused here, with no round trip, until the time Redis named. It never
    /// lets through a call Redis would refuse; it may refuse one Redis would admit for up to
    /// half a round trip at the end of the wait (counted from when the answer arrived), and
    /// after a change behind the limiter's back (a key deleted by hand stays refused here
    /// until that time). A call cheaper than the one refused is asked again.
    pub fn refusal_cache(mut self, keys: usize) -> Self {
        self.refusal_cache = keys;
        self
    }

    /// What to do when Redis does not answer (default: decide locally for one replica).
    pub fn fallback(mut self, fallback: RedisFallback) -> Self {
        self.fallback = fallback;
        self
    }

    fn validate(&self) -> Result<(u64, u64), ConfigError> {
        const C: &str = "redis_rate_limit";
        let period = u64::try_from(self.quota.period().as_micros()).unwrap_or(u64::MAX);
        let units = self.quota.units();
        if units == 0 || period == 0 || units > period {
            return Err(ConfigError::new(
                C,
                "quota",
                format!(
                    "must be 1 to one unit per microsecond of the period, got {units} per {:?}",
                    self.quota.period()
                ),
            ));
        }
        let burst = self.quota.burst_units();
        let interval = period.div_ceil(units);
        // Lua's numbers are doubles: keep every product exact (below 2^53).
        if burst == 0 || burst.saturating_mul(interval) >= 1 << 50 {
            return Err(ConfigError::new(
                C,
                "quota.burst",
                format!("must be at least 1 and burst × interval under 2^50 µs, got {burst}"),
            ));
        }
        if self.name.is_empty() || self.name.contains(['{', '}']) {
            return Err(ConfigError::new(
                C,
                "name",
                "must be non-empty, without braces",
            ));
        }
        if let RedisFallback::Local { replicas: 0 } = self.fallback {
            return Err(ConfigError::new(
                C,
                "fallback.replicas",
                "must be at least 1, got 0",
            ));
        }
        if self.response_timeout.is_zero() {
            return Err(ConfigError::new(
                C,
                "response_timeout",
                "must be greater than zero",
            ));
        }
        Ok((interval, burst))
    }

    /// Connects and loads the script. A bad setting fails naming it
    /// ([`RateLimiterErrorKind::Config`], the [`ConfigError`] as source); a Redis that does not
    /// answer in time, with [`RateLimiterErrorKind::Unavailable`].
    pub async fn connect(self) -> Result<RedisRateLimiter, RateLimiterError> {
        let early = crate::connect::early_name(&self.url, &self.prefix);
        let (interval, burst) = self
            .validate()
            .map_err(|e| StoreError::new(early, RateLimiterErrorKind::Config).with_source(e))?;
        let (mut conn, describe) = crate::connect::connect(
            &self.url,
            &self.prefix,
            self.connect_timeout,
            self.response_timeout.max(Duration::from_millis(500)),
        )
        .await
        .map_err(|(name, failure)| match failure {
            ConnectFailure::BadUrl(why) => {
                StoreError::new(name, RateLimiterErrorKind::Config).with_source(why)
            }
            ConnectFailure::Redis(e) => from_redis(&name, e),
            ConnectFailure::TimedOut(limit) => {
                StoreError::new(name, RateLimiterErrorKind::Unavailable)
                    .with_source(format!("connect: no answer within {limit:?}"))
            }
        })?;
        let script = Script::new(GCRA);
        let limit = self.response_timeout.max(Duration::from_millis(500));
        crate::connect::load_scripts(&mut conn, [&script], limit)
            .await
            .map_err(|failure| match failure {
                ConnectFailure::Redis(e) => from_redis(&describe, e),
                _ => StoreError::new(describe.clone(), RateLimiterErrorKind::Unavailable)
                    .with_source(format!("load the script: no answer within {limit:?}")),
            })?;
        let local = match self.fallback {
            RedisFallback::Local { replicas } => {
                let share = |n: u64| (n / u64::from(replicas)).max(1);
                let quota =
                    Quota::new(share(self.quota.units()), self.quota.period()).burst(share(burst));
                let layer = RateLimitLayer::builder(quota)
                    .name(format!("{}-fallback", self.name))
                    .max_wait(self.max_wait)
                    .keyed(key_fn(own_key as fn(&String) -> Option<String>))
                    .map_err(|e| {
                        StoreError::new(describe.clone(), RateLimiterErrorKind::Config)
                            .with_source(e)
                    })?;
                Some(layer)
            }
            RedisFallback::Refuse => None,
        };
        Ok(RedisRateLimiter {
            inner: Arc::new(Inner {
                conn,
                script,
                keys: format!("{{{}:{}}}:", self.prefix, self.name),
                name: Arc::from(self.name.as_str()),
                describe,
                interval,
                burst,
                max_wait: u64::try_from(self.max_wait.as_micros()).unwrap_or(u64::MAX),
                quota: self.quota,
                timeout: self.response_timeout,
                local,
                degraded: AtomicBool::new(false),
                failures: AtomicU64::new(0),
                refusals: Refusals::new(self.refusal_cache),
                refusals_cached: AtomicU64::new(0),
            }),
        })
    }
}

/// The fallback's key: the key itself (its requests are the keys, `String`s).
#[allow(clippy::ptr_arg)]
fn own_key(key: &String) -> Option<String> {
    Some(key.clone())
}

type LocalLimit = RateLimitLayer<
    KeyedLimit<rampart_core::key::KeyFn<fn(&String) -> Option<String>, String>, String>,
>;

struct Inner {
    conn: ConnectionManager,
    script: Script,
    /// `{prefix:name}:`: every key of the limit in one hash slot.
    keys: String,
    /// The limit's name: its metrics' `name` label.
    name: Arc<str>,
    describe: String,
    interval: u64,
    burst: u64,
    max_wait: u64,
    quota: Quota,
    timeout: Duration,
    local: Option<LocalLimit>,
    degraded: AtomicBool,
    failures: AtomicU64,
    refusals: Refusals,
    refusals_cached: AtomicU64,
}

/// One rate limit (per key) shared by every replica that connects with the same prefix and
/// name: GCRA with a cost, decided by one atomic Lua script per call, on Redis's clock.
///
/// The answer has redis-cell's shape (admitted, remaining, retry after, reset after), as a
/// decision: `Ok(None)` go now, `Ok(Some(wait))` go after `wait` (reserved: wait it out), or
/// the [`RateLimited`] refusal. Arithmetic is in whole microseconds with the interval rounded
/// up, so the shared limit is never exceeded while Redis answers.
///
/// **When Redis does not answer** within the response timeout, the [`RedisFallback`] decides
/// (a local limit at limit/replicas by default, or refusing), never holding the call longer;
/// the failure is logged (at `warn`, the first and then every power of two), counted
/// ([`backend_failures`](Self::backend_failures),
/// `rampart_rate_limit_backend_errors_total{name}`), and [`is_degraded`](Self::is_degraded)
/// says so until a decision on Redis succeeds again. Over-admission bound while degraded:
/// each replica admits its share locally, so the whole admits at most the limit (plus each
/// replica's local burst) if `replicas` is right, more if it is set too low.
#[derive(Clone)]
pub struct RedisRateLimiter {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("redis", &self.inner.describe)
            .field("keys", &self.inner.keys)
            .field("quota", &self.inner.quota)
            .field("degraded", &self.is_degraded())
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// A builder for a limit of `quota`, on the Redis at `url`.
    pub fn builder(url: impl Into<String>, quota: Quota) -> RedisRateLimiterBuilder {
        RedisRateLimiterBuilder {
            url: url.into(),
            prefix: "rampart:rate-limit".into(),
            name: "default".into(),
            quota,
            max_wait: Duration::ZERO,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_millis(50),
            fallback: RedisFallback::Local { replicas: 1 },
            refusal_cache: 10_000,
        }
    }

    /// Decides a call of `cost` for `key`.
    pub async fn check(&self, key: &str, cost: u64) -> Result<Option<Duration>, RateLimited> {
        let inner = &*self.inner;
        if let Some(refused) =
            inner
                .refusals
                .check(key, cost, Duration::from_micros(inner.max_wait))
        {
            inner.refusals_cached.fetch_add(1, Ordering::Relaxed);
            return Err(refused);
        }
        let mut conn = inner.conn.clone();
        let mut invocation = inner.script.key(format!("{}{key}", inner.keys));
        invocation
            .arg(inner.interval)
            .arg(inner.burst)
            .arg(cost)
            .arg(inner.max_wait);
        let answer = tokio::time::timeout(
            inner.timeout,
            invocation.invoke_async::<(i64, i64, i64, i64)>(&mut conn),
        )
        .await;
        match answer {
            Ok(Ok((status, wait, remaining, used))) => {
                if inner.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        target: "rampart::rate_limit",
                        redis = %inner.describe, "Redis answers again: the shared limit decides"
                    );
                }
                let decided = self.decided(status, wait, remaining, used, cost);
                if let Err(refused) = &decided
                    && let Some(after) = refused.retry_after()
                {
                    inner.refusals.note(key, cost, after, refused.info());
                }
                decided
            }
            Ok(Err(e)) => self.fall_back(key, cost, &e.to_string()),
            Err(_) => self.fall_back(key, cost, "no answer within the response timeout"),
        }
    }

    fn decided(
        &self,
        status: i64,
        wait: i64,
        remaining: i64,
        used: i64,
        cost: u64,
    ) -> Result<Option<Duration>, RateLimited> {
        let micros = |n: i64| Duration::from_micros(u64::try_from(n).unwrap_or(0));
        match status {
            1 if wait <= 0 => Ok(None),
            1 => Ok(Some(micros(wait))),
            _ => {
                let info = LimitInfo {
                    quota: self.inner.quota.units(),
                    window: self.inner.quota.period(),
                    remaining: u64::try_from(remaining).unwrap_or(0),
                    reset: micros(used),
                };
                let (reason, after) = match status {
                    0 if self.inner.max_wait == 0 => (LimitReason::OverLimit, Some(micros(wait))),
                    0 => (LimitReason::WaitTooLong, Some(micros(wait))),
                    _ => (LimitReason::CostTooHigh, None),
                };
                Err(RateLimited::new(LimitedBy::Rate, reason, cost, after, info))
            }
        }
    }

    #[cold]
    fn fall_back(&self, key: &str, cost: u64, why: &str) -> Result<Option<Duration>, RateLimited> {
        let inner = &*self.inner;
        inner.degraded.store(true, Ordering::Relaxed);
        let n = inner.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(
                target: "rampart::rate_limit",
                redis = %inner.describe, failures = n, error = why,
                fallback = if inner.local.is_some() { "local" } else { "refuse" },
                "Redis did not decide: the fallback does"
            );
        }
        metrics::counter!(
            "rampart_rate_limit_backend_errors_total",
            rampart_core::registry::INSTANCE_LABEL => inner.name.clone()
        )
        .increment(1);
        match &inner.local {
            Some(local) => local.check(&key.to_owned()),
            None => Err(RateLimited::new(
                LimitedBy::Rate,
                LimitReason::OverLimit,
                cost,
                None,
                LimitInfo {
                    quota: inner.quota.units(),
                    window: inner.quota.period(),
                    remaining: 0,
                    reset: Duration::ZERO,
                },
            )),
        }
    }

    /// `true` while Redis is not answering and the fallback decides.
    pub fn is_degraded(&self) -> bool {
        self.inner.degraded.load(Ordering::Relaxed)
    }

    /// Refusals answered from the [refusal cache](RedisRateLimiterBuilder::refusal_cache),
    /// with no round trip, since the start.
    pub fn refusals_cached(&self) -> u64 {
        self.inner.refusals_cached.load(Ordering::Relaxed)
    }

    /// Decisions Redis failed to make (the fallback made them) since the start.
    pub fn backend_failures(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
    }

    /// Where the limit lives: the Redis address (no credentials) and the key prefix.
    pub fn describe(&self) -> &str {
        &self.inner.describe
    }

    /// What decides while Redis does not answer, in words.
    pub fn fallback_description(&self) -> String {
        match &self.inner.local {
            Some(local) => format!("deciding locally at {} per key", local.handle().quota()),
            None => "refusing every call".to_owned(),
        }
    }
}

/// A [`RedisRateLimiter`] with one limit per key of `X` (per tenant, host, route: the
/// `rampart_core::key` extractors), as a `RemoteLimit` for rampart-rate-limit's
/// `RemoteRateLimitLayer`. The Redis key is the key's `Debug` text; requests without a key
/// share the key `_none`.
///
/// ```no_run
/// use rampart_core::key::ByHeader;
/// use rampart_rate_limit::{Quota, RemoteRateLimitLayer};
/// use rampart_redis::RedisRateLimiter;
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = RedisRateLimiter::builder("redis://127.0.0.1:6379", Quota::per_minute(600))
///     .name("api")
///     .connect()
///     .await?;
/// let layer = RemoteRateLimitLayer::new(
///     limiter.keyed(ByHeader::new(http::HeaderName::from_static("x-tenant"))),
/// );
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisKeyedLimit<X> {
    limiter: RedisRateLimiter,
    extractor: X,
}

impl RedisRateLimiter {
    /// One limit per key of `extractor`.
    pub fn keyed<X>(self, extractor: X) -> RedisKeyedLimit<X> {
        RedisKeyedLimit {
            limiter: self,
            extractor,
        }
    }
}

impl<X> RedisKeyedLimit<X> {
    /// The limiter (its state: degraded, failures).
    pub fn limiter(&self) -> &RedisRateLimiter {
        &self.limiter
    }
}

impl<X, Req> rampart_rate_limit::RemoteLimit<Req> for RedisKeyedLimit<X>
where
    X: rampart_core::key::KeyExtractor<Req>,
    Req: 'static,
{
    fn check(
        &self,
        req: &Req,
        cost: u64,
    ) -> rampart_core::BoxFuture<'static, Result<Option<Duration>, RateLimited>> {
        let key = self
            .extractor
            .extract(req)
            .map_or_else(|| "_none".to_owned(), |k| format!("{k:?}"));
        let limiter = self.limiter.clone();
        Box::pin(async move { limiter.check(&key, cost).await })
    }
}
