//! The retry layer around rampart's own limits (paused time): a call refused by the rate
//! limit inside is retried when the limit has room, not at the backoff's pace; one that costs
//! more than the burst is not retried; a day's budget spent asks for a wait longer than the
//! policy allows, so the layer gives up at once.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use rampart::core::rejection::LimitReason;
use rampart_rate_limit::{
    Quota, RateLimitLayer,
    budget::{Budget, BudgetLayer, Period},
    cost_fn,
};
use rampart_retry::{
    LastError, RetryLayer,
    backoff::{Backoff, Delays, Jitter},
    policy::{GiveUp, RetryPolicy},
};
use tower::{ServiceBuilder, ServiceExt, service_fn};

fn policy() -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(4)
        .backoff(
            Backoff::builder()
                .delays(Delays::Constant(Duration::from_millis(1)))
                .jitter(Jitter::None)
                .build()
                .unwrap(),
        )
        .max_server_delay(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The dependency: counts the calls that reach it.
fn dependency(
    hits: &Arc<AtomicU32>,
) -> impl tower::Service<u64, Response = u64, Error = std::io::Error, Future: Send> + Clone {
    let hits = hits.clone();
    service_fn(move |n: u64| {
        hits.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, std::io::Error>(n) }
    })
}

#[tokio::test(start_paused = true)]
async fn a_refused_call_is_retried_when_the_limit_has_room() {
    let hits = Arc::new(AtomicU32::new(0));
    // One every 2 s, no burst.
    let limit = RateLimitLayer::builder(Quota::new(1, Duration::from_secs(2)))
        .layer()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy()).honour_rejections())
        .layer(limit.clone())
        .service(dependency(&hits));
    let start = tokio::time::Instant::now();
    svc.clone().oneshot(1).await.unwrap();
    svc.clone().oneshot(2).await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(2),
        "waited the limit's retry_after"
    );
    assert_eq!(
        limit.handle().stats().rejected,
        1,
        "not three tries 1 ms apart"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // Without honour_rejections the refusal is not a failure the retry sees as worth a wait:
    // it comes back at once.
    let plain = ServiceBuilder::new()
        .layer(RetryLayer::new(policy()))
        .layer(limit.clone())
        .service(dependency(&hits));
    let err = plain.oneshot(3).await.unwrap_err();
    assert_eq!(
        err.attempts(),
        4,
        "retried at the backoff's pace, all refused: {err}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_that_never_fits_is_not_retried_and_a_long_wait_gives_up_at_once() {
    let hits = Arc::new(AtomicU32::new(0));
    let costly = RateLimitLayer::builder(Quota::per_second(10).burst(2))
        .layer()
        .unwrap()
        .cost(cost_fn(|n: &u64| *n));
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy()).honour_rejections())
        .layer(costly.clone())
        .service(dependency(&hits));
    let err = svc.oneshot(5).await.unwrap_err();
    assert_eq!(err.reason(), GiveUp::Fatal);
    assert_eq!(err.attempts(), 1);
    let LastError::Inner(inner) = err.last() else {
        panic!("the limit's refusal: {err}");
    };
    assert_eq!(
        inner.rejection().unwrap().reason(),
        LimitReason::CostTooHigh
    );

    // A day's budget of 1, spent: the refusal asks to wait until midnight, past the 10 s the
    // policy allows a server (or a limit) to ask for.
    let budget = BudgetLayer::new(Budget::new(1, Period::day())).unwrap();
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy()).honour_rejections())
        .layer(budget)
        .service(dependency(&hits));
    svc.clone().oneshot(1).await.unwrap();
    let start = tokio::time::Instant::now();
    let err = svc.oneshot(1).await.unwrap_err();
    assert!(
        matches!(err.reason(), GiveUp::ServerDelayTooLong { .. }),
        "{:?}",
        err.reason()
    );
    assert_eq!(start.elapsed(), Duration::ZERO, "gave up at once");
}
