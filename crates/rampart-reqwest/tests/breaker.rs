//! The circuit breaker middleware against real axum servers: per host, rejecting without
//! sending, closing again. Time is a `ManualClock` given to the breakers: no sleeps.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Script, client, reply};
use rampart_circuit_breaker::{CircuitBreakerLayer, CircuitOpen, RejectedBy, State};
use rampart_core::clock::ManualClock;
use rampart_reqwest::{CircuitBreakerMiddleware, find};
use reqwest_middleware::ClientBuilder;

const OPEN_FOR: Duration = Duration::from_millis(500);

fn authority(base: &str) -> http::uri::Authority {
    base.trim_start_matches("http://").parse().unwrap()
}

#[tokio::test]
async fn opens_per_host_rejects_without_calling_and_closes_after_recovery() {
    let clock = ManualClock::new();
    let breaker = CircuitBreakerMiddleware::per_host(
        CircuitBreakerLayer::builder()
            .name("e2e")
            .consecutive_failures(3)
            .open_duration(OPEN_FOR)
            .clock(clock.shared()),
    )
    .unwrap();
    let http = ClientBuilder::new(client()).with(breaker.clone()).build();

    let failing = Script::new([reply(503)]);
    let healthy = Script::new([reply(200)]);
    let (a, b) = (failing.serve().await, healthy.serve().await);

    for _ in 0..3 {
        let res = http.get(format!("{a}/work")).send().await.unwrap();
        assert_eq!(res.status(), 503);
    }
    let a_breaker = breaker.handle(Some(&authority(&a))).unwrap();
    assert_eq!(a_breaker.state(), State::Open);

    // Open: rejected without reaching the server, with the tower layer's error type.
    let err = http.get(format!("{a}/work")).send().await.unwrap_err();
    let open = find::<CircuitOpen>(&err).expect("a CircuitOpen in the error");
    assert_eq!(open.rejected_by(), RejectedBy::Open);
    assert!(open.retry_after().unwrap() <= OPEN_FOR);
    assert!(
        rampart_core::error::find::<CircuitOpen>(&err).is_some(),
        "found through the standard source chain too"
    );
    assert!(err.to_string().contains("circuit breaker is open"), "{err}");
    assert_eq!(failing.hits(), 3, "the open breaker sent nothing");

    // Another host has its own breaker, closed.
    for _ in 0..5 {
        let res = http.get(format!("{b}/work")).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(healthy.hits(), 5);
    assert_eq!(
        breaker.handle(Some(&authority(&b))).unwrap().state(),
        State::Closed
    );
    assert_eq!(breaker.keyed_handle().unwrap().len(), 2);

    // The host recovers; once the open time is over, probes go through and close the breaker.
    failing.set([reply(200)]);
    clock.advance(OPEN_FOR);
    for _ in 0..2 {
        let res = http.get(format!("{a}/work")).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(a_breaker.state(), State::Closed);
    assert_eq!(failing.hits(), 5);
    let stats = a_breaker.stats();
    assert_eq!((stats.failures, stats.rejections), (3, 1));
}

#[tokio::test]
async fn client_errors_and_transport_errors_are_judged_like_the_tower_layer() {
    let breaker = CircuitBreakerMiddleware::per_host(
        CircuitBreakerLayer::builder()
            .name("judged")
            .consecutive_failures(2),
    )
    .unwrap();
    let http = ClientBuilder::new(client()).with(breaker.clone()).build();

    // 404s say nothing about the host's health.
    let not_found = Script::new([reply(404)]);
    let base = not_found.serve().await;
    for _ in 0..4 {
        assert_eq!(http.get(&base).send().await.unwrap().status(), 404);
    }
    let handle = breaker.handle(Some(&authority(&base))).unwrap();
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.stats().ignored, 4);

    // A host that refuses connections trips its breaker.
    let refused = format!("http://{}", common::refused_addr().await);
    for _ in 0..2 {
        let err = http.get(&refused).send().await.unwrap_err();
        assert!(
            find::<CircuitOpen>(&err).is_none(),
            "a transport error: {err}"
        );
    }
    let err = http.get(&refused).send().await.unwrap_err();
    assert!(find::<CircuitOpen>(&err).is_some());
}

#[tokio::test]
async fn one_shared_breaker_guards_every_host() {
    let layer = CircuitBreakerLayer::builder()
        .name("shared")
        .consecutive_failures(1)
        .layer()
        .unwrap()
        .classifier(rampart_reqwest::ReqwestClassifier::new());
    let handle = layer.handle();
    let http = ClientBuilder::new(client())
        .with(CircuitBreakerMiddleware::shared(layer))
        .build();
    let failing = Script::new([reply(502)]);
    let healthy = Script::new([reply(200)]);
    let (a, b) = (failing.serve().await, healthy.serve().await);
    assert_eq!(http.get(&a).send().await.unwrap().status(), 502);
    assert_eq!(handle.state(), State::Open);
    let err = http.get(&b).send().await.unwrap_err();
    assert!(find::<CircuitOpen>(&err).is_some());
    assert_eq!(healthy.hits(), 0);
}
