//! [`RedisDeadLetterStoreBuilder`]: the settings of a [`RedisDeadLetterStore`] and how it
//! connects.

use std::{fmt, time::Duration};

use crate::{
    connect::ConnectFailure,
    error::{from_redis, timed_out},
    scripts::Scripts,
    store::{Keys, RedisDeadLetterStore, ReplicaAck},
};
use rampart_core::error::ConfigError;
use rampart_dead_letter::{StoreError, StoreErrorKind};

const COMPONENT: &str = "redis dead-letter store";

/// Builds a [`RedisDeadLetterStore`]: made by [`RedisDeadLetterStore::builder`], connects with
/// [`connect`](Self::connect).
///
/// ```no_run
/// # async fn demo() -> Result<(), rampart_dead_letter::StoreError> {
/// use std::time::Duration;
/// use rampart_redis::RedisDeadLetterStore;
///
/// let store = RedisDeadLetterStore::builder("redis://127.0.0.1:6379/0")
///     .prefix("billing:dlq")
///     .connect_timeout(Duration::from_secs(2))
///     .response_timeout(Duration::from_secs(2))
///     .wait_for_replicas(1, Duration::from_millis(500))
///     .connect()
///     .await?;
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisDeadLetterStoreBuilder {
    url: String,
    prefix: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    stream_max_len: Option<u64>,
    max_records: Option<u64>,
    replicas: Option<ReplicaAck>,
}

impl fmt::Debug for RedisDeadLetterStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: show it without.
        f.debug_struct("RedisDeadLetterStoreBuilder")
            .field("url", &rampart_core::redact::connection_url(&self.url))
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("stream_max_len", &self.stream_max_len)
            .field("max_records", &self.max_records)
            .field("replicas", &self.replicas)
            .finish()
    }
}

impl RedisDeadLetterStoreBuilder {
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "rampart:dlq";
    /// The default time to establish a connection.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
    /// The default time to wait for an answer.
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
    /// The default (approximate) length the stream is trimmed to.
    pub const DEFAULT_STREAM_MAX_LEN: u64 = 100_000;

    pub(crate) fn new(url: String) -> Self {
        Self {
            url,
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
            stream_max_len: Some(Self::DEFAULT_STREAM_MAX_LEN),
            max_records: None,
            replicas: None,
        }
    }

    /// The prefix of every key the store uses (`<prefix>:records`, `<prefix>:stream`, …);
    /// default `rampart:dlq`. Stores with different prefixes in one database are independent.
    /// On Redis Cluster, put the prefix in braces (`{rampart:dlq}`) so that all the keys land in
    /// one slot, as the store's scripts need.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long establishing a connection may take (default 3 s); `connect` fails with
    /// [`StoreErrorKind::Unavailable`] after about that long.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one operation may wait for Redis (default 3 s), reconnecting included; then it
    /// fails with [`StoreErrorKind::Unavailable`]. A scan (`list` with a selective filter,
    /// `purge`) gets this for each page.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Trim the stream to about this many entries (`XADD … MAXLEN ~`); `None` keeps every
    /// entry. Default 100 000. Only the feed is trimmed: the records themselves stay until
    /// they are deleted or purged.
    pub fn stream_max_len(mut self, max_len: Option<u64>) -> Self {
        self.stream_max_len = max_len;
        self
    }

    /// Hold at most this many records: an `append` beyond it fails with
    /// [`StoreErrorKind::Full`]. Default `None`: bounded only by Redis' `maxmemory`, which is
    /// reported as `Full` too.
    pub fn max_records(mut self, max: Option<u64>) -> Self {
        self.max_records = max;
        self
    }

