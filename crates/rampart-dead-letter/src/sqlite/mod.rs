//! [`SqliteStore`]: the embedded, durable dead-letter store, and the default one. One SQLite
//! file, no server; `append` returns `Ok` only once the record is committed and `fsync`ed.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rampart_core::{BoxFuture, error::ConfigError};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension as _, types::Value};
use tokio::sync::oneshot;

use crate::{
    record::{DeadLetter, DeadLetterId, ParkReason, State, system_time_from_millis, unix_millis},
    store::{DeadLetterStore, Filter, Query, Stats, StoreError, StoreErrorKind},
};

mod builder;
mod query;
mod schema;
mod writer;

pub use self::builder::SqliteStoreBuilder;
use self::{
    builder::{DEFAULT_BUSY_TIMEOUT, DEFAULT_MAX_BATCH},
    schema::{APPLICATION_ID, SCHEMA_VERSION},
};
use self::{
    query::{read_stats, where_clause},
    writer::{ReadJob, Row, Worker, WriteCommand, WriteOp, Writer, serve_reads, sql_error},
};

const COMPONENT: &str = "sqlite dead-letter store";

/// Dead letters in a SQLite file: durable, embedded, readable with `sqlite3`.
///
/// ```
/// use rampart_dead_letter::{DeadLetter, DeadLetterStore, Failure, ParkReason, SqliteStore, Target};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("dlq.db");
/// let store = SqliteStore::builder(&path).max_batch(256).open()?;
///
/// let record = DeadLetter::new(
///     "billing",
///     Target { method: "POST".into(), uri: "http://billing/charge".into(), ..Default::default() },
///     Failure::from_status(ParkReason::Transient, http::StatusCode::BAD_GATEWAY),
/// );
/// store.append(&record).await?; // committed and fsynced
/// assert_eq!(store.get(record.id).await?, Some(record));
/// assert_eq!(store.describe(), format!("sqlite:{}", path.display()));
/// # Ok(())
/// # }
/// ```
///
/// # The file
///
/// The file is an ordinary SQLite 3 database, so the standard `sqlite3` tool reads it (and
/// `jq` reads the records):
///
/// ```text
/// sqlite3 dlq.db "select id, state, kind from dead_letters"
/// sqlite3 dlq.db "select record from dead_letters where state = 'pending'" | jq .target.uri
/// ```
///
/// One table, `dead_letters`, one row per record:
///
/// | column | type | holds |
/// |---|---|---|
/// | `id` | `TEXT PRIMARY KEY` | the record's id, a hyphenated lowercase UUID v7 (so text order is id order, oldest first) |
/// | `state` | `TEXT` | `pending`, `redriving`, `delivered`, `given_up` |
/// | `kind` | `TEXT` | the failure kind: `transient`, `fatal`, `circuit_open`, `bulkhead_full`, `timeout` |
/// | `service` | `TEXT` | the service that parked it |
/// | `first_failed_at`, `last_failed_at`, `updated_at` | `INTEGER` | Unix time in milliseconds |
/// | `record` | `TEXT` | the whole record as JSON, in the [record format](crate::DeadLetter#format-version-1) |
/// | `revision` | `INTEGER` | the record's [`revision`](DeadLetter::revision): an `update` is `UPDATE … WHERE id = ? AND revision = ?` (schema version 2; a version-1 file gains the column, at 0, when it is opened) |
///
/// The columns besides `record` are copies of the record's fields, kept for filtering and
/// counting; `record` is what is read back. Indexes: `(state, id)`, `(kind, id)` and
/// `(service, id)` for filtered pages in id order, and `(state, first_failed_at)` for the age
/// of the backlog. `PRAGMA user_version` holds the schema version, [`SqliteStore::SCHEMA_VERSION`]; a file
/// with a newer one is refused rather than misread. `PRAGMA application_id` is
/// [`SqliteStore::APPLICATION_ID`] (`0x52444c51`, "RDLQ"), so a database that belongs to something else is
/// refused too. Changing rows by hand with `sqlite3` is possible, but keep the columns and the
/// JSON in step.
///
/// # Durability
///
/// The file is in [WAL mode](https://www.sqlite.org/wal.html): while a store is open, two
/// files sit beside it, `dlq.db-wal` and `dlq.db-shm`. They are part of the database: copy or
/// move the three together, or only while no store has the file open (on the last close
/// SQLite folds the WAL back into the file and removes them). The WAL grows with the writes
/// between two checkpoints (SQLite checkpoints every 1000 pages, about 4 MiB) and is cut back
/// to 64 MiB after a burst. Keep the file on a local disk: WAL needs shared memory, which
/// network file systems do not give.
///
/// With [`synchronous(true)`](SqliteStoreBuilder::synchronous), the default
/// (`PRAGMA synchronous=FULL`), every transaction's commit is `fsync`ed before any `append` in
/// it returns `Ok`: an acknowledged record survives a crash of the process, of the machine, or
/// a power cut. With `synchronous(false)` (`PRAGMA synchronous=NORMAL`) a commit is written but
/// not synced: an acknowledged record survives a crash of the process, but not of the machine.
///
/// # Group commit
///
/// An `fsync` costs from tens of microseconds to several milliseconds, depending on the disk, so
/// one transaction per record would cap the store at a few hundred to a few thousand records a
/// second. Instead, one writer thread owns the write connection. Every write (`append`,
/// `append_batch`, `update`, `delete`, `purge`) is a command sent to it; it takes the first
/// command in its queue and every other one already waiting (up to
/// [`max_batch`](SqliteStoreBuilder::max_batch) records), runs them in one transaction, commits
/// (one `fsync`), and only then answers each one. N appends that arrive while a commit is
/// under way share the next commit.
///
/// The trade-off is latency against throughput, and it is made without a timer: a lone append
/// is committed at once (one `fsync` of latency, as without grouping); under load an append
/// waits for the commit in progress and then for its own, at most about two commits. Nothing
/// waits to fill a batch. Commands in one transaction are independent: an append whose id is
/// already stored fails with [`StoreErrorKind::Conflict`] and the others still commit. Only a
/// failure of the transaction itself fails every command in it: a full disk
/// ([`StoreErrorKind::Full`]), a disk error, or a lock another process held longer than the
/// [`busy_timeout`](SqliteStoreBuilder::busy_timeout) ([`StoreErrorKind::Unavailable`]).
/// [`append_batch`](DeadLetterStore::append_batch) is all or nothing: its records go into one
/// transaction, and one conflicting id keeps every one of them out.
///
/// Measured (`cargo bench -p rampart-benches --bench dead_letter`, records of about 1.2 KB of
/// JSON, durability on, a 2-core VM with a virtio disk): about 1,000 to 2,600 appends a second
/// one after another, about 17,000 a second from 64 concurrent tasks, about 19,000 a second in
/// batches of 100. Batched, the disk's write bandwidth is the limit: SQLite writes each page
/// twice, to the WAL and at the checkpoint.
///
/// Reads (`get`, `list`, `stats`) run on a second thread with its own connection; in WAL mode
/// they never wait for the writer, and they see only committed records.
///
/// # Threads, blocking and dropping
///
/// The store's futures only wait for an answer from its threads, so they never block the
/// executor (and need no tokio runtime). [`SqliteStore::open`] does block: it opens the file
/// and creates the schema, so call it at start-up (or in `spawn_blocking`). A write whose
/// future is dropped after its first poll may still be committed. Dropping the store lets the
/// writer finish every command already queued, then waits for both threads to exit, so the
/// file is closed when `drop` returns; that wait is at most about one commit.
pub struct SqliteStore {
    name: Arc<str>,
    path: PathBuf,
    max_batch: usize,
    synchronous: bool,
    // Dropped in this order: the writer finishes its queue first.
    writer: Worker<WriteCommand>,
    reader: Worker<ReadJob>,
}

