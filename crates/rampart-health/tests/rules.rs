//! Each rule of the health view, through the public API, with real rampart components: a
//! `CircuitBreakerLayer`, a `BulkheadLayer`, a `MemoryStore`. Timed rules run on paused time.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report
#![cfg(all(
    feature = "circuit-breaker",
    feature = "bulkhead",
    feature = "dead-letter"
))]

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use rampart_bulkhead::BulkheadLayer;
use rampart_circuit_breaker::{CircuitBreakerLayer, State};
use rampart_dead_letter::{
    BoxFuture as StoreFuture, DeadLetter, DeadLetterId, DeadLetterStore, Filter, MemoryStore,
    Query, Stats, StoreError, StoreErrorKind, conformance,
};
use rampart_health::{
    BoxFuture, Component, ComponentHealth, DeadLetterCheck, HealthRegistry, Probe, Status,
    SuccessRate, SuccessRateLayer,
};
use tokio::time::Instant;
use tower::{Layer, ServiceExt, service_fn};

/// A registry that checks every time (no cache), so each assertion sees the current state.
fn registry() -> HealthRegistry {
    HealthRegistry::builder().cache_for(Duration::ZERO).build()
}

async fn status_of(registry: &HealthRegistry, name: &str) -> (Status, Option<String>) {
    let report = registry.check().await;
    let c = report.component(name).unwrap();
    (c.status(), c.health.reason.clone())
}

// ---------------------------------------------------------------- circuit breakers

#[tokio::test]
async fn a_closed_breaker_is_healthy_an_open_one_degraded() {
    let layer = CircuitBreakerLayer::builder()
        .name("payments")
        .layer()
        .unwrap();
    let handle = layer.handle();
    let health = registry();
    health.breaker("payments", handle.clone());

    let report = health.check().await;
    assert_eq!(report.status, Status::Healthy);
    let c = report.component("payments").unwrap();
    assert_eq!(c.kind, "circuit_breaker");
    assert_eq!(c.health.details["state"], "closed");

    handle.force_open();
    let report = health.check().await;
    assert_eq!(
        report.status,
        Status::Degraded,
        "open is degraded, not unhealthy"
    );
    assert!(report.is_ready());
    let c = report.component("payments").unwrap();
    assert_eq!(c.health.reason.as_deref(), Some("circuit forced open"));
    assert_eq!(c.health.details["mode"], "forced_open");

    handle.reset();
    assert_eq!(health.check().await.status, Status::Healthy);
}

