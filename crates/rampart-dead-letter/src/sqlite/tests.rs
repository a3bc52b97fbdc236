use std::{
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
};

use rampart_core::error::find;

use super::query::millis;

use super::*;
use crate::conformance::record;

fn temp_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("dlq.db")).unwrap();
    (dir, store)
}

#[tokio::test]
async fn passes_the_conformance_suite() {
    let (_dir, store) = temp_store();
    crate::conformance::run(&store).await;
}

#[tokio::test]
async fn passes_the_conformance_suite_with_batches_of_one_and_no_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::builder(dir.path().join("dlq.db"))
        .max_batch(1)
        .synchronous(false)
        .open()
        .unwrap();
    crate::conformance::run(&store).await;
}

#[tokio::test]
async fn records_survive_reopening_and_the_file_has_the_documented_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dlq.db");
    let records: Vec<_> = (0..5).map(record).collect();
    let mut delivered = records[1].clone();
    delivered.state = State::Delivered;
    {
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.describe(), format!("sqlite:{}", path.display()));
        store.append_batch(&records[..3]).await.unwrap();
        store.append(&records[3]).await.unwrap();
        store.append(&records[4]).await.unwrap();
        store.update(&delivered).await.unwrap();
        delivered.revision += 1;
        assert!(store.delete(records[4].id).await.unwrap());
    }
    // Closed: SQLite folded the WAL back into the file.
    assert!(!dir.path().join("dlq.db-wal").exists());

    let store = SqliteStore::open(&path).unwrap();
    let all = store.list(&Query::new(Filter::all(), 10)).await.unwrap();
    assert_eq!(
        all,
        vec![
            records[0].clone(),
            delivered.clone(),
            records[2].clone(),
            records[3].clone()
        ]
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.total, 4);
    assert_eq!(stats.in_state(State::Delivered), 1);

    // What `sqlite3 dlq.db "select id, state, kind from dead_letters"` shows.
    let conn = Connection::open(&path).unwrap();
    let rows: Vec<(String, String, String, i64, String)> = conn
        .prepare("SELECT id, state, kind, first_failed_at, record FROM dead_letters ORDER BY id")
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[1].0, delivered.id.to_string());
    assert_eq!(rows[1].1, "delivered");
    assert_eq!(rows[1].2, delivered.failure.kind.as_str());
    assert_eq!(rows[1].3, millis(delivered.first_failed_at));
    assert_eq!(rows[1].4, delivered.to_json());
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn a_version_1_file_gains_the_revision_column_and_keeps_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let old = record(1);
    {
        // A file as version 1 of the schema wrote it.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE dead_letters (id TEXT PRIMARY KEY NOT NULL, state TEXT NOT NULL, \
             kind TEXT NOT NULL, service TEXT NOT NULL, first_failed_at INTEGER NOT NULL, \
             last_failed_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, \
             record TEXT NOT NULL);",
        )
        .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        let mut json: serde_json::Value = serde_json::from_str(&old.to_json()).unwrap();
        json.as_object_mut().unwrap().remove("revision");
        conn.execute(
            "INSERT INTO dead_letters VALUES (?1, 'pending', ?2, ?3, 0, 0, 0, ?4)",
            rusqlite::params![
                old.id.to_string(),
                old.failure.kind.as_str(),
                old.service,
                json.to_string()
            ],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let read = store.get(old.id).await.unwrap().unwrap();
    assert_eq!(read.revision, 0);
    let mut delivered = read.clone();
    delivered.state = State::Delivered;
    store.update(&delivered).await.unwrap();
    let err = store.update(&read).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Stale, "{err}");
    assert_eq!(
        store.get(old.id).await.unwrap().unwrap().state,
        State::Delivered
    );
    drop(store);
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn a_bad_path_or_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("no-such-dir").join("dlq.db");
    let err = SqliteStore::open(&missing).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Config);
    let msg = err.to_string();
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
    assert!(msg.contains("does not exist"), "{msg}");

    let garbage = dir.path().join("notes.txt");
    std::fs::write(&garbage, vec![b'x'; 8192]).unwrap();
    let err = SqliteStore::open(&garbage).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Config);
    let msg = err.to_string();
    assert!(msg.contains(&garbage.display().to_string()), "{msg}");
    assert!(msg.contains("is not a SQLite database"), "{msg}");

    let other = dir.path().join("other.db");
    let conn = Connection::open(&other).unwrap();
    conn.pragma_update(None, "application_id", 7).unwrap();
    drop(conn);
    let err = SqliteStore::open(&other).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Config);
    assert!(err.to_string().contains("another program's"), "{err}");

    let newer = dir.path().join("newer.db");
    drop(SqliteStore::open(&newer).unwrap());
    let conn = Connection::open(&newer).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    drop(conn);
    let err = SqliteStore::open(&newer).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Config);
    assert!(
        err.to_string()
            .contains(&format!("schema version {}", SCHEMA_VERSION + 1)),
        "{err}"
    );
}