impl SqliteStore {
    /// The schema version this crate writes and reads, kept in `PRAGMA user_version`.
    pub const SCHEMA_VERSION: i64 = SCHEMA_VERSION;

    /// `PRAGMA application_id` of a dead-letter database: `0x52444c51`, "RDLQ" in ASCII.
    pub const APPLICATION_ID: i64 = APPLICATION_ID;

    /// Opens (creating it if needed) the store in the file at `path`, with the default
    /// settings: durable commits, batches of up to [`SqliteStoreBuilder::DEFAULT_MAX_BATCH`] records.
    ///
    /// Blocks while it opens the file. A directory that does not exist, a file that is not a
    /// SQLite database (or is another program's), or one with a newer schema is a
    /// [`StoreErrorKind::Config`] error; other failures to open it are
    /// [`StoreErrorKind::Unavailable`]. Either way the message names the path.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::builder(path).open()
    }

    /// A builder for a store in the file at `path`, to change the settings.
    pub fn builder(path: impl AsRef<Path>) -> SqliteStoreBuilder {
        SqliteStoreBuilder {
            path: path.as_ref().to_path_buf(),
            max_batch: DEFAULT_MAX_BATCH,
            synchronous: true,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
        }
    }

    /// The database file's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn stopped(&self) -> StoreError {
        StoreError::new(&*self.name, StoreErrorKind::Unavailable)
            .with_source("the store's worker thread has stopped")
    }

    /// Sends `op` to the writer and waits for its commit.
    async fn write(&self, op: WriteOp) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(WriteCommand { op, reply })
            .map_err(|()| self.stopped())?;
        answer.await.map_err(|_| self.stopped())?
    }

    /// Runs `f` on the reader thread.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let _ = reply.send(f(conn));
        });
        self.reader.send(job).map_err(|()| self.stopped())?;
        answer
            .await
            .map_err(|_| self.stopped())?
            .map_err(|e| sql_error(&self.name, &e))
    }

    fn parse(&self, json: &str) -> Result<DeadLetter, StoreError> {
        DeadLetter::from_json(json.as_bytes())
            .map_err(|e| StoreError::new(&*self.name, StoreErrorKind::Corrupt).with_source(e))
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("max_batch", &self.max_batch)
            .field("synchronous", &self.synchronous)
            .finish_non_exhaustive()
    }
}

