//! [`NatsDeadLetterStoreBuilder`]: the settings of a [`NatsDeadLetterStore`] and how it
//! connects.

use std::{fmt, time::Duration};

use async_nats::{
    ConnectOptions,
    jetstream::{
        self,
        stream::{self, DiscardPolicy, StorageType},
    },
};
use rampart_core::error::ConfigError;
use rampart_dead_letter::{StoreError, StoreErrorKind};

use crate::{
    error::{from_connect, timed_out},
    store::NatsDeadLetterStore,
};

const COMPONENT: &str = "nats dead-letter store";

/// Builds a [`NatsDeadLetterStore`]: made by [`NatsDeadLetterStore::builder`], connects with
/// [`connect`](Self::connect).
///
/// ```no_run
/// # async fn demo() -> Result<(), rampart_dead_letter::StoreError> {
/// use std::time::Duration;
/// use rampart_nats::NatsDeadLetterStore;
///
/// let store = NatsDeadLetterStore::builder("nats://127.0.0.1:4222")
///     .bucket("billing_dlq")
///     .replicas(3)
///     .connect_timeout(Duration::from_secs(2))
///     .response_timeout(Duration::from_secs(2))
///     .connect()
///     .await?;
/// # let _ = store;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct NatsDeadLetterStoreBuilder {
    url: String,
    bucket: String,
    replicas: usize,
    max_bytes: Option<u64>,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl fmt::Debug for NatsDeadLetterStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password or token: show it without.
        f.debug_struct("NatsDeadLetterStoreBuilder")
            .field("url", &rampart_core::redact::connection_url(&self.url))
            .field("bucket", &self.bucket)
            .field("replicas", &self.replicas)
            .field("max_bytes", &self.max_bytes)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

impl NatsDeadLetterStoreBuilder {
    /// The default bucket name.
    pub const DEFAULT_BUCKET: &'static str = "rampart_dlq";
    /// The default time to establish a connection.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
    /// The default time to wait for an answer.
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

    pub(crate) fn new(url: String) -> Self {
        Self {
            url,
            bucket: Self::DEFAULT_BUCKET.to_owned(),
            replicas: 1,
            max_bytes: None,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
        }
    }

    /// The key-value bucket that holds the records (default `rampart_dlq`; letters, digits,
    /// `_` and `-`). Created on first connect (stream `KV_<bucket>`, file storage) if missing.
    pub fn bucket(mut self, bucket: impl Into<String>) -> Self {
        self.bucket = bucket.into();
        self
    }

