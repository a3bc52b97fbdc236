//! [`RedisDeadLetterStore`]: the [`DeadLetterStore`] on Redis.

use std::{collections::BTreeMap, fmt, future::Future, time::Duration};

use rampart_dead_letter::{
    BoxFuture, DeadLetter, DeadLetterId, DeadLetterStore, Filter, ParkReason, Query, State, Stats,
    StoreError, StoreErrorKind, system_time_from_millis, unix_millis,
};
use redis::{ErrorKind, RedisResult, ServerErrorKind, aio::ConnectionManager};

use crate::{
    error::{from_redis, timed_out, unexpected},
    scripts::Scripts,
};

/// Records read per round trip while scanning (`list` with a filter, `purge`).
const SCAN_PAGE: usize = 500;
/// Records removed per script call in `purge`.
const PURGE_CHUNK: usize = 100;

/// The keys of one store.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    records: String,
    ids: String,
    counts: String,
    pending: String,
    stream: String,
}

impl Keys {
    /// The Redis type of each key of [`all`](Self::all).
    pub(crate) const TYPES: [&'static str; 5] = ["hash", "zset", "hash", "zset", "stream"];

    pub(crate) fn new(prefix: &str) -> Self {
        Self {
            records: format!("{prefix}:records"),
            ids: format!("{prefix}:ids"),
            counts: format!("{prefix}:counts"),
            pending: format!("{prefix}:pending"),
            stream: format!("{prefix}:stream"),
        }
    }

    pub(crate) fn all(&self) -> [&str; 5] {
        [
            &self.records,
            &self.ids,
            &self.counts,
            &self.pending,
            &self.stream,
        ]
    }
}

/// `append` also waits for replicas (Redis `WAIT`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplicaAck {
    pub(crate) replicas: u32,
    pub(crate) timeout: Duration,
}

/// A [`DeadLetterStore`] on Redis: records in a hash, their ids in a sorted set, and every
/// appended record on a stream that workers can consume. See the [crate docs](crate).
pub struct RedisDeadLetterStore {
    pub(crate) conn: ConnectionManager,
    pub(crate) keys: Keys,
    pub(crate) scripts: Scripts,
    pub(crate) describe: String,
    pub(crate) response_timeout: Duration,
    pub(crate) stream_max_len: Option<u64>,
    pub(crate) max_records: Option<u64>,
    pub(crate) replicas: Option<ReplicaAck>,
}

impl fmt::Debug for RedisDeadLetterStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisDeadLetterStore")
            .field("store", &self.describe)
            .field("response_timeout", &self.response_timeout)
            .field("stream_max_len", &self.stream_max_len)
            .field("max_records", &self.max_records)
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}

impl RedisDeadLetterStore {
    /// The stream every appended record is added to (`<prefix>:stream`), for consumers.
    pub fn stream_key(&self) -> &str {
        &self.keys.stream
    }

