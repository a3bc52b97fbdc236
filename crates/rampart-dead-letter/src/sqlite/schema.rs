//! The file's schema: its tables and indexes, its version and application id, and creating or
//! migrating it.

use super::*;

/// The schema version this crate writes and reads, kept in `PRAGMA user_version`.
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// `PRAGMA application_id` of a dead-letter database: `0x52444c51`, "RDLQ" in ASCII.
pub(crate) const APPLICATION_ID: i64 = 0x5244_4c51;

pub(super) const SCHEMA: &str = "
CREATE TABLE dead_letters (
    id TEXT PRIMARY KEY NOT NULL,
    state TEXT NOT NULL,
    kind TEXT NOT NULL,
    service TEXT NOT NULL,
    first_failed_at INTEGER NOT NULL,
    last_failed_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    record TEXT NOT NULL,
    revision INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX dead_letters_state_id ON dead_letters (state, id);
CREATE INDEX dead_letters_state_first_failed ON dead_letters (state, first_failed_at);
CREATE INDEX dead_letters_kind_id ON dead_letters (kind, id);
CREATE INDEX dead_letters_service_id ON dead_letters (service, id);
";

/// Schema version 1 to 2: the revision column (version-1 records are at revision 0).
pub(super) const MIGRATE_1_TO_2: &str =
    "ALTER TABLE dead_letters ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;";

/// Creates the schema in a new file, or checks an existing one's version. The inner error says
/// what is wrong with the file.
pub(super) fn create_schema(conn: &Connection) -> rusqlite::Result<Result<(), String>> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        Ok(match version {
            0 => {
                conn.execute_batch(SCHEMA)?;
                conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
                conn.pragma_update(None, "application_id", APPLICATION_ID)?;
                Ok(())
            }
            1 => {
                conn.execute_batch(MIGRATE_1_TO_2)?;
                conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
                Ok(())
            }
            SCHEMA_VERSION => Ok(()),
            newer => Err(format!(
                "has schema version {newer}, newer than this build's {SCHEMA_VERSION}: \
                 open it with a newer rampart"
            )),
        })
    })();
    match result {
        Ok(outcome) => {
            conn.execute_batch("COMMIT")?;
            Ok(outcome)
        }
        Err(e) => {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            Err(e)
        }
    }
}