#[tokio::test]
async fn a_breaker_tripped_by_failures_is_degraded() {
    let layer = CircuitBreakerLayer::builder()
        .name("inventory")
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(30))
        .layer()
        .unwrap();
    let handle = layer.handle();
    let health = registry();
    health.breaker("inventory", handle.clone());

    let svc = layer.layer(service_fn(|_: ()| async {
        Err::<(), _>(std::io::Error::other("down"))
    }));
    for _ in 0..3 {
        let _ = svc.clone().oneshot(()).await;
    }
    assert_eq!(handle.state(), State::Open);
    assert!(svc.clone().oneshot(()).await.is_err(), "rejected");
    let report = health.check().await;
    let c = report.component("inventory").unwrap();
    assert_eq!(c.status(), Status::Degraded);
    assert_eq!(c.health.reason.as_deref(), Some("circuit open"));
    assert_eq!(c.health.details["state"], "open");
    assert_eq!(c.health.details["rejections"], 1);
    assert!(c.health.details["open_remaining_ms"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn a_half_open_breaker_is_degraded_and_says_so() {
    let layer = CircuitBreakerLayer::builder()
        .name("search")
        .layer()
        .unwrap();
    let handle = layer.handle();
    let health = registry();
    health.breaker("search", handle.clone());
    handle.transition_to(State::HalfOpen);
    let (status, reason) = status_of(&health, "search").await;
    assert_eq!(status, Status::Degraded);
    assert!(reason.unwrap().contains("half-open"));
}

#[tokio::test]
async fn a_forced_closed_breaker_is_healthy() {
    let layer = CircuitBreakerLayer::builder()
        .name("search")
        .layer()
        .unwrap();
    let handle = layer.handle();
    let health = registry();
    health.breaker("search", handle.clone());
    handle.transition_to(State::Open);
    handle.force_closed();
    assert_eq!(status_of(&health, "search").await.0, Status::Healthy);
}

#[tokio::test]
async fn keyed_breakers_are_degraded_while_any_key_is_open() {
    let keyed = CircuitBreakerLayer::builder()
        .name("hosts")
        .consecutive_failures(1)
        .keyed(rampart_core::key::key_fn(|host: &&'static str| Some(*host)))
        .unwrap();
    let handle = keyed.handle();
    let health = registry();
    health.keyed_breakers("upstreams", handle.clone());

    let svc = keyed.layer(service_fn(|host: &'static str| async move {
        if host == "bad" {
            Err(std::io::Error::other("down"))
        } else {
            Ok(())
        }
    }));
    svc.clone().oneshot("good").await.unwrap();
    assert_eq!(health.check().await.status, Status::Healthy);

    let _ = svc.clone().oneshot("bad").await;
    let report = health.check().await;
    let c = report.component("upstreams").unwrap();
    assert_eq!(c.kind, "keyed_circuit_breaker");
    assert_eq!(c.status(), Status::Degraded);
    assert_eq!(c.health.details["open"], 1);
    assert_eq!(c.health.details["not_closed"]["\"bad\""], "open");
    assert!(c.health.details["not_closed"].get("\"good\"").is_none());
}

// ---------------------------------------------------------------- bulkheads

/// Polls `fut` once, so that it takes what it takes (a permit) and stays pending.
fn start<F: Future + Unpin>(fut: &mut F) {
    assert!(rampart_core::testing::ready(fut).is_none(), "still running");
}

#[tokio::test]
async fn a_bulkhead_is_degraded_while_full_or_rejecting() {
    let layer = BulkheadLayer::builder()
        .name("db")
        .max_concurrent(2)
        .layer()
        .unwrap();
    let health = registry();
    health.bulkhead("db", layer.handle());
    let svc = layer.layer(service_fn(|_: ()| {
        std::future::pending::<Result<(), std::io::Error>>()
    }));

    let mut first = Box::pin(svc.clone().oneshot(()));
    start(&mut first);
    let report = health.check().await;
    let c = report.component("db").unwrap();
    assert_eq!(c.status(), Status::Healthy);
    assert_eq!(
        (
            c.health.details["in_use"].clone(),
            c.health.details["limit"].clone()
        ),
        (1.into(), 2.into())
    );

    let mut second = Box::pin(svc.clone().oneshot(()));
    start(&mut second);
    let (status, reason) = status_of(&health, "db").await;
    assert_eq!(status, Status::Degraded);
    assert!(reason.unwrap().starts_with("full: 2/2"));

    // A third call is rejected; after the permits are back, the rejection still shows once.
    assert!(svc.clone().oneshot(()).await.is_err());
    drop((first, second));
    let report = health.check().await;
    let c = report.component("db").unwrap();
    assert_eq!(c.status(), Status::Degraded);
    assert_eq!(c.health.details["rejected_since_last_check"], 1);
    assert_eq!(c.health.details["in_use"], 0);
    // … and no longer on the next check.
    assert_eq!(status_of(&health, "db").await.0, Status::Healthy);
}

// ---------------------------------------------------------------- dead letters

#[tokio::test]
async fn a_dead_letter_backlog_over_the_threshold_is_degraded() {
    let store = Arc::new(MemoryStore::bounded(1000).unwrap());
    let health = registry();
    health.dead_letters("webhooks", store.clone());

    let records: Vec<_> = (0..100).map(conformance::record).collect();
    store.append_batch(&records).await.unwrap();
    let report = health.check().await;
    let c = report.component("webhooks").unwrap();
    assert_eq!(c.kind, "dead_letters");
    assert_eq!(c.status(), Status::Healthy, "100 is not over 100");
    assert_eq!(c.health.details["backlog"], 100);
    assert_eq!(c.health.details["threshold"], 100);
    // `conformance::record(0)` failed first, 100 s ago.
    assert!(c.health.details["oldest_age_secs"].as_u64().unwrap() >= 100);

    store.append(&conformance::record(100)).await.unwrap();
    let report = health.check().await;
    let c = report.component("webhooks").unwrap();
    assert_eq!(c.status(), Status::Degraded);
    assert_eq!(c.health.details["backlog"], 101);
    assert!(
        c.health
            .reason
            .as_deref()
            .unwrap()
            .contains("101 dead letters")
    );
    assert!(report.is_ready());
}

#[tokio::test]
async fn the_dead_letter_threshold_is_configurable() {
    let store = Arc::new(MemoryStore::bounded(1000).unwrap());
    let health = registry();
    health.component(
        "dlq",
        DeadLetterCheck::new(store.clone()).backlog_threshold(2),
    );
    let records: Vec<_> = (0..3).map(conformance::record).collect();
    store.append_batch(&records).await.unwrap();
    assert_eq!(status_of(&health, "dlq").await.0, Status::Degraded);

    // Delivered records are no backlog.
    let mut delivered = conformance::record(7);
    delivered.state = rampart_dead_letter::State::Delivered;
    store.purge(&Filter::all()).await.unwrap();
    store.append(&delivered).await.unwrap();
    assert_eq!(status_of(&health, "dlq").await.0, Status::Healthy);
}

/// A store that is down (every call fails) or hangs (never answers).
#[derive(Debug)]
struct BrokenStore {
    hangs: bool,
}

impl BrokenStore {
    fn fail<'a, T: Send + 'a>(&'a self) -> StoreFuture<'a, Result<T, StoreError>> {
        if self.hangs {
            Box::pin(std::future::pending())
        } else {
            Box::pin(async {
                Err(StoreError::new("redis://down", StoreErrorKind::Unavailable)
                    .with_source("connection refused"))
            })
        }
    }
}

impl DeadLetterStore for BrokenStore {
    fn describe(&self) -> String {
        "redis://down".into()
    }
    fn append<'a>(&'a self, _: &'a DeadLetter) -> StoreFuture<'a, Result<(), StoreError>> {
        self.fail()
    }
    fn get(&self, _: DeadLetterId) -> StoreFuture<'_, Result<Option<DeadLetter>, StoreError>> {
        self.fail()
    }
    fn list<'a>(&'a self, _: &'a Query) -> StoreFuture<'a, Result<Vec<DeadLetter>, StoreError>> {
        self.fail()
    }
    fn update<'a>(&'a self, _: &'a DeadLetter) -> StoreFuture<'a, Result<(), StoreError>> {
        self.fail()
    }
    fn delete(&self, _: DeadLetterId) -> StoreFuture<'_, Result<bool, StoreError>> {
        self.fail()
    }
    fn purge<'a>(&'a self, _: &'a Filter) -> StoreFuture<'a, Result<u64, StoreError>> {
        self.fail()
    }
    fn stats(&self) -> StoreFuture<'_, Result<Stats, StoreError>> {
        self.fail()
    }
}

#[tokio::test]
async fn a_store_that_fails_is_degraded_with_the_error() {
    let health = registry();
    health.dead_letters("dlq", Arc::new(BrokenStore { hangs: false }));
    let report = health.check().await;
    let c = report.component("dlq").unwrap();
    assert_eq!(
        c.status(),
        Status::Degraded,
        "not unhealthy: dead letters are off the request path"
    );
    let error = c.health.details["error"].as_str().unwrap();
    assert!(
        error.contains("redis://down") && error.contains("connection refused"),
        "{error}"
    );
    assert!(report.is_ready());
}

#[tokio::test(start_paused = true)]
async fn a_store_that_hangs_is_degraded_after_its_timeout() {
    let health = registry();
    health.component(
        "dlq",
        DeadLetterCheck::new(Arc::new(BrokenStore { hangs: true }))
            .timeout(Duration::from_millis(500)),
    );
    let start = Instant::now();
    let (status, reason) = status_of(&health, "dlq").await;
    assert_eq!(start.elapsed(), Duration::from_millis(500));
    assert_eq!(status, Status::Degraded);
    assert!(reason.unwrap().contains("no answer within 500 ms"));
}

// ---------------------------------------------------------------- probes

#[tokio::test(start_paused = true)]
async fn a_failing_probe_is_unhealthy() {
    let up = Arc::new(AtomicBool::new(true));
    let health = registry();
    health.probe("postgres", Duration::from_secs(1), {
        let up = up.clone();
        move || {
            let up = up.load(Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(3)).await;
                if up {
                    Ok(())
                } else {
                    Err("connection refused")
                }
            }
        }
    });

    let report = health.check().await;
    assert_eq!(report.status, Status::Healthy);
    let c = report.component("postgres").unwrap();
    assert_eq!(c.kind, "probe");
    assert_eq!(c.health.details["latency_ms"], 3.0);
    assert!(c.health.details.get("error").is_none());

    up.store(false, Ordering::SeqCst);
    let report = health.check().await;
    assert_eq!(report.status, Status::Unhealthy);
    assert!(!report.is_ready());
    let c = report.component("postgres").unwrap();
    assert_eq!(c.health.details["error"], "connection refused");
    assert_eq!(
        c.health.reason.as_deref(),
        Some("probe failed: connection refused")
    );

    up.store(true, Ordering::SeqCst);
    assert_eq!(health.check().await.status, Status::Healthy);
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_times_out_is_unhealthy() {
    let health = registry();
    health.probe("slow", Duration::from_secs(2), || async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, std::io::Error>(())
    });
    let start = Instant::now();
    let report = health.check().await;
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(2),
        "waits no longer than the timeout"
    );
    let c = report.component("slow").unwrap();
    assert_eq!(c.status(), Status::Unhealthy);
    assert_eq!(c.health.details["error"], "timed out after 2000 ms");
    assert_eq!(c.health.details["latency_ms"], 2000.0);
}

