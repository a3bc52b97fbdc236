//! The tower adapter: waiting, timeouts, cancellation, priorities and partitions, with
//! `tower-test`'s mock and paused time.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use http::Request;
use rampart_bulkhead::{
    BulkheadError, BulkheadLayer, ByExtension, FullReason, Priority, PriorityHeader,
};
use rampart_core::key::ByHeader;
use tokio::sync::Semaphore;
use tokio_test::assert_ready_ok;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::{assert_request_eq, mock};

#[tokio::test(start_paused = true)]
async fn a_waiting_call_runs_when_a_permit_frees() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_wait(Duration::from_secs(5))
        .layer()
        .unwrap();
    let handle = layer.handle();
    let (mut svc, mut inner) = mock::spawn_layer::<&str, &str, _>(layer);

    assert_ready_ok!(svc.poll_ready());
    let first = svc.call("first");
    assert_ready_ok!(svc.poll_ready());
    let second = tokio::spawn(svc.call("second"));
    tokio::task::yield_now().await;
    assert_eq!(handle.stats().queued, 1);

    let (req, respond) = inner.next_request().await.unwrap();
    assert_eq!(req, "first");
    assert!(
        inner.poll_request().is_pending(),
        "the second call waits, unseen by the inner service"
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    respond.send_response("one");
    assert_eq!(first.await.unwrap(), "one");

    assert_request_eq!(inner, "second").send_response("two");
    assert_eq!(second.await.unwrap().unwrap(), "two");
    let s = handle.stats();
    assert_eq!((s.active, s.queued, s.rejected), (0, 0, 0));
    assert_eq!(s.longest_wait, Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_wait_that_runs_out_is_rejected_after_max_wait() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_wait(Duration::from_millis(300))
        .layer()
        .unwrap();
    let handle = layer.handle();
    let (mut svc, mut inner) = mock::spawn_layer::<u8, u8, _>(layer);
    assert_ready_ok!(svc.poll_ready());
    let _busy = svc.call(1);
    let _held = inner.next_request().await.unwrap();

    assert_ready_ok!(svc.poll_ready());
    let started = tokio::time::Instant::now();
    let err = svc.call(2).await.unwrap_err();
    let full = err.rejection().expect("rejected by the bulkhead");
    assert_eq!(full.reason(), FullReason::WaitElapsed);
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert_eq!(full.waited(), Duration::from_millis(300));
    let s = handle.stats();
    assert_eq!((s.queued, s.rejected_wait_elapsed), (0, 1));
    assert!(inner.poll_request().is_pending());
}

#[tokio::test]
async fn dropping_a_call_releases_its_permit_or_its_place_in_line() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_wait(Duration::from_secs(60))
        .layer()
        .unwrap();
    let handle = layer.handle();
    let (mut svc, mut inner) = mock::spawn_layer::<u8, u8, _>(layer);

    assert_ready_ok!(svc.poll_ready());
    let running = svc.call(1);
    let _req = inner.next_request().await.unwrap();
    assert_ready_ok!(svc.poll_ready());
    let waiting = svc.call(2);
    // Not polled yet, but already in line: the queue is joined in `call`.
    assert_eq!((handle.stats().active, handle.stats().queued), (1, 1));
    drop(waiting);
    assert_eq!(
        handle.stats().queued,
        0,
        "a dropped waiter leaves the queue"
    );
    drop(running);
    assert_eq!(handle.stats().active, 0, "a dropped call frees its permit");

    assert_ready_ok!(svc.poll_ready());
    let next = svc.call(3);
    assert_request_eq!(inner, 3).send_response(3);
    assert_eq!(next.await.unwrap(), 3);
}

#[tokio::test]
async fn a_full_bulkhead_never_calls_the_inner_service() {
    let layer = BulkheadLayer::builder().max_concurrent(1).layer().unwrap();
    let (mut svc, mut inner) = mock::spawn_layer::<u8, u8, _>(layer);
    assert_ready_ok!(svc.poll_ready());
    let _busy = svc.call(1);
    assert_ready_ok!(svc.poll_ready());
    match svc.call(2).await {
        Err(BulkheadError::Rejected(full)) => assert_eq!(full.reason(), FullReason::NoCapacity),
        other => panic!("expected a rejection, got {other:?}"),
    }
    let (req, _) = inner.next_request().await.unwrap();
    assert_eq!(req, 1);
    assert!(inner.poll_request().is_pending());
}

/// A service whose calls block until `gate` has a permit, recording the order they ran in.
fn gated(
    gate: Arc<Semaphore>,
    order: Arc<Mutex<Vec<&'static str>>>,
) -> impl Service<Request<&'static str>, Response = (), Error = std::io::Error, Future: Send> + Clone
{
    service_fn(move |req: Request<&'static str>| {
        let gate = gate.clone();
        let order = order.clone();
        async move {
            order.lock().expect("order lock").push(*req.body());
            gate.acquire().await.expect("gate open").forget();
            Ok(())
        }
    })
}

