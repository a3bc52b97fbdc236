//! The tower adapter, with `tower-test`'s mock service and paused time.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use http::{Request, Response, StatusCode};
use rampart_circuit_breaker::{BreakerError, CircuitBreakerLayer, ClosePolicy, RejectedBy, State};
use rampart_core::{
    classify::HttpClassifier,
    error::{BoxError, find_in},
    key::ByAuthority,
};
use tokio_test::{assert_pending, assert_ready, assert_ready_ok};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::{assert_request_eq, mock};

fn breaker() -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder()
        .name("test")
        .count_window(4)
        .minimum_calls(2)
        .failure_rate_threshold(50.0)
        .open_duration(Duration::from_secs(10))
        .layer()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_tripped_breaker_fails_fast_without_calling_the_inner_service() {
    let layer = breaker();
    let handle = layer.handle();
    let (mut svc, mut inner) = mock::spawn_layer::<&str, &str, _>(layer);

    for _ in 0..2 {
        assert_ready_ok!(svc.poll_ready());
        let fut = svc.call("charge");
        assert_request_eq!(inner, "charge").send_error("connection reset");
        let err = fut.await.unwrap_err();
        assert!(
            matches!(err, BreakerError::Inner(_)),
            "inner errors pass through"
        );
    }
    assert_eq!(handle.state(), State::Open);

    assert_ready_ok!(svc.poll_ready());
    let err = svc.call("charge").await.unwrap_err();
    let open = err.rejection().expect("rejected by the breaker");
    assert_eq!(open.retry_after(), Some(Duration::from_secs(10)));
    assert!(
        inner.poll_request().is_pending(),
        "the inner service never saw the rejected request"
    );

    // After the open time, a probe goes through and recovers the breaker.
    tokio::time::advance(Duration::from_secs(10)).await;
    for _ in 0..2 {
        assert_ready_ok!(svc.poll_ready());
        let fut = svc.call("charge");
        assert_request_eq!(inner, "charge").send_response("ok");
        assert_eq!(fut.await.unwrap(), "ok");
    }
    assert_eq!(handle.state(), State::Closed);
}

#[tokio::test]
async fn readiness_is_the_inner_services() {
    let (mut svc, mut inner) = mock::spawn_layer::<&str, &str, _>(breaker());
    inner.allow(0);
    assert_pending!(svc.poll_ready());
    inner.allow(1);
    assert_ready_ok!(svc.poll_ready());
    inner.send_error("inner broke");
    let err = assert_ready!(svc.poll_ready()).unwrap_err();
    assert_eq!(err.to_string(), "inner broke");
}

#[tokio::test(start_paused = true)]
async fn a_dropped_response_future_frees_its_probe_slot() {
    let layer = CircuitBreakerLayer::builder()
        .count_window(2)
        .minimum_calls(1)
        .half_open_max_probes(1)
        .open_duration(Duration::from_secs(1))
        .layer()
        .unwrap();
    let handle = layer.handle();
    let (mut svc, mut inner) = mock::spawn_layer::<u32, u32, _>(layer);
    handle.transition_to(State::Open);
    tokio::time::advance(Duration::from_secs(1)).await;

    assert_ready_ok!(svc.poll_ready());
    let probe = svc.call(1);
    let _pending = inner.next_request().await.unwrap();
    assert_ready_ok!(svc.poll_ready());
    let err = svc.call(2).await.unwrap_err();
    assert_eq!(
        err.rejection().unwrap().rejected_by(),
        RejectedBy::HalfOpenFull
    );
    assert_eq!(handle.stats().probes_in_flight, 1);

    drop(probe); // the caller gave up
    assert_eq!(handle.stats().probes_in_flight, 0);
    assert_ready_ok!(svc.poll_ready());
    let next = svc.call(3);
    assert_request_eq!(inner, 3).send_response(3);
    assert_eq!(next.await.unwrap(), 3);
    assert_eq!(handle.state(), State::HalfOpen, "1 of 2 successes needed");
}