#[tokio::test(start_paused = true)]
async fn probes_run_concurrently_each_with_its_own_timeout() {
    let health = registry();
    for (name, takes, timeout) in [("a", 800, 1000), ("b", 800, 1000), ("c", 5000, 300)] {
        health.probe(name, Duration::from_millis(timeout), move || async move {
            tokio::time::sleep(Duration::from_millis(takes)).await;
            Ok::<_, std::io::Error>(())
        });
    }
    let start = Instant::now();
    let report = health.check().await;
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(800),
        "not 800 + 800 + 300"
    );
    let statuses: Vec<_> = report.components.iter().map(|c| c.status()).collect();
    assert_eq!(
        statuses,
        [Status::Healthy, Status::Healthy, Status::Unhealthy]
    );
}

#[tokio::test]
async fn a_panicking_probe_is_unhealthy_and_the_check_goes_on() {
    let health = registry();
    health.probe("boom", Duration::from_secs(1), || async {
        if true {
            panic!("probe bug");
        }
        Ok::<_, std::io::Error>(())
    });
    health.probe("fine", Duration::from_secs(1), || async {
        Ok::<_, std::io::Error>(())
    });
    let report = health.check().await;
    assert_eq!(
        report.component("boom").unwrap().health.details["error"],
        "probe panicked"
    );
    assert_eq!(report.component("fine").unwrap().status(), Status::Healthy);
    assert_eq!(report.status, Status::Unhealthy);
}

