//! [`NatsDeadLetterStore`]: the [`DeadLetterStore`] on a NATS JetStream key-value bucket.

use std::{collections::BTreeMap, fmt, future::Future, time::Duration};

use async_nats::{
    Client,
    connection::State,
    jetstream::{
        self,
        consumer::{DeliverPolicy, ReplayPolicy, push::OrderedConfig},
        kv::{self, CreateErrorKind, UpdateErrorKind},
    },
};
use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use rampart_dead_letter::{
    BoxFuture, DeadLetter, DeadLetterId, DeadLetterStore, Filter, Query, Stats, StoreError,
    StoreErrorKind,
};

use crate::error::{from_nats, timed_out};

/// Requests in flight at once when one operation touches many records.
const CONCURRENCY: usize = 64;
/// Times `update` re-reads a record that changed between its read and its write.
const UPDATE_TRIES: usize = 5;

/// A [`DeadLetterStore`] on a NATS JetStream key-value bucket: one key per record (its id),
/// the record's JSON as the value. See the [crate docs](crate).
pub struct NatsDeadLetterStore {
    pub(crate) client: Client,
    pub(crate) jetstream: jetstream::Context,
    pub(crate) kv: kv::Store,
    pub(crate) describe: String,
    pub(crate) response_timeout: Duration,
    pub(crate) max_payload: usize,
}

impl fmt::Debug for NatsDeadLetterStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsDeadLetterStore")
            .field("store", &self.describe)
            .field("response_timeout", &self.response_timeout)
            .field("max_payload", &self.max_payload)
            .finish_non_exhaustive()
    }
}

/// A record as read from the bucket: its key, revision (stream sequence) and value.
struct Entry {
    key: String,
    revision: u64,
    value: Bytes,
}