fn request(class: &'static str, body: &'static str) -> Request<&'static str> {
    let mut req = Request::new(body);
    req.extensions_mut().insert(Priority::new(class));
    req
}

#[tokio::test]
async fn waiters_are_served_by_priority_and_in_order_within_a_class() {
    // Nothing reserved, one shared permit: every class borrows, by priority.
    let layer = BulkheadLayer::builder()
        .borrowing_class("critical", 0)
        .borrowing_class("normal", 0)
        .borrowing_class("bulk", 0)
        .capacity(1)
        .max_wait(Duration::from_secs(5))
        .layer()
        .unwrap()
        .prioritize(ByExtension);
    let handle = layer.handle();
    let gate = Arc::new(Semaphore::new(0));
    let order = Arc::new(Mutex::new(Vec::new()));
    let svc = layer.layer(gated(gate.clone(), order.clone()));

    let mut tasks = Vec::new();
    let mut spawn = |class, body| {
        let svc = svc.clone();
        tasks.push(tokio::spawn(svc.oneshot(request(class, body))));
    };
    spawn("critical", "running");
    tokio::task::yield_now().await;
    // Arrive in this order while the only permit is taken:
    for (class, body) in [
        ("bulk", "bulk-1"),
        ("normal", "normal-1"),
        ("bulk", "bulk-2"),
        ("critical", "critical-1"),
        ("normal", "normal-2"),
    ] {
        spawn(class, body);
        tokio::task::yield_now().await;
    }
    assert_eq!(handle.stats().queued, 5);
    for _ in 0..6 {
        gate.add_permits(1);
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        *order.lock().unwrap(),
        [
            "running",
            "critical-1",
            "normal-1",
            "normal-2",
            "bulk-1",
            "bulk-2"
        ]
    );
}

#[tokio::test]
async fn a_reserved_class_gets_through_while_a_higher_class_is_saturated() {
    // Lower classes don't starve: bulk's reservation is its own, whatever critical does.
    let layer = BulkheadLayer::builder()
        .class("critical", 2)
        .class("bulk", 1)
        .layer()
        .unwrap()
        .prioritize(PriorityHeader::new(http::HeaderName::from_static(
            "x-priority",
        )));
    let gate = Arc::new(Semaphore::new(0));
    let order = Arc::new(Mutex::new(Vec::new()));
    let svc = layer.layer(gated(gate.clone(), order));
    let req = |class: &'static str| {
        Request::get("/")
            .header("x-priority", class)
            .body(class)
            .unwrap()
    };
    let c1 = tokio::spawn(svc.clone().oneshot(req("critical")));
    let c2 = tokio::spawn(svc.clone().oneshot(req("critical")));
    tokio::task::yield_now().await;
    let err = svc.clone().oneshot(req("critical")).await.unwrap_err();
    assert_eq!(err.rejection().unwrap().class(), "critical");
    let bulk = tokio::spawn(svc.clone().oneshot(req("bulk")));
    gate.add_permits(3);
    bulk.await
        .unwrap()
        .expect("bulk ran on its own reservation");
    c1.await.unwrap().unwrap();
    c2.await.unwrap().unwrap();
}

#[tokio::test]
async fn partitions_isolate_tenants() {
    let layer = BulkheadLayer::builder()
        .name("tenants")
        .max_concurrent(1)
        .keyed(ByHeader::new(http::HeaderName::from_static("x-tenant")))
        .unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let order = Arc::new(Mutex::new(Vec::new()));
    let svc = layer.layer(gated(gate.clone(), order));
    let req = |tenant: &'static str| {
        Request::get("/")
            .header("x-tenant", tenant)
            .body(tenant)
            .unwrap()
    };
    let noisy = tokio::spawn(svc.clone().oneshot(req("noisy")));
    tokio::task::yield_now().await;
    let err = svc.clone().oneshot(req("noisy")).await.unwrap_err();
    assert_eq!(err.rejection().unwrap().reason(), FullReason::NoCapacity);
    let quiet = tokio::spawn(svc.clone().oneshot(req("quiet")));
    gate.add_permits(2);
    quiet
        .await
        .unwrap()
        .expect("another tenant has its own partition");
    noisy.await.unwrap().unwrap();
    let key = http::HeaderValue::from_static("noisy");
    let noisy_stats = layer.handle().get(&key).unwrap().stats();
    assert_eq!((noisy_stats.active, noisy_stats.rejected), (0, 1));
    assert_eq!(layer.handle().partitions().len(), 2);
}

#[tokio::test]
async fn every_layered_service_shares_one_limit() {
    let layer = BulkheadLayer::builder().max_concurrent(1).layer().unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let order = Arc::new(Mutex::new(Vec::new()));
    let route_a = layer.layer(gated(gate.clone(), order.clone()));
    let route_b = layer.clone().layer(gated(gate.clone(), order));
    let a = tokio::spawn(route_a.oneshot(Request::new("a")));
    tokio::task::yield_now().await;
    let err = route_b.oneshot(Request::new("b")).await.unwrap_err();
    assert!(
        err.rejection().is_some(),
        "route b sees route a's permit taken"
    );
    gate.add_permits(1);
    a.await.unwrap().unwrap();
}

