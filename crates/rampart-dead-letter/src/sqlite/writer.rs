//! The writer thread that owns the write connection and commits writes in groups, the rows it
//! writes, and the worker threads of a [`SqliteStore`](super::SqliteStore).

use std::{
    sync::{Arc, mpsc},
    thread::{self, JoinHandle},
};

use rusqlite::{Connection, ErrorCode, OptionalExtension as _};
use tokio::sync::oneshot;

use super::query::{INSERT, UPDATE, millis, where_clause};
use crate::{
    record::DeadLetter,
    store::{Filter, StoreError, StoreErrorKind},
};

/// What kind of store error a SQLite error is.
pub(super) fn sql_error(name: &str, e: &rusqlite::Error) -> StoreError {
    let kind = match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreErrorKind::Full,
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreErrorKind::Corrupt,
        _ => StoreErrorKind::Unavailable,
    };
    StoreError::new(name, kind).with_source(e.to_string())
}

/// A record as it goes into its row: serialized on the caller's task, not the writer's thread.
pub(super) struct Row {
    id: String,
    state: &'static str,
    kind: &'static str,
    service: String,
    first_failed_at: i64,
    last_failed_at: i64,
    updated_at: i64,
    record: String,
    /// The revision the row is stored with.
    revision: i64,
    /// The revision the writer read, for an update.
    expected: i64,
}

impl Row {
    /// The row of a new record, stored as it is.
    pub(super) fn of(r: &DeadLetter) -> Self {
        Self::with(r, r.to_json(), r.revision)
    }

    /// The row that replaces `r`'s stored one, if that is still at `r.revision`: `r` at the
    /// next revision.
    pub(super) fn updated(r: &DeadLetter) -> Self {
        let mut next = r.clone();
        next.revision = r.revision.saturating_add(1);
        let mut row = Self::with(r, next.to_json(), next.revision);
        row.expected = revision(r.revision);
        row
    }

    fn with(r: &DeadLetter, record: String, stored: u64) -> Self {
        Self {
            id: r.id.to_string(),
            state: r.state.as_str(),
            kind: r.failure.kind.as_str(),
            service: r.service.clone(),
            first_failed_at: millis(r.first_failed_at),
            last_failed_at: millis(r.last_failed_at),
            updated_at: millis(r.updated_at),
            record,
            revision: revision(stored),
            expected: revision(r.revision),
        }
    }

    /// Runs `sql` (`INSERT` or `UPDATE`, parameters in column order, then the expected
    /// revision for an `UPDATE`) with this row; how many rows it changed.
    fn execute(&self, conn: &Connection, sql: &str) -> rusqlite::Result<usize> {
        let mut stmt = conn.prepare_cached(sql)?;
        let columns = rusqlite::params![
            self.id,
            self.state,
            self.kind,
            self.service,
            self.first_failed_at,
            self.last_failed_at,
            self.updated_at,
            self.record,
            self.revision,
        ];
        if stmt.parameter_count() > columns.len() {
            let mut all = columns.to_vec();
            all.push(&self.expected);
            stmt.execute(all.as_slice())
        } else {
            stmt.execute(columns)
        }
    }
}

/// A revision as SQLite keeps it (a signed 64-bit integer; no record is changed 2^63 times).
pub(super) fn revision(r: u64) -> i64 {
    i64::try_from(r).unwrap_or(i64::MAX)
}

/// A write for the writer thread.
pub(super) enum WriteOp {
    /// Insert every row, all or none.
    Append(Vec<Row>),
    Update(Row),
    Delete(String),
    Purge(Filter),
}

/// A write and where to answer it: with the number of rows it changed.
pub(super) struct WriteCommand {
    pub(super) op: WriteOp,
    pub(super) reply: oneshot::Sender<Result<u64, StoreError>>,
}

impl WriteCommand {
    /// Its share of a transaction's `max_batch`.
    fn weight(&self) -> usize {
        match &self.op {
            WriteOp::Append(rows) => rows.len().max(1),
            _ => 1,
        }
    }
}

/// A read for the reader thread; it answers through a channel of its own.
pub(super) type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// The reader thread: runs each job until every sender is gone.
pub(super) fn serve_reads(conn: &Connection, jobs: &mpsc::Receiver<ReadJob>) {
    while let Ok(job) = jobs.recv() {
        job(conn);
    }
}

/// The thread that owns the write connection and commits writes in groups.
pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) name: Arc<str>,
    pub(super) max_batch: usize,
}

