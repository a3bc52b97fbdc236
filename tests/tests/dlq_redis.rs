//! The Redis dead-letter store against a real Redis (`REDIS_URL`, default
//! `redis://127.0.0.1:6379`): the store conformance suite, concurrent appends, records that
//! outlive the connection, the stream feed, all-or-nothing batches, a full store, and the errors
//! for an unreachable server and a bad URL.
//!
//! Each test uses a prefix of its own and removes its keys at the end.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{sync::Arc, time::Duration};

use rampart_dead_letter::{DeadLetterId, DeadLetterStore, StoreErrorKind, conformance};
use rampart_redis::RedisDeadLetterStore;
use redis::AsyncCommands as _;

/// A prefix no other test (or run) uses.
fn unique_prefix() -> String {
    format!(
        "rampart-test:{}:{}",
        std::process::id(),
        DeadLetterId::new()
    )
}

async fn store(url: &str) -> RedisDeadLetterStore {
    RedisDeadLetterStore::builder(url)
        .prefix(unique_prefix())
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn passes_the_conformance_suite() {
    let Some(url) = rampart_tests::redis_url() else {
        return;
    };
    let store = store(&url).await;
    conformance::run(&store).await;
    store.destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_all_stored() {
    let Some(url) = rampart_tests::redis_url() else {
        return;
    };
    let store = Arc::new(store(&url).await);
    conformance::concurrent_appends(store.clone(), 200).await;
    Arc::into_inner(store).unwrap().destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_and_redrives_send_each_record_once() {
    let Some(url) = rampart_tests::redis_url() else {
        return;
    };
    let store = Arc::new(store(&url).await);
    conformance::concurrent_redrives(store.clone()).await;
    Arc::into_inner(store).unwrap().destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_drain_workers_send_each_record_once() {
    let Some(url) = rampart_tests::redis_url() else {
        return;
    };
    let store = Arc::new(store(&url).await);
    conformance::concurrent_drains(store.clone()).await;
    Arc::into_inner(store).unwrap().destroy().await.unwrap();
}

#[tokio::test]
async fn records_outlive_the_connection() {
    let Some(url) = rampart_tests::redis_url() else {
        return;
    };
    let prefix = unique_prefix();
    let records: Vec<_> = (0..3).map(conformance::record).collect();
    {
        let store = RedisDeadLetterStore::builder(&url)
            .prefix(&prefix)
            .connect()
            .await
            .unwrap();
        store.append_batch(&records).await.unwrap();
    }
    let store = RedisDeadLetterStore::builder(&url)
        .prefix(&prefix)
        .connect()
        .await
        .unwrap();
    for r in &records {
        assert_eq!(store.get(r.id).await.unwrap().as_ref(), Some(r));
    }
    assert_eq!(store.stats().await.unwrap().backlog(), 3);
    store.destroy().await.unwrap();
}

#[tokio::test]
async fn every_append_is_on_the_stream_for_a_consumer_group() {
    let Some(url) = rampart_tests::redis_url() else {
        return;
    };
    let store = store(&url).await;
    let records: Vec<_> = (0..3).map(conformance::record).collect();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let stream = store.stream_key().to_owned();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("workers")
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .unwrap();
    store.append(&records[0]).await.unwrap();
    store.append_batch(&records[1..]).await.unwrap();
    let reply: redis::streams::StreamReadReply = conn
        .xread_options(
            &[&stream],
            &[">"],
            &redis::streams::StreamReadOptions::default()
                .group("workers", "w1")
                .count(10),
        )
        .await
        .unwrap();
    let entries = &reply.keys[0].ids;
    assert_eq!(entries.len(), 3);
    for (entry, record) in entries.iter().zip(&records) {
        let id: String = entry.get("id").unwrap();
        assert_eq!(id, record.id.to_string());
        let json: Vec<u8> = entry.get("record").unwrap();
        assert_eq!(
            &rampart_dead_letter::DeadLetter::from_json(&json).unwrap(),
            record
        );
    }
    store.destroy().await.unwrap();
}

#[tokio::test]
async fn a_batch_with_a_stored_id_stores_nothing() {
    let Some(url) = rampart_tests::redis_url() else {
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
    assert!(store.get(records[0].id).await.unwrap().is_none());
    assert_eq!(store.stats().await.unwrap().total, 1);
    store.destroy().await.unwrap();
}

#[tokio::test]
async fn a_full_store_refuses_and_keeps_what_it_has() {
    let Some(url) = rampart_tests::redis_url() else {
        return;
    };
    let store = RedisDeadLetterStore::builder(&url)
        .prefix(unique_prefix())
        .max_records(Some(2))
        .connect()
        .await
        .unwrap();
    let records: Vec<_> = (0..3).map(conformance::record).collect();
    store.append_batch(&records[..2]).await.unwrap();
    let err = store.append(&records[2]).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Full);
    assert!(err.to_string().contains("holds 2 of 2"), "{err}");
    assert_eq!(store.stats().await.unwrap().total, 2);
    store.destroy().await.unwrap();
}

#[tokio::test]
async fn too_few_replicas_is_an_error_though_the_primary_has_the_record() {
    let Some(url) = rampart_tests::redis_url() else {
        return;
    };
    // The test server has no replicas: WAIT times out with 0 of 1.
    let store = RedisDeadLetterStore::builder(&url)
        .prefix(unique_prefix())
        .wait_for_replicas(1, Duration::from_millis(50))
        .connect()
        .await
        .unwrap();
    let record = conformance::record(1);
    let err = store.append(&record).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable);
    assert!(err.to_string().contains("0 of 1 replicas"), "{err}");
    assert_eq!(store.get(record.id).await.unwrap(), Some(record.clone()));
    // Appended again: the record is stored.
    let err = store.append(&record).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Conflict);
    store.destroy().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_quickly() {
    // Port 1 on loopback: nothing listens there. No Redis needed.
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        RedisDeadLetterStore::connect("redis://127.0.0.1:1"),
    )
    .await
    .expect("connect must give up within its timeouts");
    let err = result.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("redis://127.0.0.1:1/0"), "{err}");
}

#[tokio::test]
async fn a_bad_url_is_a_config_error_that_shows_no_password() {
    for url in [
        "redis://:s3cret@127.0.0.1:6379/not-a-db",
        "http://127.0.0.1:6379",
        "",
    ] {
        let err = RedisDeadLetterStore::connect(url).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Config, "{url}: {err}");
        assert!(err.to_string().contains("Redis URL"), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