#[tokio::test]
async fn on_body_end_holds_the_permit_while_the_body_streams() {
    use http_body_util::{BodyExt, Full};
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .layer()
        .unwrap()
        .release_on_body_end();
    let handle = layer.handle();
    let svc = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, std::io::Error>(http::Response::new(Full::new(bytes::Bytes::from_static(
            b"payload",
        ))))
    }));

    let res = svc.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(
        handle.stats().active,
        1,
        "the head arrived, the body has not been read"
    );
    let err = svc.clone().oneshot(Request::new(())).await.unwrap_err();
    assert_eq!(err.rejection().unwrap().reason(), FullReason::NoCapacity);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "payload");
    assert_eq!(handle.stats().active, 0, "released with the last frame");

    // A body dropped unread releases too.
    let res = svc.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(handle.stats().active, 1);
    drop(res);
    assert_eq!(handle.stats().active, 0);
}

#[tokio::test]
async fn metrics_count_admitted_and_rejected_calls_and_gauge_those_in_flight() {
    let store = rampart_core::testing::MetricsRecorder::default();
    let (layer, gate) = metrics::with_local_recorder(&store, || {
        let layer = BulkheadLayer::builder()
            .name("db")
            .max_concurrent(1)
            .layer()
            .unwrap();
        (layer, Arc::new(Semaphore::new(0)))
    });
    let order = Arc::new(Mutex::new(Vec::new()));
    let svc = layer.layer(gated(gate.clone(), order));
    let running = tokio::spawn(svc.clone().oneshot(Request::new("a")));
    tokio::task::yield_now().await;
    assert_eq!(
        store.get("rampart_bulkhead_active{class=default,name=db}"),
        1
    );
    assert!(svc.clone().oneshot(Request::new("b")).await.is_err());
    gate.add_permits(1);
    running.await.unwrap().unwrap();
    let calls = |outcome: &str| {
        store.get(&format!(
            "rampart_bulkhead_calls_total{{class=default,name=db,outcome={outcome}}}"
        ))
    };
    assert_eq!((calls("admitted"), calls("rejected")), (1, 1));
    assert_eq!(
        store.get("rampart_bulkhead_active{class=default,name=db}"),
        0
    );
}

/// 5 000 tenants through a partition per tenant: the metric series stay bounded by the
/// per-key cap, every call counted.
#[test]
fn per_key_series_are_bounded_however_many_tenants_pass() {
    let store = rampart_core::testing::MetricsRecorder::default();
    metrics::with_local_recorder(&store, || {
        let layer = BulkheadLayer::builder()
            .name("tenants")
            .max_concurrent(4)
            .max_keys(16)
            .metrics_per_key(2)
            .keyed(ByHeader::new(http::HeaderName::from_static("x-tenant")))
            .unwrap();
        let svc = layer.layer(service_fn(|_req: Request<()>| async {
            Ok::<_, std::io::Error>(())
        }));
        for i in 0..5_000 {
            let req = Request::get("/")
                .header("x-tenant", format!("t{i}"))
                .body(())
                .unwrap();
            rampart_core::testing::ready(svc.clone().oneshot(req))
                .expect("ready at once")
                .unwrap();
        }
    });
    let series = store.series("rampart_bulkhead_calls_total");
    let admitted: Vec<_> = series
        .iter()
        .filter(|s| s.contains("outcome=admitted"))
        .collect();
    assert!(
        admitted.len() <= 2 + 2,
        "two own keys, `_other`, `_none`: {series:?}"
    );
    let total: u64 = admitted.iter().map(|s| store.get(s)).sum();
    assert_eq!(total, 5_000);
}

#[tokio::test]
async fn the_keyed_handle_evicts_idle_partitions_but_never_a_busy_one() {
    let clock = rampart_core::clock::ManualClock::new();
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .idle_timeout(Duration::from_secs(60))
        .clock(clock.shared())
        .keyed(rampart_core::key::key_fn(|t: &&'static str| Some(*t)))
        .unwrap();
    let handle = layer.handle();
    let busy = layer.acquire(Some("busy"), None).await.expect("a permit");
    drop(layer.acquire(Some("idle"), None).await.expect("a permit"));
    assert_eq!(handle.len(), 2);
    assert_eq!(handle.evict_idle(), 0, "nothing idle for long yet");
    clock.advance(Duration::from_secs(61));
    assert_eq!(handle.evict_idle(), 1, "the idle one goes");
    assert!(handle.get(&"idle").is_none());
    assert_eq!(
        handle.get(&"busy").unwrap().stats().active,
        1,
        "the busy one stays"
    );
    drop(busy);
}