#[tokio::test]
async fn a_soft_probe_only_degrades() {
    let health = registry();
    health.component(
        "recommendations",
        Probe::new(Duration::from_secs(1), || async {
            Err::<(), _>("503 from upstream")
        })
        .failure_status(Status::Degraded),
    );
    let report = health.check().await;
    assert_eq!(report.status, Status::Degraded);
}

// ---------------------------------------------------------------- success rate

#[tokio::test(start_paused = true)]
async fn success_rate_thresholds_and_the_sliding_window() {
    let rate = SuccessRate::new(); // 60 s in 1 s buckets, 10 calls, > 95 % / > 80 %
    let health = registry();
    health.success_rate("requests", rate.clone());

    // Too few calls to judge.
    (0..9).for_each(|_| rate.record(false));
    let report = health.check().await;
    let c = report.component("requests").unwrap();
    assert_eq!(c.status(), Status::Healthy);
    assert!(
        c.health
            .reason
            .as_deref()
            .unwrap()
            .contains("too few calls")
    );

    // 9 failures + 91 successes: 91 % → degraded.
    (0..91).for_each(|_| rate.record(true));
    let (status, reason) = status_of(&health, "requests").await;
    assert_eq!(status, Status::Degraded);
    assert_eq!(
        reason.as_deref(),
        Some("success rate 91.0 % is not above 95 %")
    );

    // 30 s later, 41 more failures: 91 of 141 = 64.5 % → unhealthy.
    tokio::time::advance(Duration::from_secs(30)).await;
    (0..41).for_each(|_| rate.record(false));
    let report = health.check().await;
    assert_eq!(report.status, Status::Unhealthy);
    let c = report.component("requests").unwrap();
    assert_eq!(c.health.details["calls"], 141);

    // 60 s after the first calls they leave the window: 41 failures, 0 successes.
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(rate.snapshot().calls(), 41);
    (0..1000).for_each(|_| rate.record(true));
    // 1000 of 1041 = 96.1 % → healthy.
    assert_eq!(status_of(&health, "requests").await.0, Status::Healthy);

    // Another 30 s and only the successes are left.
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(rate.snapshot().failures, 0);
}