    /// Makes `append` wait (Redis `WAIT`) until `replicas` replicas have acknowledged the
    /// write, for at most `timeout`. If fewer did, `append` fails with
    /// [`StoreErrorKind::Unavailable`] although the primary has the record (a retried append
    /// then reports [`StoreErrorKind::Conflict`]: the record is stored). `WAIT` blocks the
    /// store's connection while it waits, so the store's other operations wait behind it.
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.replicas = Some(ReplicaAck { replicas, timeout });
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
        if self.stream_max_len == Some(0) {
            return Err(ConfigError::new(
                COMPONENT,
                "stream_max_len",
                "must be at least 1 (or None to keep every entry), got 0",
            ));
        }
        if self.max_records == Some(0) {
            return Err(ConfigError::new(
                COMPONENT,
                "max_records",
                "must be at least 1 (or None for no limit), got 0",
            ));
        }
        if let Some(ack) = self.replicas {
            if ack.replicas == 0 {
                return Err(ConfigError::new(
                    COMPONENT,
                    "wait_for_replicas.replicas",
                    "must be at least 1, got 0",
                ));
            }
            if ack.timeout < Duration::from_millis(1) {
                return Err(ConfigError::new(
                    COMPONENT,
                    "wait_for_replicas.timeout",
                    format!("must be at least 1ms, got {:?}", ack.timeout),
                ));
            }
        }
        Ok(())
    }

    /// Connects, checks that the store's keys are free or of the right types, and loads the
    /// store's scripts.
    ///
    /// Fails with [`StoreErrorKind::Config`] for a bad URL or setting (the error names it;
    /// a password in the URL is never shown), refused credentials or keys of other types, and
    /// with [`StoreErrorKind::Unavailable`] if Redis does not answer within about the
    /// connect timeout plus the response timeout.
    pub async fn connect(self) -> Result<RedisDeadLetterStore, StoreError> {
        let early_name = crate::connect::early_name(&self.url, &self.prefix);
        self.validate().map_err(|e| {
            StoreError::new(early_name.clone(), StoreErrorKind::Config).with_source(e)
        })?;
        let wait = self.replicas.map_or(Duration::ZERO, |a| a.timeout);
        let (mut conn, describe) = crate::connect::connect(
            &self.url,
            &self.prefix,
            self.connect_timeout,
            self.response_timeout.saturating_add(wait),
        )
        .await
        .map_err(|(name, failure)| match failure {
            ConnectFailure::BadUrl(why) => {
                StoreError::new(name, StoreErrorKind::Config).with_source(why)
            }
            ConnectFailure::Redis(e) => from_redis(&name, e),
            ConnectFailure::TimedOut(limit) => timed_out(&name, "connect", limit),
        })?;

        let keys = Keys::new(&self.prefix);
        let scripts = Scripts::new();
        let check = async {
            let mut pipe = redis::pipe();
            for key in keys.all() {
                pipe.cmd("TYPE").arg(key);
            }
            let types: Vec<String> = pipe.query_async(&mut conn).await?;
            for script in [
                &scripts.append,
                &scripts.update,
                &scripts.remove,
                &scripts.page,
            ] {
                script.load_async(&mut conn).await?;
            }
            Ok::<_, redis::RedisError>(types)
        };
        let types = match tokio::time::timeout(self.response_timeout, check).await {
            Ok(Ok(types)) => types,
            Ok(Err(e)) => return Err(from_redis(&describe, e)),
            Err(_) => return Err(timed_out(&describe, "connect", self.response_timeout)),
        };
        for ((key, expected), found) in keys.all().into_iter().zip(Keys::TYPES).zip(&types) {
            if found != "none" && found != expected {
                return Err(
                    StoreError::new(describe, StoreErrorKind::Config).with_source(format!(
                        "key {key} holds a {found}, not a {expected}: another program uses \
                         this prefix; choose another prefix"
                    )),
                );
            }
        }
        tracing::debug!(store = %describe, "connected to the Redis dead-letter store");
        Ok(RedisDeadLetterStore {
            conn,
            keys,
            scripts,
            describe,
            response_timeout: self.response_timeout,
            stream_max_len: self.stream_max_len,
            max_records: self.max_records,
            replicas: self.replicas,
        })
    }
}

impl RedisDeadLetterStore {
    /// Connects to the Redis at `url` (`redis://[[user]:password@]host[:port][/db]`, or
    /// `redis+unix:///path?db=N`) with the default settings: prefix `rampart:dlq`, 3 s to
    /// connect and 3 s per answer. See [`builder`](Self::builder) for the others and
    /// [`RedisDeadLetterStoreBuilder::connect`] for the errors.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).connect().await
    }

    /// A builder for a store on the Redis at `url`.
    pub fn builder(url: impl Into<String>) -> RedisDeadLetterStoreBuilder {
        RedisDeadLetterStoreBuilder::new(url.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_settings_are_config_errors_naming_the_field() {
        let err = RedisDeadLetterStoreBuilder::new("redis://127.0.0.1:1".into())
            .prefix("")
            .connect()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Config);
        assert!(err.to_string().contains("prefix"), "{err}");
        let err = RedisDeadLetterStoreBuilder::new("redis://127.0.0.1:1".into())
            .wait_for_replicas(0, Duration::from_secs(1))
            .connect()
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("wait_for_replicas.replicas"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_bad_url_is_a_config_error_without_the_password() {
        let err = RedisDeadLetterStoreBuilder::new("redis://u:s3cret@127.0.0.1:6379/x".into())
            .connect()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Config);
        let text = err.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("database number"), "{text}");
        let err = RedisDeadLetterStoreBuilder::new("http://127.0.0.1".into())
            .connect()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Config);
        assert!(err.to_string().contains("expected redis://"), "{err}");
    }
}
