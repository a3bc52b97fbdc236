#![allow(clippy::unwrap_used)]
//! The dead-letter layer: what is parked, what is recorded, what the caller gets.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use rampart_core::{body::ReplayBody, error::BoxError};
use rampart_dead_letter::{
    DEAD_LETTER_ID, DeadLetterLayer, DeadLetterStore, Filter, MemoryStore, ParkFailed, ParkOn,
    ParkReason, Parked, ParkedAs, Query, State, conformance::FailingStore,
};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

type Req = Request<ReplayBody<Full<Bytes>>>;

fn store() -> Arc<MemoryStore> {
    Arc::new(MemoryStore::bounded(1000).unwrap())
}

fn layer(store: Arc<dyn DeadLetterStore>) -> DeadLetterLayer {
    DeadLetterLayer::builder("billing", store)
        .redact(http::HeaderName::from_static("x-api-key"))
        .build()
        .unwrap()
}

fn post(body: &'static str) -> Request<Full<Bytes>> {
    Request::post("http://127.0.0.1:9/charge")
        .header("authorization", "Bearer secret")
        .header("cookie", "session=1")
        .header("x-api-key", "k")
        .header("content-type", "application/json")
        .header("idempotency-key", "key-1")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

/// An upstream that answers every request with `status`, after reading the whole body.
fn answering(
    status: u16,
    seen: Arc<std::sync::Mutex<Vec<Bytes>>>,
) -> impl Service<Req, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send> + Clone {
    service_fn(move |req: Req| {
        let seen = seen.clone();
        async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            seen.lock().unwrap().push(body);
            let mut res = Response::new(Full::new(Bytes::from_static(b"upstream")));
            *res.status_mut() = StatusCode::from_u16(status).unwrap();
            Ok::<_, Infallible>(res)
        }
    })
}

async fn all(store: &dyn DeadLetterStore) -> Vec<rampart_dead_letter::DeadLetter> {
    store.list(&Query::new(Filter::all(), 100)).await.unwrap()
}

#[tokio::test]
async fn a_success_is_passed_on_and_nothing_is_parked() {
    let store = store();
    let seen = Arc::default();
    let svc = layer(store.clone()).layer(answering(200, Arc::clone(&seen)));
    let res = svc.oneshot(post("{\"amount\":5}")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get(DEAD_LETTER_ID).is_none());
    assert_eq!(
        seen.lock().unwrap()[0],
        "{\"amount\":5}",
        "the body reaches upstream whole"
    );
    assert!(all(&*store).await.is_empty());
}

#[tokio::test]
async fn a_final_503_is_parked_with_the_request_redacted_and_marked_on_the_response() {
    let store = store();
    let svc = layer(store.clone()).layer(answering(503, Arc::default()));
    let res = svc.oneshot(post("{\"amount\":5}")).await.unwrap();
    assert_eq!(res.status(), 503, "the caller still gets the failure");
    let id = res.headers()[DEAD_LETTER_ID].to_str().unwrap().to_owned();
    assert_eq!(
        res.extensions().get::<ParkedAs>().unwrap().0.to_string(),
        id
    );

    let records = all(&*store).await;
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.id.to_string(), id);
    assert_eq!(r.service, "billing");
    assert_eq!(r.state, State::Pending);
    assert_eq!(r.target.method, "POST");
    assert_eq!(r.target.uri, "http://127.0.0.1:9/charge");
    assert_eq!(r.failure.kind, ParkReason::Transient);
    assert_eq!(r.failure.status, Some(503));
    assert_eq!(r.attempts, 1);
    assert_eq!(r.idempotency_key.as_deref(), Some("key-1"));
    assert_eq!(r.target.body.data.0, "{\"amount\":5}");
    assert!(!r.target.body.truncated);
    assert_eq!(r.target.body.len, Some(12));
    for h in &r.target.headers {
        let secret = ["authorization", "cookie", "x-api-key"].contains(&h.name.as_str());
        assert_eq!(h.redacted, secret, "{}", h.name);
        if secret {
            assert_eq!(h.value.0, "[redacted]");
        }
    }
    assert!(
        r.target
            .headers
            .iter()
            .any(|h| h.name == "content-type" && h.value.0 == "application/json")
    );
}

#[tokio::test]
async fn a_fatal_4xx_is_not_parked_unless_configured() {
    let store = store();
    let svc = layer(store.clone()).layer(answering(422, Arc::default()));
    let res = svc.oneshot(post("x")).await.unwrap();
    assert_eq!(res.status(), 422);
    assert!(all(&*store).await.is_empty());

    let svc = DeadLetterLayer::builder("billing", store.clone())
        .park_on(ParkOn::ALL)
        .build()
        .unwrap()
        .layer(answering(422, Arc::default()));
    svc.oneshot(post("x")).await.unwrap();
    let records = all(&*store).await;
    assert_eq!(records[0].failure.kind, ParkReason::Fatal);
}