    /// Removes every key of this store (records, index, counters, stream): its records are
    /// gone. For tests and for retiring a prefix.
    pub async fn destroy(self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let keys = self.keys.all();
        self.run("destroy", async move {
            redis::cmd("DEL")
                .arg(&keys[..])
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    /// Runs `fut` within the response timeout.
    async fn run<T>(
        &self,
        what: &str,
        fut: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        self.run_within(what, self.response_timeout, fut).await
    }

    async fn run_within<T>(
        &self,
        what: &str,
        limit: Duration,
        fut: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(from_redis(&self.describe, e)),
            Err(_) => Err(timed_out(&self.describe, what, limit)),
        }
    }

    fn error(&self, kind: StoreErrorKind, why: impl Into<String>) -> StoreError {
        StoreError::new(self.describe.clone(), kind).with_source(why.into())
    }

    fn parse(&self, id: &str, json: &[u8]) -> Result<DeadLetter, StoreError> {
        DeadLetter::from_json(json)
            .map_err(|e| self.error(StoreErrorKind::Corrupt, format!("record {id}: {e}")))
    }

    /// Appends `records` in one script: all or none.
    async fn insert(&self, records: &[DeadLetter]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut inv = self.scripts.append.prepare_invoke();
        for key in self.keys.all() {
            inv.key(key);
        }
        inv.arg(self.stream_max_len.unwrap_or(0))
            .arg(self.max_records.unwrap_or(0));
        for r in records {
            inv.arg(r.id.to_string())
                .arg(r.to_json())
                .arg(r.state.as_str())
                .arg(r.failure.kind.as_str())
                .arg(unix_millis(r.first_failed_at));
        }
        let mut conn = self.conn.clone();
        let reply: String = match self.replicas {
            None => {
                self.run("append", async { inv.invoke_async(&mut conn).await })
                    .await?
            }
            Some(ack) => {
                let timeout_ms = u64::try_from(ack.timeout.as_millis()).unwrap_or(u64::MAX);
                let mut pipe = redis::pipe();
                pipe.invoke_script(&inv)
                    .cmd("WAIT")
                    .arg(ack.replicas)
                    .arg(timeout_ms);
                let limit = self.response_timeout + ack.timeout;
                let (reply, acked): (String, i64) = self
                    .run_within("append", limit, async {
                        match pipe.query_async(&mut conn).await {
                            // The server lost the script (a restart, SCRIPT FLUSH): load it
                            // and send again. The script did not run, so nothing is doubled.
                            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                                inv.load_async(&mut conn).await?;
                                pipe.query_async(&mut conn).await
                            }
                            other => other,
                        }
                    })
                    .await?;
                if reply == "ok" && acked < i64::from(ack.replicas) {
                    tracing::warn!(
                        store = %self.describe,
                        acked,
                        wanted = ack.replicas,
                        "dead letters stored on the Redis primary but not acknowledged by enough replicas"
                    );
                    return Err(self.error(
                        StoreErrorKind::Unavailable,
                        format!(
                            "stored on the primary, but acknowledged by {acked} of {} replicas \
                             within {:?}",
                            ack.replicas, ack.timeout
                        ),
                    ));
                }
                reply
            }
        };
        match reply.split_once(' ').unwrap_or((reply.as_str(), "")) {
            ("ok", _) => Ok(()),
            ("conflict", id) => Err(self.error(
                StoreErrorKind::Conflict,
                format!("a record with id {id} is already stored"),
            )),
            ("full", held) => Err(self.error(
                StoreErrorKind::Full,
                format!(
                    "holds {held} of {} records",
                    self.max_records.unwrap_or_default()
                ),
            )),
            _ => Err(unexpected(
                &self.describe,
                format!("unexpected reply to append: {reply:?}"),
            )),
        }
    }

    /// Up to `count` (id, JSON) pairs after `start` (`-` or `(<id>`), in id order, and whether
    /// the index had that many.
    async fn page(&self, start: &str, count: usize) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut inv = self.scripts.page.prepare_invoke();
        inv.key(&self.keys.ids)
            .key(&self.keys.records)
            .arg(start)
            .arg(count);
        let mut conn = self.conn.clone();
        let flat: Vec<Vec<u8>> = self
            .run("list", async { inv.invoke_async(&mut conn).await })
            .await?;
        let mut out = Vec::with_capacity(flat.len() / 2);
        let mut items = flat.into_iter();
        while let (Some(id), Some(json)) = (items.next(), items.next()) {
            let id = String::from_utf8(id)
                .map_err(|_| unexpected(&self.describe, "an id in the index is not UTF-8"))?;
            out.push((id, json));
        }
        Ok(out)
    }

    /// Visits records after `after` in id order, a page at a time, until `visit` says stop or
    /// the records end.
    async fn scan(
        &self,
        after: Option<DeadLetterId>,
        page_size: usize,
        mut visit: impl FnMut(&str, Vec<u8>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mut start = after.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        loop {
            let page = self.page(&start, page_size).await?;
            let full_page = page.len() == page_size;
            let Some(last) = page.last().map(|(id, _)| format!("({id}")) else {
                return Ok(());
            };
            for (id, json) in page {
                // An id without a record: removed between the two reads of another client's
                // own script, which cannot happen here; skip it.
                if json.is_empty() {
                    continue;
                }
                if !visit(&id, json)? {
                    return Ok(());
                }
            }
            if !full_page {
                return Ok(());
            }
            start = last;
        }
    }

    /// Removes `(id, expected JSON)` pairs: each only if still exactly as read.
    async fn remove(&self, pairs: &[(String, Vec<u8>)]) -> Result<u64, StoreError> {
        let mut inv = self.scripts.remove.prepare_invoke();
        inv.key(&self.keys.records)
            .key(&self.keys.ids)
            .key(&self.keys.counts)
            .key(&self.keys.pending);
        for (id, expected) in pairs {
            inv.arg(id).arg(expected);
        }
        let mut conn = self.conn.clone();
        let removed: u64 = self
            .run("delete", async { inv.invoke_async(&mut conn).await })
            .await?;
        Ok(removed)
    }
}

impl DeadLetterStore for RedisDeadLetterStore {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn append<'a>(&'a self, record: &'a DeadLetter) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.insert(std::slice::from_ref(record)))
    }

