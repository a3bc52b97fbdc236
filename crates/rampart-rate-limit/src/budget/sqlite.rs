//! [`SqliteBudgetStore`]: budgets kept in a SQLite file.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use rampart_core::{BoxFuture, sync::lock};
use rusqlite::{Connection, OptionalExtension as _};

use super::store::{BudgetSnapshot, BudgetStore, BudgetStoreError, BudgetStoreErrorKind};

/// Budgets kept in a SQLite file (feature `sqlite`), one row per budget name in the table
/// `rampart_budgets (name, snapshot, saved_at)`; the file may be the one the dead-letter store
/// uses. Reads and writes run on tokio's blocking pool.
///
/// ```
/// use rampart_rate_limit::budget::{Budget, BudgetLayer, Period, SqliteBudgetStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("budgets.db");
/// let store = SqliteBudgetStore::open(&path)?;
/// let budget = BudgetLayer::connect(Budget::new(500, Period::day()).name("llm").store(store)).await?;
/// # let _ = budget;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqliteBudgetStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl fmt::Debug for SqliteBudgetStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteBudgetStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteBudgetStore {
    /// Opens (creating it if need be) the file at `path` and its table. Blocking: call it at
    /// start-up.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BudgetStoreError> {
        let path = path.as_ref().to_path_buf();
        let describe = format!("sqlite:{}", path.display());
        let unavailable = |e: rusqlite::Error| {
            BudgetStoreError::new(&describe, BudgetStoreErrorKind::Unavailable).with_source(e)
        };
        let conn = Connection::open(&path).map_err(unavailable)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(unavailable)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS rampart_budgets (
                 name TEXT PRIMARY KEY,
                 snapshot TEXT NOT NULL,
                 saved_at INTEGER NOT NULL
             );",
        )
        .map_err(unavailable)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    fn error(
        &self,
        kind: BudgetStoreErrorKind,
        e: impl Into<rampart_core::error::BoxError>,
    ) -> BudgetStoreError {
        BudgetStoreError::new(self.describe(), kind).with_source(e)
    }
}

impl BudgetStore for SqliteBudgetStore {
    fn load<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<BudgetSnapshot>, BudgetStoreError>> {
        let conn = self.conn.clone();
        let key = name.to_owned();
        Box::pin(async move {
            let text = tokio::task::spawn_blocking(move || {
                lock(&conn)
                    .query_row(
                        "SELECT snapshot FROM rampart_budgets WHERE name = ?1",
                        [&key],
                        |row| row.get::<_, String>(0),
                    )
                    .optional()
            })
            .await
            .map_err(|e| self.error(BudgetStoreErrorKind::Unavailable, e))?
            .map_err(|e| self.error(BudgetStoreErrorKind::Unavailable, e))?;
            text.map(|text| BudgetSnapshot::from_stored(&self.describe(), name, &text))
                .transpose()
        })
    }

    fn save<'a>(
        &'a self,
        name: &'a str,
        snapshot: &'a BudgetSnapshot,
    ) -> BoxFuture<'a, Result<(), BudgetStoreError>> {
        let conn = self.conn.clone();
        let key = name.to_owned();
        let text = snapshot.encode();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                lock(&conn).execute(
                    "INSERT INTO rampart_budgets (name, snapshot, saved_at)
                     VALUES (?1, ?2, unixepoch())
                     ON CONFLICT (name) DO UPDATE SET snapshot = ?2, saved_at = unixepoch()",
                    [&key, &text],
                )
            })
            .await
            .map_err(|e| self.error(BudgetStoreErrorKind::Unavailable, e))?
            .map_err(|e| self.error(BudgetStoreErrorKind::Unavailable, e))?;
            Ok(())
        })
    }

    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }
}