#[tokio::test]
async fn the_success_rate_layer_counts_5xx_and_errors_as_failures() {
    let rate = SuccessRate::builder().minimum_calls(1).build().unwrap();
    let svc = SuccessRateLayer::new(rate.clone()).layer(service_fn(|status: u16| async move {
        if status == 0 {
            return Err(std::io::Error::other("connection reset"));
        }
        Ok(http::Response::builder().status(status).body(()).unwrap())
    }));
    for status in [200, 201, 404, 422, 500, 503, 0] {
        let _ = svc.clone().oneshot(status).await;
    }
    let snap = rate.snapshot();
    assert_eq!((snap.successes, snap.failures), (4, 3));

    // A call dropped before it completes counts neither way.
    let slow = SuccessRateLayer::new(rate.clone()).layer(service_fn(|_: ()| {
        std::future::pending::<Result<http::Response<()>, std::io::Error>>()
    }));
    let mut call = Box::pin(slow.oneshot(()));
    start(&mut call);
    drop(call);
    assert_eq!(rate.snapshot().calls(), 7);
}

// ---------------------------------------------------------------- the registry

#[tokio::test]
async fn the_overall_status_is_the_worst_component_status() {
    let breaker = CircuitBreakerLayer::builder().name("a").layer().unwrap();
    let health = registry();
    assert_eq!(
        health.check().await.status,
        Status::Healthy,
        "no components"
    );
    health
        .breaker("a", breaker.handle())
        .probe("b", Duration::from_secs(1), || async {
            Ok::<_, std::io::Error>(())
        });
    assert_eq!(health.check().await.status, Status::Healthy);
    breaker.handle().force_open();
    assert_eq!(health.check().await.status, Status::Degraded);
    health.probe("b", Duration::from_secs(1), || async {
        Err::<(), _>("down")
    });
    assert_eq!(health.check().await.status, Status::Unhealthy);
    assert_eq!(
        health.names(),
        ["a", "b"],
        "re-registering replaces in place"
    );
    assert!(health.remove("b"));
    assert!(!health.remove("b"));
    assert_eq!(health.check().await.status, Status::Degraded);
    assert_eq!(health.last_status(), Some(Status::Degraded));
}

#[derive(Debug)]
struct Custom(Status);

impl Component for Custom {
    fn kind(&self) -> &'static str {
        "queue"
    }
    fn check(&self) -> BoxFuture<'_, ComponentHealth> {
        let status = self.0;
        Box::pin(async move { ComponentHealth::new(status).detail("depth", 7) })
    }
}

#[tokio::test]
async fn custom_components_join_in() {
    let health = registry();
    health.component("jobs", Custom(Status::Degraded));
    let report = health.check().await;
    let c = report.component("jobs").unwrap();
    assert_eq!((c.kind.as_ref(), c.status()), ("queue", Status::Degraded));
    assert_eq!(c.health.details["depth"], 7);
    // Registered through a clone, seen by every clone.
    health.clone().component("other", Custom(Status::Unhealthy));
    assert_eq!(health.check().await.status, Status::Unhealthy);
}