    /// How many servers of a cluster keep each record, 1 to 5 (default 1); used when the
    /// bucket is created. With 3, an `append` is acknowledged once a majority has it.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// Let the bucket hold at most this many bytes; an `append` beyond it fails with
    /// [`StoreErrorKind::Full`]. Default `None`: bounded by the server's JetStream limits
    /// (a server out of storage is reported as `Full` too). Used when the bucket is created.
    pub fn max_bytes(mut self, max_bytes: Option<u64>) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// How long establishing a connection may take (default 3 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one operation may wait for the server (default 3 s); then it fails with
    /// [`StoreErrorKind::Unavailable`]. A scan (`list`, `stats`, `purge`) gets this for each
    /// message it waits for.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if self.bucket.is_empty() || !self.bucket.chars().all(valid) {
            return Err(ConfigError::new(
                COMPONENT,
                "bucket",
                format!(
                    "must be letters, digits, `_` and `-`, got {:?}",
                    self.bucket
                ),
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(ConfigError::new(
                COMPONENT,
                "replicas",
                format!("must be 1 to 5, got {}", self.replicas),
            ));
        }
        if self.max_bytes == Some(0) || self.max_bytes.is_some_and(|b| i64::try_from(b).is_err()) {
            return Err(ConfigError::new(
                COMPONENT,
                "max_bytes",
                format!(
                    "must be 1 to {} (or None for no limit), got {:?}",
                    i64::MAX,
                    self.max_bytes
                ),
            ));
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

    /// Connects, and opens the bucket or creates it.
    ///
    /// Fails with [`StoreErrorKind::Config`] for a bad URL or setting (the error names it;
    /// credentials in the URL are never shown), refused credentials, or a server without
    /// JetStream; with [`StoreErrorKind::Unavailable`] if the server does not answer within
    /// about the connect timeout plus the response timeout.
    pub async fn connect(self) -> Result<NatsDeadLetterStore, StoreError> {
        let early_name = format!(
            "{} (bucket {})",
            rampart_core::redact::connection_url(&self.url),
            self.bucket
        );
        let config_error = |why: String| {
            StoreError::new(early_name.clone(), StoreErrorKind::Config).with_source(why)
        };
        self.validate().map_err(|e| config_error(e.to_string()))?;
        let (addrs, servers) = crate::connect::addrs(&self.url).map_err(config_error)?;
        let describe = format!("{servers} (bucket {})", self.bucket);

        let options = ConnectOptions::new()
            .name("rampart-dead-letter")
            .connection_timeout(self.connect_timeout)
            .request_timeout(Some(self.response_timeout));
        let limit = self.connect_timeout.saturating_add(self.response_timeout);
        let client = match tokio::time::timeout(limit, options.connect(addrs)).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(from_connect(&describe, e)),
            Err(_) => return Err(timed_out(&describe, "connect", limit)),
        };
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(self.response_timeout)
            .ack_timeout(self.response_timeout)
            .build(client.clone());

        // The stream a key-value bucket is (what `nats kv add` and async-nats'
        // `create_key_value` make), created directly: `create_key_value` first reads the
        // account's JetStream info in a form nats-server 2.9 does not send.
        let config = stream::Config {
            name: format!("KV_{}", self.bucket),
            description: Some("rampart dead letters: record id -> record JSON".to_owned()),
            subjects: vec![format!("$KV.{}.>", self.bucket)],
            max_messages_per_subject: 1,
            max_bytes: self
                .max_bytes
                .and_then(|b| i64::try_from(b).ok())
                .unwrap_or(-1),
            max_message_size: -1,
            storage: StorageType::File,
            num_replicas: self.replicas,
            allow_rollup: true,
            deny_delete: true,
            deny_purge: false,
            allow_direct: true,
            discard: DiscardPolicy::New,
            ..Default::default()
        };
        let open = crate::connect::open_bucket(&jetstream, &self.bucket, config);
        let kv = match tokio::time::timeout(self.response_timeout * 2, open).await {
            Ok(Ok(kv)) => kv,
            Ok(Err(text)) => {
                let lower = text.to_lowercase();
                let kind = if lower.contains("no responders")
                    || lower.contains("not enabled")
                    || lower.contains("different configuration")
                    || lower.contains("replicas")
                {
                    StoreErrorKind::Config
                } else {
                    StoreErrorKind::Unavailable
                };
                let hint = if lower.contains("no responders") {
                    " (is JetStream enabled? start nats-server with -js)"
                } else {
                    ""
                };
                return Err(StoreError::new(describe, kind)
                    .with_source(format!("open bucket {}: {text}{hint}", self.bucket)));
            }
            Err(_) => {
                return Err(timed_out(
                    &describe,
                    "open bucket",
                    self.response_timeout * 2,
                ));
            }
        };
        if kv.stream.cached_info().config.storage == StorageType::Memory {
            tracing::warn!(
                store = %describe,
                "the dead-letter bucket keeps its records in memory: a server restart loses them"
            );
        }
        tracing::debug!(store = %describe, "connected to the NATS dead-letter store");
        Ok(NatsDeadLetterStore {
            max_payload: client.server_info().max_payload,
            client,
            jetstream,
            kv,
            describe,
            response_timeout: self.response_timeout,
        })
    }
}

impl NatsDeadLetterStore {
    /// Connects to the NATS server at `url` (`nats://[user:password@]host[:port]`, several
    /// separated by commas) with the default settings: bucket `rampart_dlq`, one replica, 3 s
    /// to connect and 3 s per answer. See [`builder`](Self::builder) for the others and
    /// [`NatsDeadLetterStoreBuilder::connect`] for the errors.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).connect().await
    }

    /// A builder for a store on the NATS server(s) at `url`.
    pub fn builder(url: impl Into<String>) -> NatsDeadLetterStoreBuilder {
        NatsDeadLetterStoreBuilder::new(url.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_settings_are_config_errors_naming_the_field() {
        for (builder, field) in [
            (
                NatsDeadLetterStoreBuilder::new("nats://127.0.0.1:1".into()).bucket("a.b"),
                "bucket",
            ),
            (
                NatsDeadLetterStoreBuilder::new("nats://127.0.0.1:1".into()).replicas(0),
                "replicas",
            ),
            (
                NatsDeadLetterStoreBuilder::new("nats://127.0.0.1:1".into())
                    .response_timeout(Duration::ZERO),
                "response_timeout",
            ),
        ] {
            let err = builder.connect().await.unwrap_err();
            assert_eq!(err.kind(), StoreErrorKind::Config);
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[tokio::test]
    async fn a_bad_url_is_a_config_error_without_the_password() {
        let err = NatsDeadLetterStoreBuilder::new("nats://u:s3cret@127.0.0.1:notaport".into())
            .connect()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Config);
        let text = err.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("not a NATS URL"), "{text}");
        let err = NatsDeadLetterStoreBuilder::new("http://127.0.0.1:4222".into())
            .connect()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Config);
        assert!(err.to_string().contains("invalid scheme"), "{err}");
    }

    #[test]
    fn debug_shows_no_credentials() {
        let b = NatsDeadLetterStoreBuilder::new("nats://u:s3cret@a:1, nats://t0k@b:2".into());
        let text = format!("{b:?}");
        assert!(!text.contains("s3cret") && !text.contains("t0k"), "{text}");
        assert!(text.contains("nats://a:1,nats://b:2"), "{text}");
    }
}
