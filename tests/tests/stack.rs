//! Layers stacked in the recommended order: a breaker outside a bulkhead. The bulkhead's
//! rejections are the caller's own overload, not the dependency's failures: with
//! `ignore_rejections` they must not trip the breaker, while real failures still do.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use rampart::prelude::*;
use tokio::sync::Semaphore;
use tower::{ServiceBuilder, ServiceExt, service_fn};

#[tokio::test]
async fn bulkhead_rejections_do_not_trip_an_outer_breaker() {
    let breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(30))
        .layer()
        .unwrap()
        .ignore_rejections();
    let breaker_handle = breaker.handle();
    let bulkhead = BulkheadLayer::builder().max_concurrent(1).layer().unwrap();
    let bulkhead_handle = bulkhead.handle();

    let gate = Arc::new(Semaphore::new(0));
    let fail = Arc::new(AtomicBool::new(false));
    let svc = ServiceBuilder::new()
        .circuit_breaker(breaker)
        .bulkhead(bulkhead)
        .service(service_fn({
            let (gate, fail) = (gate.clone(), fail.clone());
            move |_: ()| {
                let (gate, fail) = (gate.clone(), fail.clone());
                async move {
                    gate.acquire().await.unwrap().forget();
                    if fail.load(Ordering::SeqCst) {
                        Err(std::io::Error::other("down"))
                    } else {
                        Ok(())
                    }
                }
            }
        }));

    // One call holds the only permit; ten more are turned away by the bulkhead.
    let running = tokio::spawn(svc.clone().oneshot(()));
    tokio::task::yield_now().await;
    for _ in 0..10 {
        let err = svc.clone().oneshot(()).await.unwrap_err();
        let inner = err.into_inner().expect("not the breaker's own rejection");
        assert!(inner.rejection().is_some(), "the bulkhead's rejection");
    }
    assert_eq!(bulkhead_handle.stats().rejected, 10);
    assert_eq!(breaker_handle.state(), State::Closed);
    assert_eq!(breaker_handle.stats().ignored, 10, "counted neither way");
    gate.add_permits(1);
    running.await.unwrap().unwrap();

    // Real failures of the dependency still trip it.
    fail.store(true, Ordering::SeqCst);
    gate.add_permits(3);
    for _ in 0..3 {
        let _ = svc.clone().oneshot(()).await;
    }
    assert_eq!(breaker_handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn the_recommended_client_stack_retries_through_breaker_and_bulkhead() {
    use rampart::retry::backoff::{Backoff, Jitter};
    use std::sync::atomic::AtomicU32;

    let calls = Arc::new(AtomicU32::new(0));
    let breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(5)
        .layer()
        .unwrap()
        .ignore_rejections();
    let handle = breaker.handle();
    let svc = ServiceBuilder::new()
        .retries(
            RetryLayer::builder()
                .max_attempts(3)
                .backoff(Backoff::builder().jitter(Jitter::None).build().unwrap())
                .layer()
                .unwrap(),
        )
        .circuit_breaker(breaker)
        .bulkhead(BulkheadLayer::builder().max_concurrent(4).layer().unwrap())
        .service(service_fn({
            let calls = calls.clone();
            move |_: ()| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 0 {
                        Err(std::io::Error::other("blip"))
                    } else {
                        Ok("done")
                    }
                }
            }
        }));
    let started = tokio::time::Instant::now();
    assert_eq!(svc.oneshot(()).await.unwrap(), "done");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one retry");
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(1),
        "after the 1 s backoff"
    );
    let stats = handle.stats();
    assert_eq!(
        (stats.failures, stats.successes),
        (1, 1),
        "the breaker judged each attempt"
    );
}

#[test]
fn the_builder_takes_a_bulkhead_that_holds_permits_until_the_body_ends() {
    // Would not compile if `ServiceBuilderExt::bulkhead` took only the default release policy.
    let _svc = ServiceBuilder::new()
        .bulkhead(
            BulkheadLayer::builder()
                .max_concurrent(1)
                .layer()
                .unwrap()
                .release_on_body_end(),
        )
        .service(service_fn(|_: http::Request<()>| async {
            Ok::<_, std::io::Error>(http::Response::new(()))
        }));
}

#[tokio::test(start_paused = true)]
async fn a_success_rate_layer_feeds_the_health_view() {
    use rampart::health::{SuccessRate, SuccessRateLayer};

    let rate = SuccessRate::new();
    let svc = ServiceBuilder::new()
        .success_rate(SuccessRateLayer::new(rate.clone()))
        .service(service_fn(|req: http::Request<u16>| async move {
            let mut res = http::Response::new(());
            *res.status_mut() = http::StatusCode::from_u16(*req.body()).unwrap();
            Ok::<_, std::io::Error>(res)
        }));
    for status in [200, 200, 503] {
        svc.clone()
            .oneshot(http::Request::new(status))
            .await
            .unwrap();
    }
    let snapshot = rate.snapshot();
    assert_eq!((snapshot.successes, snapshot.failures), (2, 1));
}