    /// All or none: one script checks every id (and the capacity) before it stores any.
    fn append_batch<'a>(
        &'a self,
        records: &'a [DeadLetter],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.insert(records))
    }

    fn get(&self, id: DeadLetterId) -> BoxFuture<'_, Result<Option<DeadLetter>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let field = id.to_string();
            let json: Option<Vec<u8>> = self
                .run("get", async {
                    redis::cmd("HGET")
                        .arg(&self.keys.records)
                        .arg(&field)
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            json.map(|json| self.parse(&field, &json)).transpose()
        })
    }

    fn list<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<DeadLetter>, StoreError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            if query.limit == 0 {
                return Ok(out);
            }
            // Without a filter a page is exactly what was asked for.
            let page_size = if query.filter == Filter::all() {
                query.limit.min(SCAN_PAGE)
            } else {
                SCAN_PAGE
            };
            self.scan(query.after, page_size, |id, json| {
                let record = self.parse(id, &json)?;
                if query.filter.matches(&record) {
                    out.push(record);
                }
                Ok(out.len() < query.limit)
            })
            .await?;
            Ok(out)
        })
    }

    fn update<'a>(&'a self, record: &'a DeadLetter) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut next = record.clone();
            next.revision = record.revision.saturating_add(1);
            let mut inv = self.scripts.update.prepare_invoke();
            inv.key(&self.keys.records)
                .key(&self.keys.counts)
                .key(&self.keys.pending)
                .arg(record.id.to_string())
                .arg(next.to_json())
                .arg(record.state.as_str())
                .arg(record.failure.kind.as_str())
                .arg(unix_millis(record.first_failed_at))
                .arg(record.revision);
            let mut conn = self.conn.clone();
            let reply: String = self
                .run("update", async { inv.invoke_async(&mut conn).await })
                .await?;
            match reply.as_str() {
                "ok" => Ok(()),
                "missing" => Err(self.error(
                    StoreErrorKind::NotFound,
                    format!("no record with id {}", record.id),
                )),
                "corrupt" => Err(self.error(
                    StoreErrorKind::Corrupt,
                    format!(
                        "the stored record {} is not a dead-letter record",
                        record.id
                    ),
                )),
                stale if stale.starts_with("stale ") => Err(self.error(
                    StoreErrorKind::Stale,
                    format!(
                        "record {} is at revision {}, not {}",
                        record.id,
                        &stale[6..],
                        record.revision
                    ),
                )),
                _ => Err(unexpected(
                    &self.describe,
                    format!("unexpected reply to update: {reply:?}"),
                )),
            }
        })
    }

    fn delete(&self, id: DeadLetterId) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move { Ok(self.remove(&[(id.to_string(), Vec::new())]).await? > 0) })
    }

    /// Scans the records in id order and removes the matching ones, a chunk at a time; a
    /// record changed since it was read is left alone (it is checked again by the next purge).
    fn purge<'a>(&'a self, filter: &'a Filter) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut removed = 0;
            let mut after = None;
            loop {
                let mut chunk = Vec::new();
                let mut last = None;
                self.scan(after, SCAN_PAGE, |id, json| {
                    let record = self.parse(id, &json)?;
                    last = Some(record.id);
                    if filter.matches(&record) {
                        chunk.push((id.to_owned(), json));
                    }
                    Ok(chunk.len() < PURGE_CHUNK)
                })
                .await?;
                if !chunk.is_empty() {
                    removed += self.remove(&chunk).await?;
                }
                // The scan stopped early only to hand over a full chunk.
                if chunk.len() < PURGE_CHUNK {
                    return Ok(removed);
                }
                after = last;
            }
        })
    }

    /// From counters kept by the same scripts that change records: O(1), whatever the size.
    fn stats(&self) -> BoxFuture<'_, Result<Stats, StoreError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let mut pipe = redis::pipe();
            pipe.atomic()
                .cmd("HGETALL")
                .arg(&self.keys.counts)
                .cmd("ZRANGE")
                .arg(&self.keys.pending)
                .arg(0)
                .arg(0)
                .arg("WITHSCORES");
            let (counts, oldest): (BTreeMap<String, i64>, Vec<(String, f64)>) = self
                .run("stats", async { pipe.query_async(&mut conn).await })
                .await?;
            let mut stats = Stats::default();
            for (field, n) in counts {
                let Ok(n) = u64::try_from(n) else { continue };
                if n == 0 {
                    continue;
                }
                // Names this version does not know (a newer writer's) are left out.
                match field.split_once(':') {
                    None if field == "total" => stats.total = n,
                    Some(("state", state)) => {
                        if let Ok(state) = state.parse::<State>() {
                            stats.by_state.insert(state, n);
                        }
                    }
                    Some(("kind", kind)) => {
                        if let Ok(kind) = kind.parse::<ParkReason>() {
                            stats.by_kind.insert(kind, n);
                        }
                    }
                    _ => {}
                }
            }
            stats.oldest_pending = oldest.first().map(|(_, ms)| {
                // Unix milliseconds, exact in an f64 until the year 287 396.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                system_time_from_millis(ms.max(0.0) as u64)
            });
            Ok(stats)
        })
    }
}
