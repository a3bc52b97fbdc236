//! Dead letters end to end: a client stack parks every POST that fails during an outage in
//! the embedded store; once the server recovers, a redrive delivers each one exactly once,
//! with the key it was first sent with.
#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State, http::HeaderMap, response::IntoResponse, routing::post};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rampart::core::{body::ReplayBody, classify::HttpClassifier};
use rampart_dead_letter::{
    DEAD_LETTER_ID, DeadLetterLayer, DeadLetterStore, Filter, Query, Redrive, SqliteStore,
    State as Dl,
};
use rampart_idempotency::IdempotencyKeyLayer;
use rampart_retry::{
    RetryLayer,
    backoff::{Backoff, Delays, Jitter},
    protocol::HttpProtocol,
    replay::HttpReplay,
};
use rampart_tests::serve;
use tower::{ServiceBuilder, ServiceExt};

/// The upstream: while `down`, every request gets `503` and does nothing; once up, each
/// request's effect is counted per idempotency key.
#[derive(Clone, Default)]
struct Upstream {
    down: Arc<AtomicBool>,
    effects: Arc<Mutex<HashMap<String, usize>>>,
}

async fn order(State(up): State<Upstream>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    if up.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, Bytes::from_static(b"down"));
    }
    let key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    *up.effects.lock().unwrap().entry(key).or_default() += 1;
    (StatusCode::CREATED, body)
}

fn retry() -> RetryLayer<HttpClassifier, HttpProtocol, HttpReplay> {
    RetryLayer::builder()
        .max_attempts(2)
        .backoff(
            Backoff::builder()
                .delays(Delays::Constant(Duration::from_millis(1)))
                .jitter(Jitter::None)
                .build()
                .unwrap(),
        )
        .layer()
        .unwrap()
        .classifier(HttpClassifier::default())
        .protocol(HttpProtocol::default())
        .replay(HttpReplay)
}

#[tokio::test]
async fn an_outage_is_parked_on_disk_and_redriven_exactly_once_after_recovery() {
    let upstream = Upstream::default();
    upstream.down.store(true, Ordering::SeqCst);
    let addr = serve(
        Router::new()
            .route("/orders", post(order))
            .with_state(upstream.clone()),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dlq.db");
    let store: Arc<dyn DeadLetterStore> = Arc::new(SqliteStore::open(&path).unwrap());

    // The dead-letter layer holds the body (as a `ReplayBody`), so the retry layer replays it
    // without a `BufferBodyLayer` of its own.
    let transport: Client<HttpConnector, ReplayBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build_http();
    let client = ServiceBuilder::new()
        .layer(IdempotencyKeyLayer::default())
        .layer(
            DeadLetterLayer::builder("orders-client", store.clone())
                .build()
                .unwrap(),
        )
        .layer(retry())
        .service(transport);

    // The outage: every order fails twice and is parked.
    let mut parked_ids = Vec::new();
    for i in 0..20 {
        let req = http::Request::post(format!("http://{addr}/orders"))
            .header("content-type", "application/json")
            .header("authorization", "Bearer s3cr3t")
            .body(Full::new(Bytes::from(format!("{{\"order\":{i}}}"))))
            .unwrap();
        let res = client.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        parked_ids.push(res.headers()[DEAD_LETTER_ID].to_str().unwrap().to_owned());
    }
    assert!(
        upstream.effects.lock().unwrap().is_empty(),
        "no effect while down"
    );

    // Nothing lost, on disk: reopen the file as a fresh process would.
    drop(client);
    drop(store);
    let store: Arc<dyn DeadLetterStore> = Arc::new(SqliteStore::open(&path).unwrap());
    let records = store.list(&Query::new(Filter::all(), 100)).await.unwrap();
    assert_eq!(records.len(), 20);
    let mut keys = Vec::new();
    for (r, id) in records.iter().zip(&parked_ids) {
        assert_eq!(&r.id.to_string(), id, "in the order they failed");
        assert_eq!(r.attempts, 2);
        assert_eq!(r.state, Dl::Pending);
        assert_eq!(r.failure.status, Some(503));
        keys.push(
            r.idempotency_key
                .clone()
                .expect("the injected key is recorded"),
        );
    }

    // Recovery, then a redrive: each order lands once, with its original key.
    upstream.down.store(false, Ordering::SeqCst);
    let redrive_client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let redrive = Redrive::builder(store.clone(), redrive_client)
        .concurrency(4)
        .build()
        .unwrap();
    let summary = redrive.all(|_| {}).await.unwrap();
    assert_eq!(summary.delivered, 20);
    let effects = upstream.effects.lock().unwrap().clone();
    assert_eq!(effects.len(), 20);
    for key in &keys {
        assert_eq!(effects.get(key), Some(&1), "exactly once for {key}");
    }
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.in_state(Dl::Delivered), 20);
    assert_eq!(stats.backlog(), 0);
}
