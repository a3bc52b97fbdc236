//! The recommended stack, outermost first: dead letters → retry → breaker → bulkhead, against
//! a real axum server that is down.
#![allow(clippy::unwrap_used)]

mod common;

use std::{sync::Arc, time::Duration};

use common::{Script, client, reply};
use rampart_bulkhead::BulkheadLayer;
use rampart_circuit_breaker::{CircuitBreakerLayer, CircuitOpen, State};
use rampart_dead_letter::{DeadLetterLayer, DeadLetterStore, MemoryStore, ParkReason, Parked};
use rampart_reqwest::{
    BulkheadMiddleware, CircuitBreakerMiddleware, DeadLetterMiddleware, RetryMiddleware, find,
};
use rampart_retry::{
    RetryError,
    backoff::{Backoff, Delays, Jitter},
    policy::{GiveUp, RetryPolicy},
};
use reqwest_middleware::ClientBuilder;

#[tokio::test]
async fn the_breaker_trips_during_the_retries_and_the_request_is_parked_once() {
    let store = Arc::new(MemoryStore::bounded(100).unwrap());
    let breaker = CircuitBreakerMiddleware::per_host(
        CircuitBreakerLayer::builder()
            .name("stack")
            .consecutive_failures(2)
            .open_duration(Duration::from_secs(60)),
    )
    .unwrap();
    let bulkhead = BulkheadLayer::builder()
        .name("stack")
        .max_concurrent(4)
        .layer()
        .unwrap();
    let permits = bulkhead.handle();
    let policy = RetryPolicy::builder()
        .max_attempts(5)
        .max_server_delay(Duration::from_secs(30))
        .backoff(
            Backoff::builder()
                .delays(Delays::Constant(Duration::from_millis(5)))
                .jitter(Jitter::None)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let http = ClientBuilder::new(client())
        .with(DeadLetterMiddleware::new(
            DeadLetterLayer::builder("stack", store.clone())
                .build()
                .unwrap(),
        ))
        .with(RetryMiddleware::new(policy))
        .with(breaker.clone())
        .with(BulkheadMiddleware::new(bulkhead))
        .build();

    let server = Script::new([reply(503)]);
    let base = server.serve().await;
    let err = http
        .post(format!("{base}/orders"))
        .body("{\"sku\":7}")
        .send()
        .await
        .unwrap_err();

    // Two attempts reached the server and tripped its breaker; the third was rejected, and
    // the retry gave up rather than wait the breaker's 60 s (more than the 30 s it allows).
    assert_eq!(server.hits(), 2);
    let retry = find::<RetryError<reqwest_middleware::Error>>(&err).unwrap();
    assert_eq!(retry.attempts(), 3);
    assert!(matches!(retry.reason(), GiveUp::ServerDelayTooLong { .. }));
    assert!(find::<CircuitOpen>(&err).is_some());
    let authority = base.trim_start_matches("http://").parse().unwrap();
    assert_eq!(
        breaker.handle(Some(&authority)).unwrap().state(),
        State::Open
    );

    // Parked once, as an open circuit, with every attempt counted and the key they carried.
    let parked = find::<Parked>(&err).unwrap();
    assert_eq!(parked.kind(), ParkReason::CircuitOpen);
    let record = store.get(parked.id()).await.unwrap().unwrap();
    assert_eq!(record.attempts, 3);
    let key = server.seen()[0].headers["idempotency-key"].clone();
    assert_eq!(
        record.idempotency_key.as_deref(),
        Some(key.to_str().unwrap())
    );
    assert_eq!(store.stats().await.unwrap().total, 1);

    // The bulkhead held a permit per attempt only while it was in flight.
    let stats = permits.stats();
    assert_eq!((stats.active, stats.rejected), (0, 0));
}