impl NatsDeadLetterStore {
    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.kv.name
    }

    /// The subject a record with `id` is published on (`$KV.<bucket>.<id>`); consumers can
    /// follow new and changed records on `$KV.<bucket>.>`.
    pub fn subject(&self, id: DeadLetterId) -> String {
        format!("{}{id}", self.kv.prefix)
    }

    /// Deletes the bucket and every record in it. For tests and for retiring a bucket.
    pub async fn destroy(self) -> Result<(), StoreError> {
        let bucket = self.kv.name.clone();
        self.run("destroy", self.jetstream.delete_key_value(&bucket))
            .await
            .map(drop)
    }

    /// Runs `fut` within the response timeout, if connected.
    async fn run<T, E>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Result<T, StoreError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.connected(what)?;
        match tokio::time::timeout(self.response_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(from_nats(&self.describe, what, e)),
            Err(_) => Err(timed_out(&self.describe, what, self.response_timeout)),
        }
    }

    fn error(&self, kind: StoreErrorKind, why: impl Into<String>) -> StoreError {
        StoreError::new(self.describe.clone(), kind).with_source(why.into())
    }

    fn parse(&self, key: &str, json: &[u8]) -> Result<DeadLetter, StoreError> {
        DeadLetter::from_json(json)
            .map_err(|e| self.error(StoreErrorKind::Corrupt, format!("record {key}: {e}")))
    }

    /// The record as the value to publish, if the server accepts a message that large.
    fn value(&self, record: &DeadLetter) -> Result<Bytes, StoreError> {
        let json = record.to_json();
        // The subject and headers take a little room of the server's limit too.
        if json.len() + 256 > self.max_payload {
            return Err(self.error(
                StoreErrorKind::Config,
                format!(
                    "record {} is {} bytes, more than the server accepts in one message \
                     (max_payload {} bytes): raise max_payload or record less of the body",
                    record.id,
                    json.len(),
                    self.max_payload
                ),
            ));
        }
        Ok(Bytes::from(json))
    }

    /// Fails at once while the client is not connected. async-nats keeps what is published
    /// while it reconnects and sends it once connected: a write that had already been reported
    /// as failed would then be stored after all, long after. Checked before every request.
    fn connected(&self, what: &str) -> Result<(), StoreError> {
        match self.client.connection_state() {
            State::Connected => Ok(()),
            state => Err(self.error(
                StoreErrorKind::Unavailable,
                format!("{what}: not connected to the server ({state:?}); reconnecting"),
            )),
        }
    }

    /// Creates the key for `record`; its revision.
    async fn create(&self, record: &DeadLetter) -> Result<u64, StoreError> {
        let value = self.value(record)?;
        self.connected("append")?;
        let key = record.id.to_string();
        match tokio::time::timeout(self.response_timeout, self.kv.create(&key, value)).await {
            Ok(Ok(revision)) => Ok(revision),
            Ok(Err(e)) if e.kind() == CreateErrorKind::AlreadyExists => Err(self.error(
                StoreErrorKind::Conflict,
                format!("a record with id {key} is already stored"),
            )),
            Ok(Err(e)) => Err(from_nats(&self.describe, "append", e)),
            Err(_) => Err(timed_out(&self.describe, "append", self.response_timeout)),
        }
    }

    /// Removes every message of `key` up to and including `revision` (every message if
    /// `None`), leaving no marker behind; how many messages were removed.
    async fn purge_key(&self, key: &str, revision: Option<u64>) -> Result<u64, StoreError> {
        self.connected("delete")?;
        let subject = format!("{}{key}", self.kv.prefix);
        let purge = self.kv.stream.purge().filter(subject);
        let response = match revision {
            Some(rev) => {
                self.run("delete", purge.sequence(rev + 1).into_future())
                    .await?
            }
            None => self.run("delete", purge.into_future()).await?,
        };
        Ok(response.purged)
    }

    /// The current value of every record, by key: one pass of an ordered consumer that
    /// delivers the last message of each subject.
    async fn scan(&self) -> Result<BTreeMap<String, Entry>, StoreError> {
        let mut out = BTreeMap::new();
        let consumer = self
            .run(
                "scan",
                self.kv.stream.create_consumer(OrderedConfig {
                    deliver_subject: self.client.new_inbox(),
                    description: Some("rampart dead-letter scan".to_owned()),
                    filter_subject: format!("{}>", self.kv.prefix),
                    deliver_policy: DeliverPolicy::LastPerSubject,
                    replay_policy: ReplayPolicy::Instant,
                    ..Default::default()
                }),
            )
            .await?;
        if consumer.cached_info().num_pending == 0 {
            return Ok(out);
        }
        let mut messages = self.run("scan", consumer.messages()).await?;
        loop {
            let message = match self.run("scan", messages.try_next()).await? {
                Some(message) => message,
                None => {
                    return Err(self.error(
                        StoreErrorKind::Unavailable,
                        "scan: the server ended the scan early",
                    ));
                }
            };
            let info = message
                .info()
                .map_err(|e| self.error(StoreErrorKind::Unavailable, format!("scan: {e}")))?;
            let (revision, pending) = (info.stream_sequence, info.pending);
            let removed = message
                .message
                .headers
                .as_ref()
                .and_then(|h| h.get("KV-Operation"))
                .is_some_and(|op| op.as_str() != "PUT");
            if let Some(key) = message.message.subject.strip_prefix(&self.kv.prefix) {
                if removed {
                    out.remove(key);
                } else {
                    // A record changed during the scan arrives again: keep the newest.
                    let newer = out.get(key).is_none_or(|e: &Entry| e.revision < revision);
                    if newer {
                        out.insert(
                            key.to_owned(),
                            Entry {
                                key: key.to_owned(),
                                revision,
                                value: message.message.payload.clone(),
                            },
                        );
                    }
                }
            }
            if pending == 0 {
                return Ok(out);
            }
        }
    }

    /// The ids of every record, in id order (keys that are not ids are left out).
    async fn ids(&self) -> Result<Vec<DeadLetterId>, StoreError> {
        // The stream's subjects, from the server's own index (one request a page): unlike a
        // consumer's pass over the bucket (`kv.keys()`), whose end is told by a pending count
        // that records updated meanwhile can leave above zero for good, it always ends.
        let filter = format!("{}>", self.kv.prefix);
        let mut subjects = self
            .run("list", self.kv.stream.info_with_subjects(&filter))
            .await?;
        let mut ids = Vec::new();
        while let Some((subject, _)) = self.run("list", subjects.try_next()).await? {
            let Some(key) = subject.strip_prefix(&self.kv.prefix) else {
                continue;
            };
            match key.parse::<DeadLetterId>() {
                Ok(id) => ids.push(id),
                Err(_) => tracing::debug!(store = %self.describe, key, "not a record id; skipped"),
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }
}

impl DeadLetterStore for NatsDeadLetterStore {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    /// `Ok` once JetStream acknowledged the publish: the record is in the bucket's stream
    /// (on a majority of its replicas).
    fn append<'a>(&'a self, record: &'a DeadLetter) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { self.create(record).await.map(drop) })
    }

    /// Publishes every record at once (up to 64 in flight) and waits for every
    /// acknowledgement. All or none, as far as the server can be reached: if any record
    /// fails, the ones stored by this call are removed again before the error is returned; if
    /// that removal fails too, the error says so and those records stay (each at most once).
    fn append_batch<'a>(
        &'a self,
        records: &'a [DeadLetter],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let results: Vec<(usize, Result<u64, StoreError>)> = stream::iter(0..records.len())
                .map(|i| async move { (i, self.create(&records[i]).await) })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            let mut stored = Vec::new();
            let mut first_error: Option<(usize, StoreError)> = None;
            for (i, result) in results {
                match result {
                    Ok(revision) => stored.push((records[i].id.to_string(), revision)),
                    Err(e) => {
                        if first_error.as_ref().is_none_or(|(j, _)| i < *j) {
                            first_error = Some((i, e));
                        }
                    }
                }
            }
            let Some((_, error)) = first_error else {
                return Ok(());
            };
            let undo: Vec<Result<u64, StoreError>> = stream::iter(stored)
                .map(|(key, revision)| async move { self.purge_key(&key, Some(revision)).await })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            let kept = undo.iter().filter(|r| r.is_err()).count();
            if kept > 0 {
                tracing::warn!(
                    store = %self.describe,
                    kept,
                    "a failed dead-letter batch could not be taken back in full"
                );
                return Err(self.error(
                    error.kind(),
                    format!(
                        "{error}; and {kept} of the batch's records already stored could not \
                         be removed again: they stay stored"
                    ),
                ));
            }
            Err(error)
        })
    }

    fn get(&self, id: DeadLetterId) -> BoxFuture<'_, Result<Option<DeadLetter>, StoreError>> {
        Box::pin(async move {
            let key = id.to_string();
            let value = self.run("get", self.kv.get(&key)).await?;
            value.map(|v| self.parse(&key, &v)).transpose()
        })
    }

    /// Lists every key (a headers-only pass over the bucket), sorts them, and reads records
    /// after the cursor (up to 64 at once) until `limit` match: the cost grows with the
    /// number of records in the bucket, not only with the page.
    fn list<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<DeadLetter>, StoreError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            if query.limit == 0 {
                return Ok(out);
            }
            let ids = self.ids().await?;
            let start = query
                .after
                .map_or(0, |after| ids.partition_point(|id| *id <= after));
            let chunk = if query.filter == Filter::all() {
                query.limit.min(CONCURRENCY)
            } else {
                CONCURRENCY
            };
            for ids in ids[start..].chunks(chunk) {
                let values: Vec<(DeadLetterId, Option<Bytes>)> = stream::iter(ids.to_vec())
                    .map(|id| async move {
                        let value = self.run("list", self.kv.get(id.to_string())).await?;
                        Ok::<_, StoreError>((id, value))
                    })
                    .buffered(CONCURRENCY)
                    .try_collect()
                    .await?;
                for (id, value) in values {
                    // Deleted since the keys were listed.
                    let Some(value) = value else { continue };
                    let record = self.parse(&id.to_string(), &value)?;
                    if query.filter.matches(&record) {
                        out.push(record);
                        if out.len() == query.limit {
                            return Ok(out);
                        }
                    }
                }
            }
            Ok(out)
        })
    }

    /// A compare-and-set in two steps, atomic together: the stored record is read with its KV
    /// revision, its record revision is checked against `record.revision`, and the new value
    /// is written only at that KV revision. A write in between (another redrive) makes the KV
    /// update fail, and the check is made again on what that writer stored. A deleted record
    /// is never brought back.
    fn update<'a>(&'a self, record: &'a DeadLetter) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut next = record.clone();
            next.revision = record.revision.saturating_add(1);
            let value = self.value(&next)?;
            let key = record.id.to_string();
            for _ in 0..UPDATE_TRIES {
                let entry = self.run("update", self.kv.entry(&key)).await?;
                let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
                    return Err(
                        self.error(StoreErrorKind::NotFound, format!("no record with id {key}"))
                    );
                };
                let stored = self.parse(&key, &entry.value)?;
                if stored.revision != record.revision {
                    return Err(self.error(
                        StoreErrorKind::Stale,
                        format!(
                            "record {key} is at revision {}, not {}",
                            stored.revision, record.revision
                        ),
                    ));
                }
                self.connected("update")?;
                let update = self.kv.update(&key, value.clone(), entry.revision);
                match tokio::time::timeout(self.response_timeout, update).await {
                    Ok(Ok(_)) => return Ok(()),
                    // Written by someone else since it was read: check again what they stored.
                    Ok(Err(e)) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                    Ok(Err(e)) => return Err(from_nats(&self.describe, "update", e)),
                    Err(_) => {
                        return Err(timed_out(&self.describe, "update", self.response_timeout));
                    }
                }
            }
            Err(self.error(
                StoreErrorKind::Stale,
                format!("record {key} changed {UPDATE_TRIES} times while it was being updated"),
            ))
        })
    }

    /// Removes every message of the record's key from the bucket's stream, leaving no delete
    /// marker behind.
    fn delete(&self, id: DeadLetterId) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let key = id.to_string();
            let Some(entry) = self.run("delete", self.kv.entry(&key)).await? else {
                return Ok(false);
            };
            let purged = self.purge_key(&key, None).await?;
            Ok(entry.operation == kv::Operation::Put && purged > 0)
        })
    }

    /// Scans the bucket and removes each matching record at the revision it was read at: a
    /// record changed since is left alone (and checked again by the next purge).
    fn purge<'a>(&'a self, filter: &'a Filter) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut matching = Vec::new();
            for entry in self.scan().await?.into_values() {
                let record = self.parse(&entry.key, &entry.value)?;
                if filter.matches(&record) {
                    matching.push(entry);
                }
            }
            let removed: Vec<u64> = stream::iter(matching)
                .map(|e| async move { self.purge_key(&e.key, Some(e.revision)).await })
                .buffer_unordered(CONCURRENCY)
                .try_collect()
                .await?;
            Ok(removed.into_iter().filter(|&n| n > 0).count() as u64)
        })
    }

    /// Counts every record: one pass over the bucket, whose cost grows with its size.
    fn stats(&self) -> BoxFuture<'_, Result<Stats, StoreError>> {
        Box::pin(async move {
            let mut stats = Stats::default();
            for entry in self.scan().await?.into_values() {
                stats.add(&self.parse(&entry.key, &entry.value)?);
            }
            Ok(stats)
        })
    }
}
