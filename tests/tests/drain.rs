//! Queue for later, drained on recovery, end to end: orders sent while a real loopback upstream
//! is down are answered `202 Accepted` and parked; the drain worker, waiting on the breaker,
//! delivers every one exactly once after the upstream comes back. On the embedded SQLite store
//! and on Redis (`REDIS_URL`).

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rampart_dead_letter::{DeadLetterId, DeadLetterStore, Filter, Query, SqliteStore, State};
use rampart_examples::{
    queue_for_later,
    upstream::{Faults, Upstream},
};

const ORDERS: u64 = 60;

async fn drains_every_parked_order_once(store: Arc<dyn DeadLetterStore>) {
    let upstream = Upstream::start(Faults::NONE, 11).await.unwrap();
    let alerts = Arc::new(AtomicU64::new(0));
    let a = alerts.clone();
    let report = queue_for_later::run(
        store.clone(),
        &upstream,
        ORDERS,
        Duration::from_millis(800),
        Duration::from_secs(60),
        move |_| {
            a.fetch_add(1, Ordering::Relaxed);
        },
    )
    .await
    .unwrap();

    assert_eq!(
        (report.accepted, report.created, report.lost),
        (ORDERS, 0, 0),
        "every caller answered 202 while the upstream was down: {report:?}"
    );
    assert_eq!(report.drained, ORDERS, "{report:?}");
    assert_eq!((report.duplicated, report.missing), (0, 0), "{report:?}");
    assert_eq!(alerts.load(Ordering::Relaxed), 0, "nothing given up");
    let effects = upstream.effects();
    assert_eq!(effects.len() as u64, ORDERS);
    assert!(effects.values().all(|&n| n == 1), "{effects:?}");
    let records = store.list(&Query::new(Filter::all(), 1000)).await.unwrap();
    assert_eq!(records.len() as u64, ORDERS);
    assert!(records.iter().all(|r| r.state == State::Delivered));
    // The probes sent while the upstream was still down failed and were tried again; every
    // record carries the key its caller was given, so none ran twice.
    assert!(records.iter().all(|r| r.idempotency_key.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("dlq.db")).unwrap();
    drains_every_parked_order_once(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis() {
    let Some(url) = rampart_tests::redis_url() else {
        return;
    };
    let store = rampart_redis::RedisDeadLetterStore::builder(&url)
        .prefix(format!(
            "rampart-test:{}:{}",
            std::process::id(),
            DeadLetterId::new()
        ))
        .connect()
        .await
        .unwrap();
    let store = Arc::new(store);
    drains_every_parked_order_once(store.clone()).await;
    Arc::into_inner(store).unwrap().destroy().await.unwrap();
}