#[tokio::test]
async fn every_layered_service_and_clone_shares_one_breaker() {
    // axum calls `layer` once per route and clones the result per connection: they must trip
    // together.
    let layer = breaker();
    let calls = Arc::new(AtomicUsize::new(0));
    let failing = {
        let calls = calls.clone();
        service_fn(move |_: ()| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(std::io::Error::other("down")) }
        })
    };
    let route_a = layer.layer(failing.clone());
    let route_b = layer.clone().layer(failing);
    let _ = route_a.clone().oneshot(()).await;
    let _ = route_b.clone().oneshot(()).await;
    assert_eq!(layer.handle().state(), State::Open);
    let err = route_b.clone().oneshot(()).await.unwrap_err();
    assert!(err.rejection().is_some());
    let err = route_a.oneshot(()).await.unwrap_err();
    assert!(err.rejection().is_some());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(layer.handle().stats().rejections, 2);
}

fn status_service(
    statuses: Vec<u16>,
) -> impl Service<Request<()>, Response = Response<()>, Error = BoxError, Future: Send> + Clone {
    let statuses = Arc::new(statuses);
    let next = Arc::new(AtomicUsize::new(0));
    service_fn(move |_req: Request<()>| {
        let i = next.fetch_add(1, Ordering::SeqCst);
        let status = statuses[i % statuses.len()];
        async move {
            Ok::<_, BoxError>(
                Response::builder()
                    .status(StatusCode::from_u16(status).unwrap())
                    .body(())
                    .unwrap(),
            )
        }
    })
}

#[tokio::test]
async fn http_5xx_trips_and_4xx_is_ignored() {
    let layer = breaker().classifier(HttpClassifier::default());
    let handle = layer.handle();
    let svc = layer.layer(status_service(vec![404, 404, 404, 503, 200, 503]));
    for _ in 0..3 {
        let res = svc.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!(res.status(), 404, "4xx responses are passed on");
    }
    let s = handle.stats();
    assert_eq!((s.ignored, s.window_calls), (3, 0), "and count neither way");
    let res = svc.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.status(), 503, "a failure response is still a response");
    assert_eq!(handle.state(), State::Closed, "1 call < minimum of 2");
    let _ = svc.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(
        handle.state(),
        State::Closed,
        "50 % needs a failure to judge"
    );
    let _ = svc.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(handle.state(), State::Open, "2 of 3 calls failed");
    let err = svc.oneshot(Request::new(())).await.unwrap_err();
    assert!(err.rejection().is_some());
}

#[tokio::test]
async fn a_rejection_survives_boxing_and_is_found_by_type() {
    let layer = breaker();
    layer.handle().force_open();
    let svc = tower::ServiceBuilder::new()
        .map_err(BreakerError::into_box)
        .layer(layer)
        .service(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
    let err: BoxError = svc.oneshot(()).await.unwrap_err();
    let open = find_in::<rampart_circuit_breaker::CircuitOpen>(&*err).expect("downcastable");
    assert_eq!(open.rejected_by(), RejectedBy::ForcedOpen);
}

#[tokio::test]
async fn keyed_breakers_trip_per_host_and_stay_bounded() {
    let layer = CircuitBreakerLayer::builder()
        .name("hosts")
        .count_window(2)
        .minimum_calls(2)
        .max_keys(2)
        .keyed(ByAuthority)
        .unwrap()
        .classifier(HttpClassifier::default());
    let handle = layer.handle();
    let sick = Arc::new(AtomicUsize::new(0));
    let svc = layer.layer({
        let sick = sick.clone();
        service_fn(move |req: Request<()>| {
            let bad = req.uri().host() == Some("sick.example");
            if bad {
                sick.fetch_add(1, Ordering::SeqCst);
            }
            async move {
                let status = if bad { 503 } else { 200 };
                Ok::<_, BoxError>(Response::builder().status(status).body(()).unwrap())
            }
        })
    });
    let get = |uri: &str| {
        let svc = svc.clone();
        let req = Request::get(uri).body(()).unwrap();
        async move { svc.oneshot(req).await }
    };
    for _ in 0..3 {
        let _ = get("http://sick.example/").await;
    }
    assert_eq!(
        sick.load(Ordering::SeqCst),
        2,
        "the third call was rejected"
    );
    assert!(get("http://sick.example/").await.is_err());
    let ok = get("http://healthy.example/").await.unwrap();
    assert_eq!(ok.status(), 200, "another host's breaker is unaffected");

    let sick_key = http::uri::Authority::from_static("sick.example");
    assert_eq!(handle.get(&sick_key).unwrap().state(), State::Open);
    assert_eq!(handle.len(), 2);

    // A third host: the registry is full, so the least recently used *closed* breaker goes,
    // and the open one (the failing host) is kept.
    let _ = get("http://third.example/").await.unwrap();
    assert_eq!(handle.len(), 2);
    assert!(handle.get(&sick_key).is_some(), "the open breaker is kept");
    assert!(
        handle
            .get(&http::uri::Authority::from_static("healthy.example"))
            .is_none()
    );
    // Requests without a host share the fallback breaker.
    let _ = get("/relative").await.unwrap();
    assert_eq!(handle.fallback().stats().successes, 1);
}

#[tokio::test(start_paused = true)]
async fn success_rate_close_policy_through_the_service() {
    let layer = CircuitBreakerLayer::builder()
        .count_window(2)
        .minimum_calls(1)
        .half_open_max_probes(4)
        .close_policy(ClosePolicy::SuccessRate {
            probes: 4,
            min_success_rate: 50.0,
        })
        .open_duration(Duration::from_secs(1))
        .layer()
        .unwrap();
    let handle = layer.handle();
    let n = Arc::new(AtomicUsize::new(0));
    let svc = layer.layer({
        let n = n.clone();
        service_fn(move |_: ()| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            async move {
                if i.is_multiple_of(2) {
                    Err(std::io::Error::other("flaky"))
                } else {
                    Ok(())
                }
            }
        })
    });
    let _ = svc.clone().oneshot(()).await; // fails: open
    assert_eq!(handle.state(), State::Open);
    tokio::time::advance(Duration::from_secs(1)).await;
    for _ in 0..4 {
        let _ = svc.clone().oneshot(()).await;
    }
    assert_eq!(handle.state(), State::Closed, "2 of 4 probes = 50 %");
}