#[tokio::test(start_paused = true)]
async fn reports_are_cached_and_concurrent_checks_share_one() {
    let calls = Arc::new(AtomicUsize::new(0));
    let health = HealthRegistry::builder()
        .cache_for(Duration::from_secs(1))
        .build();
    health.probe("counted", Duration::from_secs(5), {
        let calls = calls.clone();
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<_, std::io::Error>(())
            }
        }
    });
    let (a, b, c) = tokio::join!(health.check(), health.check(), health.check());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one check for three requests"
    );
    assert!(Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&b, &c));

    tokio::time::advance(Duration::from_millis(500)).await;
    health.check().await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "fresh enough");

    tokio::time::advance(Duration::from_millis(500)).await;
    health.check().await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "1 s old: checked again");

    // A new component drops the cached report.
    health.component("new", Custom(Status::Degraded));
    assert_eq!(health.check().await.status, Status::Degraded);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// Reads from memory; every append refused as a full disk.
#[derive(Debug)]
struct DiskFull(MemoryStore);

impl DeadLetterStore for DiskFull {
    fn describe(&self) -> String {
        "sqlite:/full/dlq.db".into()
    }
    fn append<'a>(&'a self, _: &'a DeadLetter) -> StoreFuture<'a, Result<(), StoreError>> {
        Box::pin(async {
            Err(StoreError::new("sqlite:/full/dlq.db", StoreErrorKind::Full)
                .with_source("database or disk is full"))
        })
    }
    fn get(&self, id: DeadLetterId) -> StoreFuture<'_, Result<Option<DeadLetter>, StoreError>> {
        self.0.get(id)
    }
    fn list<'a>(&'a self, q: &'a Query) -> StoreFuture<'a, Result<Vec<DeadLetter>, StoreError>> {
        self.0.list(q)
    }
    fn update<'a>(&'a self, r: &'a DeadLetter) -> StoreFuture<'a, Result<(), StoreError>> {
        self.0.update(r)
    }
    fn delete(&self, id: DeadLetterId) -> StoreFuture<'_, Result<bool, StoreError>> {
        self.0.delete(id)
    }
    fn purge<'a>(&'a self, f: &'a Filter) -> StoreFuture<'a, Result<u64, StoreError>> {
        self.0.purge(f)
    }
    fn stats(&self) -> StoreFuture<'_, Result<Stats, StoreError>> {
        self.0.stats()
    }
}

#[tokio::test]
async fn a_store_that_reads_but_cannot_write_is_degraded_while_appends_fail() {
    use bytes::Bytes;
    use http_body_util::Full;
    use rampart_core::body::ReplayBody;
    use rampart_dead_letter::DeadLetterLayer;

    let store: Arc<dyn DeadLetterStore> = Arc::new(DiskFull(MemoryStore::bounded(10).unwrap()));
    let layer = DeadLetterLayer::builder("billing", store.clone())
        .build()
        .unwrap();
    let health = registry();
    health.component(
        "dlq",
        DeadLetterCheck::new(store).write_failures(layer.write_failures()),
    );
    assert_eq!(
        status_of(&health, "dlq").await.0,
        Status::Healthy,
        "nothing failed yet"
    );

    let svc = layer.layer(service_fn(
        |_: http::Request<ReplayBody<Full<Bytes>>>| async {
            Err::<http::Response<Full<Bytes>>, _>(std::io::Error::other("upstream down"))
        },
    ));
    let req = http::Request::post("http://billing/charge")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert!(svc.oneshot(req).await.is_err(), "no store kept it");

    let report = health.check().await;
    let c = report.component("dlq").unwrap();
    assert_eq!(
        c.status(),
        Status::Degraded,
        "the reads work, the writes do not"
    );
    assert!(
        c.health.details["last_write_error"]
            .as_str()
            .unwrap()
            .contains("disk is full"),
        "{:?}",
        c.health.details
    );
    assert_eq!(c.health.details["write_failures"], 1);

    // A failure older than the window no longer counts (a window of zero: any failure is).
    let short = registry();
    short.component(
        "dlq",
        DeadLetterCheck::new(Arc::new(MemoryStore::bounded(1).unwrap()))
            .write_failures(layer.write_failures())
            .write_window(Duration::ZERO),
    );
    assert_eq!(
        status_of(&short, "dlq").await.0,
        Status::Healthy,
        "an old failure no longer counts"
    );
}
