//! The rate-limit layer under paused time: a limit shared by every clone and `layer()` call,
//! costs, the bounded wait, shadow mode, run-time quota changes, and per-key limits (isolated,
//! bounded under a million keys, a key in debt never forgotten).

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::time::Duration;

use rampart_core::{
    key::ByHeader,
    rejection::{LimitReason, RateLimited},
};
use rampart_rate_limit::{Quota, RateLimitError, RateLimitLayer, cost_fn};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

fn echo() -> impl Service<u32, Response = u32, Error = std::io::Error, Future: Send> + Clone {
    service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) })
}

fn refusal<E: std::fmt::Debug>(err: RateLimitError<E>) -> RateLimited {
    *err.rejection().expect("a refusal, not an inner error")
}

#[tokio::test(start_paused = true)]
async fn every_clone_and_every_layer_call_share_one_limit() {
    let layer = RateLimitLayer::new(Quota::per_second(2)).unwrap();
    let a = layer.layer(echo());
    let b = layer.clone().layer(echo());
    assert!(a.clone().oneshot(1).await.is_ok());
    assert!(b.clone().oneshot(2).await.is_ok());
    let refused = refusal(a.oneshot(3).await.unwrap_err());
    assert_eq!(refused.reason(), LimitReason::OverLimit);
    assert_eq!(refused.retry_after(), Some(Duration::from_millis(500)));
    assert_eq!(refused.info().quota, 2);
    assert!(
        b.oneshot(4).await.is_err(),
        "the other service sees the same limit"
    );
    let stats = layer.handle().stats();
    assert_eq!((stats.admitted, stats.rejected), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn a_call_spends_its_cost_and_one_over_the_burst_is_refused_for_good() {
    let layer = RateLimitLayer::builder(Quota::per_second(10).burst(5))
        .max_wait(Duration::from_secs(60))
        .layer()
        .unwrap()
        .cost(cost_fn(|n: &u32| u64::from(*n)));
    let svc = layer.layer(echo());
    assert!(svc.clone().oneshot(4).await.is_ok());
    let refused = refusal(svc.clone().oneshot(6).await.unwrap_err());
    assert_eq!(refused.reason(), LimitReason::CostTooHigh);
    assert_eq!(
        refused.retry_after(),
        None,
        "it never fits, so it is not told to wait"
    );
    assert_eq!(refused.cost(), 6);
    assert!(svc.oneshot(1).await.is_ok(), "the refusal spent nothing");
    assert_eq!(layer.handle().stats().admitted_cost, 5);
}

#[tokio::test(start_paused = true)]
async fn calls_over_the_limit_wait_their_turn_in_order_up_to_the_bound() {
    let layer = RateLimitLayer::builder(Quota::per_second(10).burst(1))
        .max_wait(Duration::from_millis(250))
        .layer()
        .unwrap();
    let svc = layer.layer(echo());
    let start = Instant::now();
    let calls: Vec<_> = (0..3)
        .map(|n| {
            let svc = svc.clone();
            tokio::spawn(async move {
                svc.oneshot(n).await.unwrap();
                start.elapsed()
            })
        })
        .collect();
    // Decided in order: the fourth would wait 300 ms, over the bound.
    tokio::task::yield_now().await;
    let refused = refusal(svc.oneshot(3).await.unwrap_err());
    assert_eq!(refused.reason(), LimitReason::WaitTooLong);
    assert_eq!(refused.retry_after(), Some(Duration::from_millis(300)));
    let mut took = Vec::new();
    for call in calls {
        took.push(call.await.unwrap());
    }
    assert_eq!(
        took,
        [
            Duration::ZERO,
            Duration::from_millis(100),
            Duration::from_millis(200)
        ]
    );
    let stats = layer.handle().stats();
    assert_eq!((stats.admitted, stats.waited, stats.rejected), (1, 2, 1));
}

#[tokio::test(start_paused = true)]
async fn shadow_mode_counts_what_it_would_refuse_and_refuses_nothing() {
    let layer = RateLimitLayer::builder(Quota::per_second(1))
        .shadow(true)
        .layer()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(echo());
    for n in 0..5 {
        assert!(svc.clone().oneshot(n).await.is_ok());
    }
    let stats = handle.stats();
    assert_eq!(
        (stats.admitted, stats.shadow_rejected, stats.rejected),
        (1, 4, 0)
    );
    // Enforced from now on: the shadow refusals spent nothing, so the limit is where
    // enforcing would have left it.
    handle.set_shadow(false);
    assert!(svc.clone().oneshot(9).await.is_err());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(svc.oneshot(10).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_quota_changed_at_run_time_applies_to_the_next_call() {
    let layer = RateLimitLayer::new(Quota::per_minute(1)).unwrap();
    let handle = layer.handle();
    let svc = layer.layer(echo());
    assert!(svc.clone().oneshot(1).await.is_ok());
    assert!(svc.clone().oneshot(2).await.is_err());
    assert!(
        handle.set_quota(Quota::per_minute(0)).is_err(),
        "checked as the builder checks"
    );
    handle.set_quota(Quota::per_second(100).burst(10)).unwrap();
    assert_eq!(handle.quota(), Quota::per_second(100).burst(10));
    // The minute's debt is kept as time owed: 60 s minus tau (100 ms) to wait.
    let refused = refusal(svc.clone().oneshot(3).await.unwrap_err());
    assert!(refused.retry_after().unwrap() > Duration::from_secs(59));
    tokio::time::advance(Duration::from_secs(60)).await;
    for n in 0..10 {
        assert!(svc.clone().oneshot(n).await.is_ok(), "the new burst");
    }
    assert!(svc.oneshot(11).await.is_err());
}

fn tenant(t: &str) -> http::Request<()> {
    http::Request::get("/")
        .header("x-tenant", t)
        .body(())
        .unwrap()
}

fn http_echo()
-> impl Service<http::Request<()>, Response = (), Error = std::io::Error, Future: Send> + Clone {
    service_fn(|_req: http::Request<()>| async { Ok::<_, std::io::Error>(()) })
}

#[tokio::test(start_paused = true)]
async fn each_key_has_its_own_limit_and_keyless_requests_share_one() {
    let layer = RateLimitLayer::builder(Quota::per_second(2))
        .keyed(ByHeader::new(http::HeaderName::from_static("x-tenant")))
        .unwrap();
    let svc = layer.layer(http_echo());
    for _ in 0..2 {
        assert!(svc.clone().oneshot(tenant("acme")).await.is_ok());
    }
    assert!(
        svc.clone().oneshot(tenant("acme")).await.is_err(),
        "acme is over"
    );
    assert!(
        svc.clone().oneshot(tenant("globex")).await.is_ok(),
        "globex is not"
    );
    let keyless = || http::Request::get("/").body(()).unwrap();
    assert!(svc.clone().oneshot(keyless()).await.is_ok());
    assert!(svc.clone().oneshot(keyless()).await.is_ok());
    assert!(
        svc.oneshot(keyless()).await.is_err(),
        "keyless calls share one limit"
    );
    assert_eq!(layer.limit().keys(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_million_keys_keep_memory_bounded_and_a_key_in_debt_is_never_forgotten() {
    let layer = RateLimitLayer::builder(Quota::per_second(1))
        .max_keys(10_000)
        .keyed(rampart_core::key::key_fn(|n: &u32| Some(*n)))
        .unwrap();
    let mut svc = layer.layer(echo());
    // A million keys, 10 000 a second: each key's debt is paid a second later.
    for batch in 0..100u32 {
        for n in 0..10_000u32 {
            let key = batch * 10_000 + n;
            svc.ready().await.unwrap();
            svc.call(key).await.unwrap();
        }
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(
            layer.limit().keys() <= 10_000,
            "{} keys kept",
            layer.limit().keys()
        );
    }
    assert_eq!(layer.handle().stats().admitted, 1_000_000);

    // Now fill the registry with keys in debt: none of them can be forgotten.
    let small = RateLimitLayer::builder(Quota::per_minute(1))
        .max_keys(8)
        .keyed(rampart_core::key::key_fn(|n: &u32| Some(*n)))
        .unwrap();
    let svc = small.layer(echo());
    for key in 0..8 {
        assert!(svc.clone().oneshot(key).await.is_ok());
    }
    // Key 8 finds the registry full of debts: it goes to the shared overflow limit...
    assert!(svc.clone().oneshot(8).await.is_ok());
    assert!(
        svc.clone().oneshot(9).await.is_err(),
        "...which key 9 shares"
    );
    // ...and key 0 is still over its limit: its debt was kept.
    assert!(svc.oneshot(0).await.is_err());
    assert_eq!(small.limit().keys(), 8);
}

#[tokio::test]
async fn the_fast_clock_decides_on_real_time() {
    let layer = RateLimitLayer::builder(Quota::per_second(10).burst(1))
        .fast_clock()
        .layer()
        .unwrap();
    let svc = layer.layer(echo());
    assert!(svc.clone().oneshot(1).await.is_ok());
    let refused = refusal(svc.oneshot(2).await.unwrap_err());
    let wait = refused.retry_after().unwrap();
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(100),
        "the next unit in at most one interval: {wait:?}"
    );
}