#[tokio::test]
async fn a_transport_error_becomes_a_parked_error_that_keeps_its_source() {
    let store = store();
    let svc = layer(store.clone()).layer(service_fn(|_: Req| async {
        Err::<Response<Full<Bytes>>, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset",
        ))
    }));
    let err = svc.oneshot(post("x")).await.unwrap_err();
    let parked = err.downcast_ref::<Parked>().unwrap();
    assert_eq!(parked.kind(), ParkReason::Transient);
    let io = rampart_core::error::find_in::<std::io::Error>(&*err).unwrap();
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
    assert!(err.to_string().contains("dead-lettered as"), "{err}");

    let r = store.get(parked.id()).await.unwrap().unwrap();
    assert_eq!(r.failure.chain, vec!["connection reset".to_owned()]);
    assert_eq!(r.failure.status, None);
}

#[tokio::test]
async fn accept_for_later_answers_202_with_the_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(rampart_dead_letter::SqliteStore::open(dir.path().join("d.db")).unwrap());
    let svc = layer(store.clone())
        .accept_for_later()
        .layer(service_fn(|_: Req| async {
            Err::<Response<Full<Bytes>>, _>(std::io::Error::other("down"))
        }));
    let res = svc.oneshot(post("x")).await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let id = res.headers()[DEAD_LETTER_ID].to_str().unwrap();
    assert_eq!(all(&*store).await[0].id.to_string(), id);
}