impl DeadLetterStore for SqliteStore {
    fn describe(&self) -> String {
        self.name.to_string()
    }

    fn append<'a>(&'a self, record: &'a DeadLetter) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.write(WriteOp::Append(vec![Row::of(record)]))
                .await
                .map(drop)
        })
    }

    fn append_batch<'a>(
        &'a self,
        records: &'a [DeadLetter],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            if records.is_empty() {
                return Ok(());
            }
            let rows = records.iter().map(Row::of).collect();
            self.write(WriteOp::Append(rows)).await.map(drop)
        })
    }

    fn get(&self, id: DeadLetterId) -> BoxFuture<'_, Result<Option<DeadLetter>, StoreError>> {
        Box::pin(async move {
            let key = id.to_string();
            let json = self
                .read(move |conn| {
                    conn.prepare_cached("SELECT record FROM dead_letters WHERE id = ?1")?
                        .query_row([&key], |row| row.get::<_, String>(0))
                        .optional()
                })
                .await?;
            json.map(|j| self.parse(&j)).transpose()
        })
    }

    fn list<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<DeadLetter>, StoreError>> {
        Box::pin(async move {
            if query.limit == 0 {
                return Ok(Vec::new());
            }
            let (mut sql, mut args) = where_clause(&query.filter, query.after);
            sql.insert_str(0, "SELECT record FROM dead_letters");
            sql.push_str(" ORDER BY id LIMIT ?");
            args.push(Value::Integer(
                i64::try_from(query.limit).unwrap_or(i64::MAX),
            ));
            let rows = self
                .read(move |conn| {
                    conn.prepare_cached(&sql)?
                        .query_map(rusqlite::params_from_iter(args), |row| {
                            row.get::<_, String>(0)
                        })?
                        .collect::<rusqlite::Result<Vec<String>>>()
                })
                .await?;
            rows.iter().map(|j| self.parse(j)).collect()
        })
    }

    fn update<'a>(&'a self, record: &'a DeadLetter) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.write(WriteOp::Update(Row::updated(record)))
                .await
                .map(drop)
        })
    }

    fn delete(&self, id: DeadLetterId) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            self.write(WriteOp::Delete(id.to_string()))
                .await
                .map(|n| n > 0)
        })
    }

    fn purge<'a>(&'a self, filter: &'a Filter) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move { self.write(WriteOp::Purge(filter.clone())).await })
    }

    fn stats(&self) -> BoxFuture<'_, Result<Stats, StoreError>> {
        Box::pin(async move {
            let (by_state, by_kind, oldest) = self
                .read(|conn| {
                    // One read transaction: the counts and the age agree with each other.
                    conn.execute_batch("BEGIN")?;
                    let result = read_stats(conn);
                    let _ = conn.execute_batch("COMMIT");
                    result
                })
                .await?;
            let corrupt = |what: &str, name: &str| {
                StoreError::new(&*self.name, StoreErrorKind::Corrupt)
                    .with_source(format!("unknown {what} {name:?} in the dead_letters table"))
            };
            let mut stats = Stats::default();
            for (state, n) in by_state {
                let state: State = state.parse().map_err(|_| corrupt("state", &state))?;
                let n = u64::try_from(n).unwrap_or(0);
                stats.total += n;
                stats.by_state.insert(state, n);
            }
            for (kind, n) in by_kind {
                let kind: ParkReason = kind.parse().map_err(|_| corrupt("kind", &kind))?;
                stats.by_kind.insert(kind, u64::try_from(n).unwrap_or(0));
            }
            stats.oldest_pending =
                oldest.map(|ms| system_time_from_millis(u64::try_from(ms).unwrap_or(0)));
            Ok(stats)
        })
    }
}

#[cfg(test)]
mod tests;
