//! [`SqliteStoreBuilder`]: the store's settings, checked, and opening the file: its pragmas,
//! its schema, and the writer and reader threads.

use super::{
    schema::{APPLICATION_ID, create_schema},
    *,
};

/// The default [`max_batch`](SqliteStoreBuilder::max_batch).
pub(crate) const DEFAULT_MAX_BATCH: usize = 512;

/// The default [`busy_timeout`](SqliteStoreBuilder::busy_timeout).
pub(crate) const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes the WAL file is cut back to once checkpointed (`PRAGMA journal_size_limit`).
pub(super) const WAL_SIZE_LIMIT: i64 = 64 << 20;

/// Settings of a [`SqliteStore`], from [`SqliteStore::builder`]; [`open`](Self::open) checks
/// them and opens the file.
///
/// ```
/// use std::time::Duration;
/// use rampart_dead_letter::{SqliteStore, StoreErrorKind};
/// use rampart_core::error::{find, ConfigError};
///
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("dlq.db");
/// let store = SqliteStore::builder(&path)
///     .max_batch(1024)
///     .busy_timeout(Duration::from_secs(10))
///     .open()
///     .unwrap();
/// # drop(store);
///
/// let err = SqliteStore::builder(&path).max_batch(0).open().unwrap_err();
/// assert_eq!(err.kind(), StoreErrorKind::Config);
/// assert_eq!(find::<ConfigError>(&err).unwrap().field(), "max_batch");
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStoreBuilder {
    pub(super) path: PathBuf,
    pub(super) max_batch: usize,
    pub(super) synchronous: bool,
    pub(super) busy_timeout: Duration,
}

impl SqliteStoreBuilder {
    /// The default [`max_batch`](Self::max_batch): 512 records.
    pub const DEFAULT_MAX_BATCH: usize = DEFAULT_MAX_BATCH;

    /// The default [`busy_timeout`](Self::busy_timeout): 5 seconds.
    pub const DEFAULT_BUSY_TIMEOUT: Duration = DEFAULT_BUSY_TIMEOUT;

    /// At most about this many records per transaction (one `fsync`); at least 1, by default
    /// [`Self::DEFAULT_MAX_BATCH`]. The writer stops taking commands into a transaction once it
    /// holds this many records; an `append_batch` larger than this still goes in whole, in a
    /// transaction of its own.
    pub fn max_batch(mut self, records: usize) -> Self {
        self.max_batch = records;
        self
    }

    /// Whether a commit is `fsync`ed before it is acknowledged (`PRAGMA synchronous=FULL`),
    /// the default; `false` is `PRAGMA synchronous=NORMAL`, which survives a crash of the
    /// process but may lose the last commits in a crash of the machine. See
    /// [Durability](SqliteStore#durability).
    pub fn synchronous(mut self, on: bool) -> Self {
        self.synchronous = on;
        self
    }

    /// How long a statement waits for a lock held by another connection to the same file
    /// (another process, or `sqlite3`) before it fails with [`StoreErrorKind::Unavailable`];
    /// by default [`Self::DEFAULT_BUSY_TIMEOUT`], at most `i32::MAX` milliseconds.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Checks the settings, opens (or creates) the file and starts the store's threads.
    ///
    /// A bad setting is a [`StoreErrorKind::Config`] error whose source is a
    /// [`ConfigError`] naming the field (find it with [`rampart_core::error::find`]). See
    /// [`SqliteStore::open`] for the errors of opening the file.
    pub fn open(self) -> Result<SqliteStore, StoreError> {
        let name: Arc<str> = Arc::from(format!("sqlite:{}", self.path.display()));
        self.check()
            .map_err(|e| StoreError::new(&*name, StoreErrorKind::Config).with_source(e))?;
        let path = self.path.as_path();
        let shown = path.display();
        let open_error = |e: rusqlite::Error| {
            let kind = match e.sqlite_error_code() {
                Some(ErrorCode::NotADatabase) => StoreErrorKind::Config,
                _ => StoreErrorKind::Unavailable,
            };
            let what = match e.sqlite_error_code() {
                Some(ErrorCode::NotADatabase) => "is not a SQLite database".to_owned(),
                _ => format!("cannot be opened: {e}"),
            };
            StoreError::new(&*name, kind).with_source(format!("{shown} {what}"))
        };

        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(
                StoreError::new(&*name, StoreErrorKind::Config).with_source(format!(
                    "cannot create {shown}: the directory {} does not exist",
                    dir.display()
                )),
            );
        }

        let write_conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_error)?;
        write_conn
            .busy_timeout(self.busy_timeout)
            .map_err(open_error)?;
        let app_id: i64 = write_conn
            .pragma_query_value(None, "application_id", |row| row.get(0))
            .map_err(open_error)?;
        if app_id != 0 && app_id != APPLICATION_ID {
            return Err(
                StoreError::new(&*name, StoreErrorKind::Config).with_source(format!(
                    "{shown} is another program's SQLite database (application_id {app_id:#x}, \
                     a dead-letter store's is {APPLICATION_ID:#x})"
                )),
            );
        }
        let mode: String = write_conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(open_error)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(
                StoreError::new(&*name, StoreErrorKind::Config).with_source(format!(
                    "{shown} cannot be put in WAL journal mode (it stays in {mode:?} mode)"
                )),
            );
        }
        // After a burst, a checkpoint truncates the WAL file back to at most this size.
        write_conn
            .pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
            .map_err(open_error)?;
        write_conn
            .pragma_update(
                None,
                "synchronous",
                if self.synchronous { "FULL" } else { "NORMAL" },
            )
            .map_err(open_error)?;
        create_schema(&write_conn)
            .map_err(open_error)?
            .map_err(|why| {
                StoreError::new(&*name, StoreErrorKind::Config)
                    .with_source(format!("{shown} {why}"))
            })?;

        let read_conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_error)?;
        read_conn
            .busy_timeout(self.busy_timeout)
            .map_err(open_error)?;
        read_conn
            .pragma_update(None, "query_only", true)
            .map_err(open_error)?;

        let spawn_error = |e: std::io::Error| {
            StoreError::new(&*name, StoreErrorKind::Unavailable)
                .with_source(format!("cannot start the store's thread: {e}"))
        };
        let writer = Writer {
            conn: write_conn,
            name: name.clone(),
            max_batch: self.max_batch,
        };
        // The reader first: if the writer's thread cannot start, dropping the reader's worker
        // stops its thread.
        let reader = Worker::spawn("rampart-dlq-reader", move |jobs| {
            serve_reads(&read_conn, &jobs)
        })
        .map_err(spawn_error)?;
        let writer = Worker::spawn("rampart-dlq-writer", move |commands| writer.run(&commands))
            .map_err(spawn_error)?;

        Ok(SqliteStore {
            name,
            path: self.path,
            max_batch: self.max_batch,
            synchronous: self.synchronous,
            writer,
            reader,
        })
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.max_batch == 0 {
            return Err(ConfigError::new(
                COMPONENT,
                "max_batch",
                "must be at least 1 record, got 0",
            ));
        }
        if self.busy_timeout.as_millis() > i32::MAX as u128 {
            return Err(ConfigError::new(
                COMPONENT,
                "busy_timeout",
                format!(
                    "must be at most {} ms, got {:?}",
                    i32::MAX,
                    self.busy_timeout
                ),
            ));
        }
        Ok(())
    }
}