#[test]
fn bad_settings_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dlq.db");
    let err = SqliteStore::builder(&path).max_batch(0).open().unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Config);
    assert_eq!(find::<ConfigError>(&err).unwrap().field(), "max_batch");
    assert!(
        err.to_string().contains("max_batch must be at least 1"),
        "{err}"
    );
    let err = SqliteStore::builder(&path)
        .busy_timeout(Duration::from_secs(u64::MAX / 2))
        .open()
        .unwrap_err();
    assert_eq!(find::<ConfigError>(&err).unwrap().field(), "busy_timeout");
    assert!(!path.exists(), "a refused configuration creates no file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_appends_all_succeed_and_are_all_stored() {
    let (_dir, store) = temp_store();
    crate::conformance::concurrent_appends(Arc::new(store), 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_and_redrives_send_each_record_once() {
    let (_dir, store) = temp_store();
    crate::conformance::concurrent_redrives(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_drain_workers_send_each_record_once() {
    let (_dir, store) = temp_store();
    crate::conformance::concurrent_drains(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_in_a_group_fails_only_its_own_append() {
    let (_dir, store) = temp_store();
    let store = Arc::new(store);
    let stored: Vec<_> = (0..50).map(record).collect();
    store.append_batch(&stored).await.unwrap();
    // Half new records, half ids already stored, all at once: they share transactions.
    let fresh: Vec<_> = (50..100).map(record).collect();
    let tasks: Vec<_> = fresh
        .iter()
        .chain(&stored)
        .cloned()
        .map(|r| {
            let store = store.clone();
            tokio::spawn(async move { (r.id, store.append(&r).await) })
        })
        .collect();
    let mut conflicts = 0;
    for task in tasks {
        let (id, result) = task.await.unwrap();
        if fresh.iter().any(|r| r.id == id) {
            result.unwrap();
        } else {
            assert_eq!(result.unwrap_err().kind(), StoreErrorKind::Conflict);
            conflicts += 1;
        }
    }
    assert_eq!(conflicts, 50);
    assert_eq!(store.stats().await.unwrap().total, 100);
}

#[tokio::test]
async fn append_batch_is_all_or_nothing() {
    let (_dir, store) = temp_store();
    let first = record(0);
    store.append(&first).await.unwrap();
    let batch = vec![record(1), record(2), first.clone(), record(3)];
    let err = store.append_batch(&batch).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Conflict);
    assert!(err.to_string().contains(&first.id.to_string()), "{err}");
    assert_eq!(
        store.stats().await.unwrap().total,
        1,
        "none of the batch is kept"
    );
    // A batch that repeats an id of its own is refused too.
    let twice = vec![batch[0].clone(), batch[0].clone()];
    let err = store.append_batch(&twice).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Conflict);
    assert_eq!(store.stats().await.unwrap().total, 1);
    // And the writer goes on.
    store.append_batch(&batch[..2]).await.unwrap();
    assert_eq!(store.stats().await.unwrap().total, 3);
}

#[tokio::test]
async fn dropping_the_store_finishes_queued_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dlq.db");
    let records: Vec<_> = (0..20).map(record).collect();
    let store = SqliteStore::open(&path).unwrap();
    for r in &records {
        // Poll once (the command is queued), then give up on the answer.
        let mut append = pin!(store.append(r));
        let polled = append
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()));
        assert!(matches!(polled, Poll::Pending | Poll::Ready(Ok(()))));
    }
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    for r in &records {
        assert_eq!(store.get(r.id).await.unwrap().as_ref(), Some(r));
    }
}

#[tokio::test]
async fn filters_match_the_memory_store() {
    // The SQL filters and the in-memory `Filter::matches` agree, including the time bound
    // at the millisecond.
    let (_dir, store) = temp_store();
    let records: Vec<_> = (0..30).map(record).collect();
    store.append_batch(&records).await.unwrap();
    let t = records[0].last_failed_at;
    let filters = [
        Filter::all().failed_before(t),
        Filter::all().failed_before(t - Duration::from_millis(1)),
        Filter::all().failed_before(t + Duration::from_micros(500)),
        Filter::all().service("a").kind(ParkReason::Timeout),
        Filter::all().state(State::Pending).service("b"),
        Filter::all().state(State::GivenUp),
    ];
    for filter in filters {
        let got = store.list(&Query::new(filter.clone(), 100)).await.unwrap();
        let mut want: Vec<_> = records
            .iter()
            .filter(|r| filter.matches(r))
            .cloned()
            .collect();
        want.sort_by_key(|r| r.id);
        assert_eq!(got, want, "{filter:?}");
    }
}