/// On tokio's clock, the time window learns of bucket ends and the open state of its end from
/// timers rather than clock reads; under paused time, jumps of any size must still land every
/// call in the right bucket and end the open state exactly on time.
#[tokio::test(start_paused = true)]
async fn timers_keep_exact_time_under_paused_time() {
    let layer = CircuitBreakerLayer::builder()
        .time_window(Duration::from_secs(10), 10)
        .minimum_calls(10)
        .failure_rate_threshold(50.0)
        .open_duration(Duration::from_secs(30))
        .layer()
        .unwrap();
    let handle = layer.handle();
    let n = Arc::new(AtomicUsize::new(0));
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let svc = layer.layer({
        let (n, fail) = (n.clone(), fail.clone());
        service_fn(move |_: ()| {
            n.fetch_add(1, Ordering::SeqCst);
            let bad = fail.load(Ordering::SeqCst);
            async move {
                if bad {
                    Err(std::io::Error::other("down"))
                } else {
                    Ok(())
                }
            }
        })
    });
    let call = || svc.clone().oneshot(());

    for _ in 0..9 {
        let _ = call().await;
    }
    // Exactly one window later the nine failures are gone, to the nanosecond.
    tokio::time::advance(Duration::from_secs(10)).await;
    fail.store(false, Ordering::SeqCst);
    for _ in 0..9 {
        call().await.unwrap();
    }
    assert_eq!(handle.stats().window_calls, 9, "only the fresh successes");
    fail.store(true, Ordering::SeqCst);
    let _ = call().await;
    assert_eq!(handle.state(), State::Closed, "1 failure in 10 calls");

    // A failure every half bucket: the ninth more makes 9 of 18, and trips.
    let mut failures = 1;
    while handle.state() == State::Closed {
        tokio::time::advance(Duration::from_millis(500)).await;
        let _ = call().await;
        failures += 1;
    }
    assert_eq!(failures, 9);

    // The rejection's hint counts down on tokio's clock; the open state ends on time.
    let rejected = call().await.unwrap_err();
    assert_eq!(
        rejected.rejection().unwrap().retry_after(),
        Some(Duration::from_secs(30))
    );
    tokio::time::advance(Duration::from_millis(29_999)).await;
    let rejected = call().await.unwrap_err();
    assert_eq!(
        rejected.rejection().unwrap().retry_after(),
        Some(Duration::from_millis(1))
    );
    let before = n.load(Ordering::SeqCst);
    tokio::time::advance(Duration::from_millis(1)).await;
    fail.store(false, Ordering::SeqCst);
    call()
        .await
        .expect("exactly at the end of the open time: a probe");
    assert_eq!(n.load(Ordering::SeqCst), before + 1);
    assert_eq!(handle.state(), State::HalfOpen);
}
