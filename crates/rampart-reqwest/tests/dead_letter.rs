//! The dead-letter middleware against real axum servers: final failures parked in a
//! `MemoryStore` and a `SqliteStore` (a temp file), with the idempotency key, the body and the
//! attempts; the caller told as what; a failing primary store falls back to the secondary.
#![allow(clippy::unwrap_used)]

mod common;

use std::{sync::Arc, time::Duration};

use common::{Script, client, reply};
use rampart_circuit_breaker::{CircuitBreakerLayer, CircuitOpen};
use rampart_dead_letter::{
    DEAD_LETTER_ID, DeadLetter, DeadLetterLayer, DeadLetterStore, Filter, MemoryStore, ParkFailed,
    ParkReason, Parked, ParkedAs, Query, SqliteStore,
};
use rampart_reqwest::{CircuitBreakerMiddleware, DeadLetterMiddleware, RetryMiddleware, find};
use rampart_retry::{
    backoff::{Backoff, Delays, Jitter},
    policy::RetryPolicy,
};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};

fn retry(max_attempts: u32) -> RetryMiddleware {
    RetryMiddleware::new(
        RetryPolicy::builder()
            .max_attempts(max_attempts)
            .backoff(
                Backoff::builder()
                    .delays(Delays::Constant(Duration::from_millis(5)))
                    .jitter(Jitter::None)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap(),
    )
}

/// Dead letters outside a retry of 3 attempts.
fn stack(store: Arc<dyn DeadLetterStore>) -> ClientWithMiddleware {
    ClientBuilder::new(client())
        .with(DeadLetterMiddleware::new(
            DeadLetterLayer::builder("webhooks", store).build().unwrap(),
        ))
        .with(retry(3))
        .build()
}

async fn all(store: &dyn DeadLetterStore) -> Vec<DeadLetter> {
    store.list(&Query::new(Filter::all(), 100)).await.unwrap()
}

/// A POST that fails on every attempt is parked once, with the key every attempt carried.
async fn parks_a_post_that_every_attempt_failed(store: Arc<dyn DeadLetterStore>) {
    let server = Script::new([reply(503)]);
    let base = server.serve().await;
    let body = "{\"event\":\"order.paid\",\"id\":42}";
    let res = stack(store.clone())
        .post(format!("{base}/hooks?src=test"))
        .header("authorization", "Bearer secret")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503, "the caller still gets the failure");

    let parked = all(&*store).await;
    assert_eq!(parked.len(), 1, "parked once, not once per attempt");
    let record = &parked[0];
    let ParkedAs(id) = *res.extensions().get::<ParkedAs>().unwrap();
    assert_eq!(record.id, id);
    assert_eq!(res.headers()[DEAD_LETTER_ID], id.to_string().as_str());

    assert_eq!(server.hits(), 3);
    let sent_key = server.seen()[0].headers["idempotency-key"].clone();
    assert!(
        server
            .seen()
            .iter()
            .all(|s| s.headers["idempotency-key"] == sent_key)
    );
    assert_eq!(
        record.idempotency_key.as_deref(),
        Some(sent_key.to_str().unwrap()),
        "the key the retry made, for a redrive to send again"
    );
    assert_eq!(record.target.method, "POST");
    assert_eq!(
        record.target.uri,
        format!("{base}/hooks?src=[redacted]"),
        "query values are masked by default"
    );
    assert!(record.target.query_redacted);
    assert_eq!(record.target.body.data.0, body);
    assert!(!record.target.body.truncated);
    let auth = record
        .target
        .headers
        .iter()
        .find(|h| h.name == "authorization")
        .unwrap();
    assert!(auth.redacted, "credentials are never recorded");
    assert_eq!(record.attempts, 3);
    assert_eq!(record.failure.kind, ParkReason::Transient);
    assert_eq!(record.failure.status, Some(503));
    assert_eq!(record.service, "webhooks");
}

#[tokio::test]
async fn parks_in_a_memory_store() {
    parks_a_post_that_every_attempt_failed(Arc::new(MemoryStore::bounded(100).unwrap())).await;
}

