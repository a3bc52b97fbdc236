//! [`RedisBudgetStore`]: budgets kept across restarts in Redis.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rampart_core::BoxFuture;
use rampart_rate_limit::budget::{
    BudgetSnapshot, BudgetStore, BudgetStoreError, BudgetStoreErrorKind,
};
use redis::{AsyncCommands as _, aio::ConnectionManager};

use crate::connect::ConnectFailure;

/// Budgets kept across restarts in Redis (feature `rate-limit`): a
/// [`BudgetStore`] for `rampart_rate_limit::budget::Budget::store`. Each budget is one string key,
/// `<prefix>:<name>`, holding its snapshot's one-line text form
/// ([`BudgetSnapshot::encode`]), which expires once its period (or, for a rolling window, its
/// last slot) has left it: `redis-cli GET rampart:budget:llm` shows it.
///
/// ```no_run
/// use rampart_rate_limit::budget::{Budget, BudgetLayer, Period};
/// use rampart_redis::RedisBudgetStore;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisBudgetStore::builder("redis://127.0.0.1:6379").connect().await?;
/// let budget =
///     BudgetLayer::connect(Budget::new(500, Period::day()).name("llm-replica-1").store(store)).await?;
/// # let _ = budget;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisBudgetStore {
    conn: ConnectionManager,
    prefix: String,
    describe: String,
}

impl std::fmt::Debug for RedisBudgetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBudgetStore")
            .field("store", &self.describe)
            .finish_non_exhaustive()
    }
}

/// Configures a [`RedisBudgetStore`].
#[derive(Debug, Clone)]
pub struct RedisBudgetStoreBuilder {
    url: String,
    prefix: String,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl RedisBudgetStore {
    /// A store on the Redis at `url` (`redis://[[user]:password@]host[:port][/db]`).
    pub fn builder(url: impl Into<String>) -> RedisBudgetStoreBuilder {
        RedisBudgetStoreBuilder {
            url: url.into(),
            prefix: "rampart:budget".to_owned(),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(1),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    fn unavailable(&self, e: redis::RedisError) -> BudgetStoreError {
        BudgetStoreError::new(&self.describe, BudgetStoreErrorKind::Unavailable).with_source(e)
    }
}

impl RedisBudgetStoreBuilder {
    /// Keys start with `prefix` (default `rampart:budget`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long connecting may take (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a read or a write may take (default 1 s).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Connects. A URL that is not one fails as `Config`; a Redis that does not answer in
    /// time, or refuses, as `Unavailable`.
    pub async fn connect(self) -> Result<RedisBudgetStore, BudgetStoreError> {
        let (conn, describe) = crate::connect::connect(
            &self.url,
            &self.prefix,
            self.connect_timeout,
            self.response_timeout,
        )
        .await
        .map_err(|(name, failure)| match failure {
            ConnectFailure::BadUrl(why) => {
                BudgetStoreError::new(name, BudgetStoreErrorKind::Config).with_source(why)
            }
            ConnectFailure::Redis(e) => {
                BudgetStoreError::new(name, BudgetStoreErrorKind::Unavailable).with_source(e)
            }
            ConnectFailure::TimedOut(limit) => {
                BudgetStoreError::new(name, BudgetStoreErrorKind::Unavailable)
                    .with_source(format!("connect: no answer within {limit:?}"))
            }
        })?;
        Ok(RedisBudgetStore {
            conn,
            prefix: self.prefix,
            describe,
        })
    }
}

/// Seconds from now until the snapshot is of no more use (at least one).
fn ttl_secs(snapshot: &BudgetSnapshot) -> u64 {
    let useless_at = if snapshot.slot_secs == 0 {
        snapshot.end
    } else {
        // The last slot leaves a 60-slot window 60 slots after it started.
        let last = snapshot
            .slots
            .last()
            .map_or(snapshot.start / snapshot.slot_secs.max(1), |(n, _)| *n);
        (last + 60) * snapshot.slot_secs
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    u64::try_from(useless_at.saturating_sub(now))
        .unwrap_or(0)
        .max(1)
}

impl BudgetStore for RedisBudgetStore {
    fn load<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<BudgetSnapshot>, BudgetStoreError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let text: Option<String> = conn
                .get(self.key(name))
                .await
                .map_err(|e| self.unavailable(e))?;
            text.map(|text| BudgetSnapshot::from_stored(&self.describe, &self.key(name), &text))
                .transpose()
        })
    }

    fn save<'a>(
        &'a self,
        name: &'a str,
        snapshot: &'a BudgetSnapshot,
    ) -> BoxFuture<'a, Result<(), BudgetStoreError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let () = conn
                .set_ex(self.key(name), snapshot.encode(), ttl_secs(snapshot))
                .await
                .map_err(|e| self.unavailable(e))?;
            Ok(())
        })
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}