impl Writer {
    /// Commits groups of commands until every sender is gone and the queue is empty.
    pub(super) fn run(mut self, commands: &mpsc::Receiver<WriteCommand>) {
        let mut group = Vec::new();
        while let Ok(first) = commands.recv() {
            let mut weight = first.weight();
            group.push(first);
            while weight < self.max_batch {
                match commands.try_recv() {
                    Ok(next) => {
                        weight += next.weight();
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
            self.commit(&mut group);
        }
    }

    fn error(&self, e: &rusqlite::Error) -> StoreError {
        sql_error(&self.name, e)
    }

    /// Runs `group` in one transaction and answers each command once it is committed.
    fn commit(&mut self, group: &mut Vec<WriteCommand>) {
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            let err = self.error(&e);
            tracing::warn!(store = %self.name, error = %err, "dead-letter transaction failed to start");
            for cmd in group.drain(..) {
                let _ = cmd.reply.send(Err(err.clone()));
            }
            return;
        }
        let mut answers = Vec::with_capacity(group.len());
        let mut failed: Option<StoreError> = None;
        for cmd in group.drain(..) {
            if failed.is_none() {
                let result = self.apply(&cmd.op);
                if self.conn.is_autocommit() {
                    // SQLite rolled the whole transaction back (an I/O error, a full disk):
                    // nothing of it stands, answer every command with the failure.
                    failed = Some(result.err().unwrap_or_else(|| {
                        StoreError::new(&*self.name, StoreErrorKind::Unavailable)
                            .with_source("the transaction was rolled back")
                    }));
                    answers.push((cmd.reply, Ok(0)));
                } else {
                    answers.push((cmd.reply, result));
                }
            } else {
                answers.push((cmd.reply, Ok(0)));
            }
        }
        let committed = match failed {
            Some(err) => Err(err),
            None => self.conn.execute_batch("COMMIT").map_err(|e| {
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                self.error(&e)
            }),
        };
        match committed {
            Ok(()) => {
                for (reply, result) in answers {
                    let _ = reply.send(result);
                }
            }
            Err(err) => {
                tracing::warn!(store = %self.name, error = %err, "dead-letter transaction failed");
                for (reply, _) in answers {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }

    /// Runs one command inside the open transaction; a failure leaves the transaction as it
    /// was before the command (unless SQLite rolled it all back, which `commit` checks).
    fn apply(&self, op: &WriteOp) -> Result<u64, StoreError> {
        match op {
            WriteOp::Append(rows) => match rows.as_slice() {
                // One statement: a failed INSERT undoes itself and nothing else.
                [row] => self.insert(row).map(|()| 1),
                rows => {
                    self.savepoint("SAVEPOINT append_batch")?;
                    match rows.iter().try_for_each(|row| self.insert(row)) {
                        Ok(()) => {
                            self.savepoint("RELEASE append_batch")?;
                            Ok(rows.len() as u64)
                        }
                        Err(err) => {
                            if !self.conn.is_autocommit() {
                                let _ = self.conn.execute_batch(
                                    "ROLLBACK TO append_batch; RELEASE append_batch",
                                );
                            }
                            Err(err)
                        }
                    }
                }
            },
            WriteOp::Update(row) => match row.execute(&self.conn, UPDATE) {
                Ok(0) => Err(self.not_updated(row)),
                Ok(n) => Ok(n as u64),
                Err(e) => Err(self.error(&e)),
            },
            WriteOp::Delete(id) => self
                .conn
                .prepare_cached("DELETE FROM dead_letters WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute([id]))
                .map(|n| n as u64)
                .map_err(|e| self.error(&e)),
            WriteOp::Purge(filter) => {
                let (clause, args) = where_clause(filter, None);
                self.conn
                    .prepare_cached(&format!("DELETE FROM dead_letters{clause}"))
                    .and_then(|mut stmt| stmt.execute(rusqlite::params_from_iter(args)))
                    .map(|n| n as u64)
                    .map_err(|e| self.error(&e))
            }
        }
    }

    /// Why an update changed no row: the record is gone, or at another revision.
    fn not_updated(&self, row: &Row) -> StoreError {
        let stored = self
            .conn
            .prepare_cached("SELECT revision FROM dead_letters WHERE id = ?1")
            .and_then(|mut stmt| stmt.query_row([&row.id], |r| r.get::<_, i64>(0)).optional());
        match stored {
            Ok(None) => StoreError::new(&*self.name, StoreErrorKind::NotFound)
                .with_source(format!("no record has id {}", row.id)),
            Ok(Some(at)) => {
                StoreError::new(&*self.name, StoreErrorKind::Stale).with_source(format!(
                    "record {} is at revision {at}, not {}",
                    row.id, row.expected
                ))
            }
            Err(e) => self.error(&e),
        }
    }

    fn insert(&self, row: &Row) -> Result<(), StoreError> {
        match row.execute(&self.conn, INSERT) {
            Ok(_) => Ok(()),
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                Err(StoreError::new(&*self.name, StoreErrorKind::Conflict)
                    .with_source(format!("id {} is already stored", row.id)))
            }
            Err(e) => Err(self.error(&e)),
        }
    }

    fn savepoint(&self, sql: &str) -> Result<(), StoreError> {
        self.conn.execute_batch(sql).map_err(|e| self.error(&e))
    }
}

/// A thread that serves a queue; dropping it closes the queue and waits for the thread to
/// drain it and exit.
pub(super) struct Worker<T> {
    queue: Option<mpsc::Sender<T>>,
    thread: Option<JoinHandle<()>>,
}

impl<T: Send + 'static> Worker<T> {
    pub(super) fn spawn(
        name: &str,
        serve: impl FnOnce(mpsc::Receiver<T>) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (queue, rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || serve(rx))?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    pub(super) fn send(&self, item: T) -> Result<(), ()> {
        match &self.queue {
            Some(queue) => queue.send(item).map_err(drop),
            None => Err(()),
        }
    }
}

impl<T> Drop for Worker<T> {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            // A thread that panicked has nothing left to finish.
            let _ = thread.join();
        }
    }
}
