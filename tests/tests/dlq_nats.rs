//! The NATS dead-letter store against a real nats-server with JetStream (`NATS_URL`, default
//! `nats://127.0.0.1:4222`): the store conformance suite, concurrent appends, records that
//! outlive the connection, all-or-nothing batches, a full bucket, and the errors for an
//! unreachable server and a bad URL.
//!
//! Each test uses a bucket of its own and deletes it at the end.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{sync::Arc, time::Duration};

use rampart_dead_letter::{DeadLetterId, DeadLetterStore, StoreErrorKind, conformance};
use rampart_nats::NatsDeadLetterStore;

/// A bucket name no other test (or run) uses.
fn unique_bucket() -> String {
    format!(
        "rampart_test_{}_{}",
        std::process::id(),
        DeadLetterId::new()
    )
}

/// A builder with timeouts generous enough for a loaded CI machine (two cores, every test
/// binary at once): the defaults (3 s) are for production, where a slow server is an outage.
fn builder(url: &str) -> rampart_nats::NatsDeadLetterStoreBuilder {
    NatsDeadLetterStore::builder(url)
        .connect_timeout(Duration::from_secs(20))
        .response_timeout(Duration::from_secs(20))
}

async fn store(url: &str) -> NatsDeadLetterStore {
    builder(url)
        .bucket(unique_bucket())
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn passes_the_conformance_suite() {
    let Some(url) = rampart_tests::nats_url() else {
        return;
    };
    let store = store(&url).await;
    conformance::run(&store).await;
    store.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_all_stored() {
    let Some(url) = rampart_tests::nats_url() else {
        return;
    };
    let store = Arc::new(store(&url).await);
    conformance::concurrent_appends(store.clone(), 200).await;
    Arc::into_inner(store).unwrap().destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_and_redrives_send_each_record_once() {
    let Some(url) = rampart_tests::nats_url() else {
        return;
    };
    let store = Arc::new(store(&url).await);
    conformance::concurrent_redrives(store.clone()).await;
    Arc::into_inner(store).unwrap().destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_drain_workers_send_each_record_once() {
    let Some(url) = rampart_tests::nats_url() else {
        return;
    };
    let store = Arc::new(store(&url).await);
    conformance::concurrent_drains(store.clone()).await;
    Arc::into_inner(store).unwrap().destroy().await.unwrap();
}

#[tokio::test]
async fn records_outlive_the_connection() {
    let Some(url) = rampart_tests::nats_url() else {
        return;
    };
    let bucket = unique_bucket();
    let records: Vec<_> = (0..3).map(conformance::record).collect();
    {
        let store = builder(&url).bucket(&bucket).connect().await.unwrap();
        store.append_batch(&records).await.unwrap();
    }
    let store = builder(&url).bucket(&bucket).connect().await.unwrap();
    for r in &records {
        assert_eq!(store.get(r.id).await.unwrap().as_ref(), Some(r));
    }
    assert_eq!(store.stats().await.unwrap().backlog(), 3);
    store.destroy().await.unwrap();
}

#[tokio::test]
async fn a_batch_with_a_stored_id_leaves_nothing_else_behind() {
    let Some(url) = rampart_tests::nats_url() else {
        return;
    };
    let store = store(&url).await;
    let records: Vec<_> = (0..4).map(conformance::record).collect();
    store.append(&records[2]).await.unwrap();
    let err = store.append_batch(&records).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Conflict);
    assert!(
        err.to_string().contains(&records[2].id.to_string()),
        "{err}"
    );
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            store.get(r.id).await.unwrap().is_some(),
            i == 2,
            "record {i}"
        );
    }
    assert_eq!(store.stats().await.unwrap().total, 1);
    // The ids taken back can be appended again.
    store.append(&records[0]).await.unwrap();
    store.destroy().await.unwrap();
}

#[tokio::test]
async fn a_full_bucket_refuses_and_keeps_what_it_has() {
    let Some(url) = rampart_tests::nats_url() else {
        return;
    };
    let store = builder(&url)
        .bucket(unique_bucket())
        .max_bytes(Some(4096))
        .connect()
        .await
        .unwrap();
    let mut stored = 0;
    let err = loop {
        match store.append(&conformance::record(stored)).await {
            Ok(()) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 100, "a 4 KiB bucket took 100 records");
    };
    assert_eq!(err.kind(), StoreErrorKind::Full, "{err}");
    assert!(err.to_string().contains("maximum bytes exceeded"), "{err}");
    assert!(stored > 0);
    assert_eq!(store.stats().await.unwrap().total, u64::from(stored));
    store.destroy().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_quickly() {
    // Port 1 on loopback: nothing listens there. No NATS needed.
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        NatsDeadLetterStore::connect("nats://127.0.0.1:1"),
    )
    .await
    .expect("connect must give up within its timeouts");
    let err = result.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("nats://127.0.0.1:1"), "{err}");
}

#[tokio::test]
async fn a_bad_url_is_a_config_error_that_shows_no_password() {
    for url in [
        "nats://user:s3cret@127.0.0.1:notaport",
        "http://127.0.0.1:4222",
        "nats://127.0.0.1:4222,nats://[::1",
    ] {
        let err = NatsDeadLetterStore::connect(url).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Config, "{url}: {err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