#[tokio::test]
async fn no_202_when_only_a_memory_store_kept_the_record() {
    // The durable primary is down; the memory secondary keeps the record.
    let secondary = store();
    let svc = DeadLetterLayer::builder("billing", Arc::new(FailingStore::new()))
        .secondary(secondary.clone())
        .build()
        .unwrap()
        .accept_for_later()
        .layer(answering(503, Arc::default()));
    let res = svc.oneshot(post("x")).await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "the failure, annotated: a restart would lose the record"
    );
    assert_eq!(
        res.headers()[DEAD_LETTER_ID].to_str().unwrap(),
        all(&*secondary).await[0].id.to_string()
    );

    let opted_in = layer(store())
        .accept_for_later()
        .accept_non_durable()
        .layer(answering(503, Arc::default()));
    assert_eq!(
        opted_in.oneshot(post("x")).await.unwrap().status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn a_failing_store_falls_back_to_the_secondary() {
    let failing = Arc::new(FailingStore::new());
    let secondary = store();
    let svc = DeadLetterLayer::builder("billing", failing.clone())
        .secondary(secondary.clone())
        .build()
        .unwrap()
        .layer(answering(502, Arc::default()));
    let res = svc.oneshot(post("x")).await.unwrap();
    assert_eq!(failing.calls(), 1);
    let records = all(&*secondary).await;
    assert_eq!(records.len(), 1, "kept by the secondary");
    assert_eq!(
        res.headers()[DEAD_LETTER_ID].to_str().unwrap(),
        records[0].id.to_string()
    );
}

#[tokio::test]
async fn when_every_store_fails_the_caller_gets_both_errors_and_the_original() {
    let svc = DeadLetterLayer::builder("billing", Arc::new(FailingStore::new()))
        .secondary(Arc::new(FailingStore::new()))
        .build()
        .unwrap()
        .layer(answering(503, Arc::default()));
    let err = svc.oneshot(post("x")).await.unwrap_err();
    let failed = err.downcast_ref::<ParkFailed>().unwrap();
    assert_eq!(failed.store_errors().len(), 2);
    assert_eq!(failed.kind(), ParkReason::Transient);
    let text = err.to_string();
    assert!(text.contains("response status 503"), "{text}");
    assert!(text.contains("could not be dead-lettered"), "{text}");
    assert!(
        text.contains("failing: unavailable: connection refused; then"),
        "{text}"
    );
}

#[tokio::test]
async fn the_park_alerts_fire_once_per_request_with_the_record_and_the_errors() {
    use std::sync::Mutex;
    // Kept: by the primary, then (the primary failing) by the secondary, marked as a copy.
    let kept: Arc<Mutex<Vec<(String, bool, bool)>>> = Arc::default();
    let k = kept.clone();
    let alert = move |r: &rampart_dead_letter::DeadLetter, durable: bool| {
        let copy = r.labels.contains_key(rampart_dead_letter::FALLBACK_FROM);
        k.lock()
            .unwrap()
            .push((r.target.method.clone(), durable, copy));
    };
    let primary = store();
    let svc = DeadLetterLayer::builder("billing", primary.clone())
        .on_park(alert.clone())
        .build()
        .unwrap()
        .layer(answering(503, Arc::default()));
    svc.oneshot(post("x")).await.unwrap();
    let svc = DeadLetterLayer::builder("billing", Arc::new(FailingStore::new()))
        .secondary(store())
        .on_park(alert)
        .build()
        .unwrap()
        .layer(answering(503, Arc::default()));
    svc.oneshot(post("x")).await.unwrap();
    assert_eq!(
        *kept.lock().unwrap(),
        vec![("POST".into(), false, false), ("POST".into(), false, true)],
        "one alert per park; a memory store is not durable"
    );

    // Not kept anywhere: the failure alert gets both stores' errors; a success alerts nothing.
    let failed: Arc<Mutex<Vec<usize>>> = Arc::default();
    let f = failed.clone();
    let layer = DeadLetterLayer::builder("billing", Arc::new(FailingStore::new()))
        .secondary(Arc::new(FailingStore::new()))
        .on_park(|_, _| panic!("nothing was kept"))
        .on_park_failed(move |r, errors| {
            assert_eq!(r.failure.status, Some(503));
            f.lock().unwrap().push(errors.len());
        })
        .build()
        .unwrap();
    let err = layer
        .layer(answering(503, Arc::default()))
        .oneshot(post("x"))
        .await
        .unwrap_err();
    assert!(err.downcast_ref::<ParkFailed>().is_some());
    layer
        .layer(answering(200, Arc::default()))
        .oneshot(post("x"))
        .await
        .unwrap();
    assert_eq!(*failed.lock().unwrap(), vec![2]);
}

#[tokio::test]
async fn a_body_over_the_limit_streams_through_and_is_recorded_truncated() {
    let store = store();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let svc = DeadLetterLayer::builder("billing", store.clone())
        .max_body(4)
        .build()
        .unwrap()
        .layer(answering(503, seen.clone()));
    svc.oneshot(post("0123456789")).await.unwrap();
    assert_eq!(seen.lock().unwrap()[0], "0123456789", "upstream got it all");
    let r = &all(&*store).await[0];
    assert!(r.target.body.truncated);
    assert_eq!(r.target.body.len, None);
    assert!(r.target.body.data.0.len() <= 10);
}

/// The protocol a retry layer inside keeps (rampart-retry's does; tests/dlq_e2e.rs runs the
/// real one): it notes each attempt in the request's `AttemptCounter`.
#[tokio::test]
async fn retries_inside_are_counted_and_the_key_is_recorded() {
    use rampart_core::attempt::AttemptCounter;
    let store = store();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let retrying_upstream = service_fn(move |req: Req| {
        let counter = req.extensions().get::<AttemptCounter>().cloned();
        for attempt in 1..=3 {
            c.fetch_add(1, Ordering::SeqCst);
            if let Some(counter) = &counter {
                counter.note(attempt);
            }
        }
        async {
            let mut res = Response::new(Full::new(Bytes::new()));
            *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            Ok::<_, Infallible>(res)
        }
    });
    let svc = ServiceBuilder::new()
        .layer(layer(store.clone()))
        .service(retrying_upstream);
    let res = svc.oneshot(post("{}")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let r = &all(&*store).await[0];
    assert_eq!(r.attempts, 3, "the attempts noted inside");
    assert_eq!(r.idempotency_key.as_deref(), Some("key-1"));
}

#[tokio::test]
async fn an_open_circuit_is_parked_as_circuit_open() {
    use rampart_core::rejection::{CircuitOpen, RejectedBy};
    let store = store();
    let open_breaker = service_fn(|_: Req| async {
        Err::<Response<Full<Bytes>>, BoxError>(Box::new(CircuitOpen::new(
            RejectedBy::ForcedOpen,
            None,
        )))
    });
    let svc = ServiceBuilder::new()
        .layer(layer(store.clone()))
        .service(open_breaker);
    let err = svc.oneshot(post("{}")).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<Parked>().unwrap().kind(),
        ParkReason::CircuitOpen
    );
    assert_eq!(all(&*store).await[0].failure.kind, ParkReason::CircuitOpen);
}

#[test]
fn bad_configuration_names_the_field() {
    let err = DeadLetterLayer::builder(" ", store()).build().unwrap_err();
    assert_eq!(err.field(), "service");
    let err = DeadLetterLayer::builder("x", store())
        .max_body(usize::MAX)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_body");
    assert!(err.to_string().contains("16 MiB"), "{err}");
}

#[allow(dead_code)]
fn boxed_stack_compiles(_: BoxError) {}

#[tokio::test]
async fn a_grpc_failure_in_the_head_is_parked_with_its_absolute_uri() {
    let store = store();
    let svc = DeadLetterLayer::builder("orders-grpc", store.clone())
        .base_uri("http://orders.internal:50051".parse().unwrap())
        .build()
        .unwrap()
        .layer(service_fn(|_: Req| async {
            // A trailers-only answer: the default classifier knows it by its content type.
            let mut res = Response::new(Full::new(Bytes::new()));
            res.headers_mut()
                .insert("content-type", "application/grpc".parse().unwrap());
            res.headers_mut()
                .insert("grpc-status", "14".parse().unwrap());
            res.headers_mut()
                .insert("grpc-message", "busy".parse().unwrap());
            Ok::<_, Infallible>(res)
        }));
    // A tonic client's request: origin-form; its Channel adds the origin below the layer.
    let req = Request::post("/orders.Orders/Place")
        .header("content-type", "application/grpc")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\x02{}")))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert!(res.headers().contains_key(DEAD_LETTER_ID));
    let r = &all(&*store).await[0];
    assert_eq!(r.failure.kind, ParkReason::Transient);
    assert_eq!(r.failure.chain, vec!["grpc-status 14: busy".to_owned()]);
    assert_eq!(
        r.target.uri,
        "http://orders.internal:50051/orders.Orders/Place"
    );

    let err = DeadLetterLayer::builder("x", store)
        .base_uri("/relative".parse().unwrap())
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "base_uri");
}

