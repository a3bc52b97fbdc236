//! The SQL the writer and the reader run: insert, compare-and-set update, the `WHERE` of a
//! filter, and the stats counts.

use super::*;

pub(super) const INSERT: &str = "INSERT INTO dead_letters \
    (id, state, kind, service, first_failed_at, last_failed_at, updated_at, record, revision) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// A compare-and-set: `?10` is the revision the writer read, `?9` the one it stores.
pub(super) const UPDATE: &str = "UPDATE dead_letters SET state = ?2, kind = ?3, service = ?4, \
    first_failed_at = ?5, last_failed_at = ?6, updated_at = ?7, record = ?8, revision = ?9 \
    WHERE id = ?1 AND revision = ?10";

pub(super) type Counts = Vec<(String, i64)>;

pub(super) fn read_stats(conn: &Connection) -> rusqlite::Result<(Counts, Counts, Option<i64>)> {
    let counts = |sql: &str| -> rusqlite::Result<Counts> {
        conn.prepare_cached(sql)?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect()
    };
    let by_state = counts("SELECT state, COUNT(*) FROM dead_letters GROUP BY state")?;
    let by_kind = counts("SELECT kind, COUNT(*) FROM dead_letters GROUP BY kind")?;
    let oldest = conn
        .prepare_cached(
            "SELECT MIN(first_failed_at) FROM dead_letters \
             WHERE state IN ('pending', 'redriving')",
        )?
        .query_row([], |row| row.get::<_, Option<i64>>(0))?;
    Ok((by_state, by_kind, oldest))
}

/// ` WHERE …` for `filter` and the cursor, with its arguments (empty when nothing is set).
pub(super) fn where_clause(filter: &Filter, after: Option<DeadLetterId>) -> (String, Vec<Value>) {
    let mut conditions = Vec::new();
    let mut args = Vec::new();
    if let Some(after) = after {
        conditions.push("id > ?");
        args.push(Value::Text(after.to_string()));
    }
    if let Some(state) = filter.state {
        conditions.push("state = ?");
        args.push(Value::Text(state.as_str().to_owned()));
    }
    if let Some(kind) = filter.kind {
        conditions.push("kind = ?");
        args.push(Value::Text(kind.as_str().to_owned()));
    }
    if let Some(service) = &filter.service {
        conditions.push("service = ?");
        args.push(Value::Text(service.clone()));
    }
    if let Some(t) = filter.failed_before {
        // Stored times are whole milliseconds, so `stored <= t` is `stored <= floor(t)`.
        conditions.push("last_failed_at <= ?");
        args.push(Value::Integer(millis(t)));
    }
    let sql = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    (sql, args)
}

pub(super) fn millis(t: std::time::SystemTime) -> i64 {
    i64::try_from(unix_millis(t)).unwrap_or(i64::MAX)
}
