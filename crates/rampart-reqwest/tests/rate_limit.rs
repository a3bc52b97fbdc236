//! The rate-limit middleware against a real axum server: a request over the limit is not
//! sent and fails with the tower layer's `RateLimited`; with a wait allowed, it goes out when
//! its turn comes; the limit is the layer's, shared with its handle.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Script, client, reply};
use rampart_core::rejection::{LimitReason, RateLimited};
use rampart_rate_limit::{Quota, RateLimitLayer};
use rampart_reqwest::{ByHost, RateLimitMiddleware, find};
use reqwest_middleware::ClientBuilder;

#[tokio::test]
async fn a_request_over_the_limit_is_not_sent() {
    let server = Script::new([reply(200)]);
    let base = server.serve().await;
    let layer = RateLimitLayer::builder(Quota::per_minute(2))
        .keyed(ByHost)
        .unwrap();
    let handle = layer.handle();
    let http = ClientBuilder::new(client())
        .with(RateLimitMiddleware::new(layer))
        .build();
    for _ in 0..2 {
        assert_eq!(http.get(&base).send().await.unwrap().status(), 200);
    }
    let err = http.get(&base).send().await.unwrap_err();
    let refused = find::<RateLimited>(&err).expect("the layer's refusal");
    assert_eq!(refused.reason(), LimitReason::OverLimit);
    // One every 30 s: the next fits in (about) 30 s.
    let wait = refused.retry_after().unwrap();
    assert!(
        wait > Duration::from_secs(29) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );
    assert_eq!(server.hits(), 2, "the third was not sent");
    assert_eq!(handle.stats().rejected, 1);
}

#[tokio::test]
async fn with_a_wait_allowed_a_request_goes_out_at_its_turn() {
    let server = Script::new([reply(200)]);
    let base = server.serve().await;
    let layer = RateLimitLayer::builder(Quota::per_second(20).burst(1))
        .max_wait(Duration::from_secs(1))
        .layer()
        .unwrap();
    let http = ClientBuilder::new(client())
        .with(RateLimitMiddleware::new(layer))
        .build();
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(http.get(&base).send().await.unwrap().status(), 200);
    }
    // One now, then one every 50 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn inside_the_retries_a_refused_request_is_sent_when_the_limit_has_room() {
    use rampart_retry::{
        backoff::{Backoff, Delays, Jitter},
        policy::RetryPolicy,
    };
    let server = Script::new([reply(200)]);
    let base = server.serve().await;
    // One every 200 ms, no burst; the retries back off 1 ms, far less than the limit asks.
    let layer = RateLimitLayer::builder(Quota::new(1, Duration::from_millis(200)))
        .layer()
        .unwrap();
    let backoff = Backoff::builder()
        .delays(Delays::Constant(Duration::from_millis(1)))
        .jitter(Jitter::None)
        .build()
        .unwrap();
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .backoff(backoff)
        .build()
        .unwrap();
    let http = ClientBuilder::new(client())
        .with(rampart_reqwest::RetryMiddleware::new(policy))
        .with(RateLimitMiddleware::new(layer.clone()))
        .build();
    let started = Instant::now();
    for _ in 0..2 {
        assert_eq!(http.get(&base).send().await.unwrap().status(), 200);
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(190),
        "waited the limit's retry_after: {took:?}"
    );
    assert_eq!(server.hits(), 2);
    assert_eq!(
        layer.handle().stats().rejected,
        1,
        "one refusal, then room: not three tries at 1 ms"
    );

    // A request that can never fit (cost over the burst) is tried once, not retried.
    let costly = RateLimitLayer::builder(Quota::per_second(10).burst(2))
        .layer()
        .unwrap()
        .cost(rampart_rate_limit::cost_fn(|_: &reqwest::Request| 5));
    let policy = RetryPolicy::builder().max_attempts(3).build().unwrap();
    let http = ClientBuilder::new(client())
        .with(rampart_reqwest::RetryMiddleware::new(policy))
        .with(RateLimitMiddleware::new(costly.clone()))
        .build();
    let err = http.get(&base).send().await.unwrap_err();
    assert_eq!(
        find::<RateLimited>(&err).unwrap().reason(),
        LimitReason::CostTooHigh
    );
    assert_eq!(costly.handle().stats().rejected, 1, "not retried");
}