#[tokio::test]
async fn a_grpc_failure_reported_in_the_trailers_is_parked() {
    let store = store();
    let svc = layer(store.clone()).layer(service_fn(|req: Req| async move {
        let code = if req.uri().path() == "/orders.v1.Orders/Create" {
            "14"
        } else {
            "0"
        };
        Ok::<_, std::convert::Infallible>(rampart_dead_letter::conformance::grpc_answer(code))
    }));
    let call = |path: &str| {
        http::Request::post(format!("http://orders:50051{path}"))
            .header("content-type", "application/grpc")
            .header("idempotency-key", "order-9")
            .body(Full::new(Bytes::from_static(b"\0\0\0\0\x00")))
            .unwrap()
    };

    // The head says 200 and the body streams on to the caller; the trailers say UNAVAILABLE.
    let res = svc
        .clone()
        .oneshot(call("/orders.v1.Orders/Create"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let trailers = res
        .into_body()
        .collect()
        .await
        .unwrap()
        .trailers()
        .cloned()
        .unwrap();
    assert_eq!(
        trailers["grpc-status"], "14",
        "the caller's trailers, unchanged"
    );
    tokio::task::yield_now().await;
    let parked = all(&*store).await;
    assert_eq!(parked.len(), 1, "parked from its trailers");
    assert_eq!(
        parked[0].failure.kind,
        rampart_dead_letter::ParkReason::Transient
    );
    assert!(
        parked[0].failure.chain[0].contains("grpc-status 14"),
        "{:?}",
        parked[0].failure
    );
    assert_eq!(parked[0].idempotency_key.as_deref(), Some("order-9"));

    // OK in the trailers: nothing parked.
    let res = svc.oneshot(call("/orders.v1.Orders/Get")).await.unwrap();
    res.into_body().collect().await.unwrap();
    tokio::task::yield_now().await;
    assert_eq!(all(&*store).await.len(), 1);
}

/// The attempt count's one channel: a counter the caller put in the request is the one the
/// layer hands inward (not replaced), so the caller reads what the retries inside noted.
#[tokio::test]
async fn a_callers_attempt_counter_is_the_one_the_retries_inside_fill() {
    use rampart_core::attempt::AttemptCounter;
    let store = store();
    let retrying_upstream = service_fn(|req: Req| {
        if let Some(counter) = req.extensions().get::<AttemptCounter>() {
            counter.note(2);
        }
        async {
            let mut res = Response::new(Full::new(Bytes::new()));
            *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            Ok::<_, Infallible>(res)
        }
    });
    let svc = ServiceBuilder::new()
        .layer(layer(store.clone()))
        .service(retrying_upstream);
    let mut req = post("{}");
    let attempts = AttemptCounter::new();
    req.extensions_mut().insert(attempts.clone());
    svc.oneshot(req).await.unwrap();
    assert_eq!(attempts.get(), 2, "the caller reads the count");
    assert_eq!(all(&*store).await[0].attempts, 2, "and the record has it");
}