#[tokio::test]
async fn parks_in_a_sqlite_file_that_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead-letters.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    parks_a_post_that_every_attempt_failed(store.clone()).await;
    drop(store);
    let reopened = SqliteStore::open(&path).unwrap();
    let parked = all(&reopened).await;
    assert_eq!(parked.len(), 1);
    assert!(parked[0].idempotency_key.is_some());
}

#[tokio::test]
async fn successes_and_client_errors_are_not_parked() {
    let store = Arc::new(MemoryStore::bounded(100).unwrap());
    let server = Script::new([reply(200), reply(404)]);
    let base = server.serve().await;
    let http = stack(store.clone());
    assert_eq!(http.get(&base).send().await.unwrap().status(), 200);
    let res = http.get(&base).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert!(res.headers().get(DEAD_LETTER_ID).is_none());
    assert!(all(&*store).await.is_empty());
}

#[tokio::test]
async fn an_error_is_parked_and_the_caller_told_as_what() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("dlq.db")).unwrap());
    let http = ClientBuilder::new(client())
        .with(DeadLetterMiddleware::new(
            DeadLetterLayer::builder("webhooks", store.clone())
                .build()
                .unwrap(),
        ))
        .with(retry(2))
        .build();
    let refused = format!("http://{}/hooks", common::refused_addr().await);
    let err = http
        .post(&refused)
        .body("payload")
        .send()
        .await
        .unwrap_err();
    let parked = find::<Parked>(&err).expect("a Parked error");
    assert_eq!(parked.kind(), ParkReason::Transient);
    assert!(
        find::<reqwest::Error>(&err).unwrap().is_connect(),
        "the original error is kept"
    );
    let record = store.get(parked.id()).await.unwrap().unwrap();
    assert_eq!(record.attempts, 2);
    assert_eq!(record.target.body.data.0, "payload");
    assert!(record.idempotency_key.is_some());
    assert!(
        record
            .failure
            .chain
            .iter()
            .any(|line| line.contains("gave up after 2 attempts"))
    );
}

#[tokio::test]
async fn an_open_circuit_is_parked_as_such() {
    let store = Arc::new(MemoryStore::bounded(100).unwrap());
    let breaker = CircuitBreakerLayer::builder()
        .name("dlq")
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(60));
    let http = ClientBuilder::new(client())
        .with(DeadLetterMiddleware::new(
            DeadLetterLayer::builder("webhooks", store.clone())
                .build()
                .unwrap(),
        ))
        .with(CircuitBreakerMiddleware::per_host(breaker).unwrap())
        .build();
    let server = Script::new([reply(502)]);
    let base = server.serve().await;
    assert_eq!(http.get(&base).send().await.unwrap().status(), 502);
    let err = http.get(&base).send().await.unwrap_err();
    assert!(find::<CircuitOpen>(&err).is_some());
    let parked = find::<Parked>(&err).unwrap();
    assert_eq!(parked.kind(), ParkReason::CircuitOpen);
    let kinds: Vec<_> = all(&*store).await.iter().map(|r| r.failure.kind).collect();
    assert_eq!(kinds, [ParkReason::Transient, ParkReason::CircuitOpen]);
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn a_failing_primary_store_falls_back_and_never_drops_silently() {
    let primary = Arc::new(MemoryStore::bounded(1).unwrap());
    let secondary = Arc::new(MemoryStore::bounded(1).unwrap());
    let http = ClientBuilder::new(client())
        .with(DeadLetterMiddleware::new(
            DeadLetterLayer::builder("webhooks", primary.clone())
                .secondary(secondary.clone())
                .build()
                .unwrap(),
        ))
        .build();
    let server = Script::new([reply(500)]);
    let base = server.serve().await;
    for _ in 0..2 {
        let res = http.post(&base).body("x").send().await.unwrap();
        assert!(res.headers().get(DEAD_LETTER_ID).is_some());
    }
    assert_eq!(
        (all(&*primary).await.len(), all(&*secondary).await.len()),
        (1, 1)
    );

    // Both full: the caller gets the failure and both stores' errors, not a silent loss.
    let err = http.post(&base).body("x").send().await.unwrap_err();
    let failed = find::<ParkFailed>(&err).expect("a ParkFailed");
    assert_eq!(failed.store_errors().len(), 2);
    assert!(err.to_string().contains("500"), "{err}");
}
