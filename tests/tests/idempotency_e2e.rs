//! Exactly-once over a lossy connection, end to end: rampart-retry's client stack
//! (`IdempotencyKeyLayer`, `BufferBodyLayer`, `RetryLayer` with `HttpReplay`, over hyper-util's
//! client) sends `POST`s to a real hyper server whose `IdempotencyLayer` stores each response;
//! the server then drops the connection on the first attempt of each key, after the handler ran.
//! The client's retry, with the same key and body, gets the original response back
//! (`Idempotent-Replayed: true`), and the handler's effect happens once per request.
//!
//! Run with the memory store, and with the Redis store when Redis answers (`REDIS_URL`).

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, body::Body, extract::State, routing::post};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
    service::TowerToHyperService,
};
use rampart::core::error::BoxError;
use rampart_idempotency::{
    IdempotencyKeyLayer, IdempotencyLayer, IdempotencyOutcome as Outcome, IdempotencyStore,
    KeyPolicy, MemoryStore,
};
use rampart_redis::RedisIdempotencyStore;
use rampart_retry::{
    RetryLayer,
    backoff::{Backoff, Delays, Jitter},
    protocol::{HttpProtocol, RetryInfo, http_retry_classifier},
    replay::{BufferBodyLayer, HttpReplay, ReplayBody},
};
use tower::{Service, ServiceBuilder, ServiceExt};

/// Requests sent at once.
const ORDERS: usize = 10;

/// How long responses are kept: long enough for a test, short enough that a failed test's
/// entries soon go.
const RETENTION: Duration = Duration::from_secs(60);

/// What the server did, per idempotency key.
#[derive(Default)]
struct Ledger {
    /// Executions of the handler: the effect.
    effects: Mutex<HashMap<String, u32>>,
    /// The response body each key's execution produced.
    originals: Mutex<HashMap<String, String>>,
    /// The layer's outcome of every attempt that reached the server, in order.
    attempts: Mutex<HashMap<String, Vec<Option<Outcome>>>>,
    /// Keys whose connection was dropped once already.
    dropped: Mutex<HashSet<String>>,
    /// Numbers the executions, so that every response body is unique.
    executions: AtomicU64,
}

fn key_of(headers: &HeaderMap) -> String {
    headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// `POST /orders`: the effect. Its response names the key, so that a client can tell which
/// execution it is the response of.
async fn order(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
    body: String,
) -> Response<Body> {
    let key = key_of(&headers);
    *ledger
        .effects
        .lock()
        .unwrap()
        .entry(key.clone())
        .or_default() += 1;
    let n = ledger.executions.fetch_add(1, Ordering::SeqCst) + 1;
    let out = format!("{{\"order\":{body},\"execution\":{n}}}");
    ledger
        .originals
        .lock()
        .unwrap()
        .insert(key.clone(), out.clone());
    Response::builder()
        .status(StatusCode::CREATED)
        .header("content-type", "application/json")
        .header("x-order-key", key)
        .body(Body::from(out))
        .unwrap()
}

/// Runs the app, then, on the first attempt of each key, drops the connection instead of
/// answering: hyper closes a connection whose service fails. The response was stored by then.
#[derive(Clone)]
struct DropFirstAttempt {
    app: Router,
    ledger: Arc<Ledger>,
}

impl Service<Request<hyper::body::Incoming>> for DropFirstAttempt {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<hyper::body::Incoming>) -> Self::Future {
        let (app, ledger) = (self.app.clone(), self.ledger.clone());
        Box::pin(async move {
            let key = key_of(req.headers());
            let res = app
                .oneshot(req.map(Body::new))
                .await
                .unwrap_or_else(|e: Infallible| match e {});
            let outcome = res.extensions().get::<Outcome>().copied();
            ledger
                .attempts
                .lock()
                .unwrap()
                .entry(key.clone())
                .or_default()
                .push(outcome);
            if ledger.dropped.lock().unwrap().insert(key) {
                return Err("connection dropped after the commit (on purpose)".into());
            }
            Ok(res)
        })
    }
}

/// Starts the server on `127.0.0.1:0` with an idempotency layer over `store`.
async fn upstream(store: Arc<dyn IdempotencyStore>) -> (SocketAddr, Arc<Ledger>) {
    let ledger = Arc::new(Ledger::default());
    let idempotency = IdempotencyLayer::builder(store)
        .name("orders")
        .policy(KeyPolicy::Required)
        .retention(RETENTION)
        .build()
        .unwrap();
    let app = Router::new()
        .route("/orders", post(order).layer(idempotency))
        .with_state(ledger.clone());
    let svc = DropFirstAttempt {
        app,
        ledger: ledger.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let svc = TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                // A dropped connection ends with the service's error: expected.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, ledger)
}

/// The client: a key per request, the body buffered, retries replaying both.
fn client_stack() -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<hyper::body::Incoming>,
    Error = impl std::fmt::Debug,
    Future: Send,
> + Clone
+ Send {
    let transport: Client<HttpConnector, ReplayBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http();
    let retry = RetryLayer::builder()
        .max_attempts(3)
        .backoff(
            Backoff::builder()
                .delays(Delays::Constant(Duration::from_millis(20)))
                .jitter(Jitter::None)
                .build()
                .unwrap(),
        )
        .layer()
        .unwrap()
        .classifier(http_retry_classifier())
        .protocol(HttpProtocol::default())
        .replay(HttpReplay);
    ServiceBuilder::new()
        .layer(IdempotencyKeyLayer::new())
        .layer(BufferBodyLayer::default())
        .layer(retry)
        .service(transport)
}

/// Sends [`ORDERS`] orders at once through the client stack and checks that each ran once and
/// came back as its original response.
async fn each_order_runs_once_and_its_retry_gets_the_original(store: Arc<dyn IdempotencyStore>) {
    let name = store.describe();
    let (addr, ledger) = upstream(store).await;
    let client = client_stack();

    let tasks: Vec<_> = (0..ORDERS)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let order = format!("{{\"sku\":\"A-{i}\",\"qty\":1}}");
                let mut req = Request::post(format!("http://{addr}/orders"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(order.clone())))
                    .unwrap();
                let attempts = rampart::core::attempt::AttemptCounter::new();
                req.extensions_mut().insert(attempts.clone());
                let res = tokio::time::timeout(Duration::from_secs(10), client.oneshot(req))
                    .await
                    .expect("bounded")
                    .unwrap();
                (order, res, attempts.get())
            })
        })
        .collect();

    let mut keys = HashSet::new();
    for task in tasks {
        let (order, res, attempts) = task.await.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED, "{name}: {order}");
        assert_eq!(
            res.headers()["idempotent-replayed"],
            "true",
            "{name}: {order}: the retry was answered from the store"
        );
        assert_eq!(
            attempts, 2,
            "{name}: {order}: the dropped attempt, then the replay"
        );
        assert_eq!(
            res.extensions().get::<RetryInfo>(),
            Some(&RetryInfo { gave_up: None }),
            "{name}: {order}"
        );
        let key = res.headers()["x-order-key"].to_str().unwrap().to_owned();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert_eq!(
            Some(&body),
            ledger.originals.lock().unwrap().get(&key),
            "{name}: {order}: the original response, byte for byte"
        );
        assert!(
            body.starts_with(&format!("{{\"order\":{order},")),
            "{name}: the response of this order, not another's: {body}"
        );
        assert!(keys.insert(key), "{name}: one key per order");
    }

    let effects = ledger.effects.lock().unwrap().clone();
    assert_eq!(effects.len(), ORDERS, "{name}: {effects:?}");
    assert!(
        effects.values().all(|&n| n == 1),
        "{name}: every order ran exactly once: {effects:?}"
    );
    let attempts = ledger.attempts.lock().unwrap().clone();
    for key in &keys {
        assert_eq!(
            attempts[key],
            [
                Some(Outcome::Executed { stored: true }),
                Some(Outcome::Replayed)
            ],
            "{name}: {key}: stored, dropped, then replayed"
        );
    }
}

#[tokio::test]
async fn each_order_runs_once_over_a_lossy_connection_with_the_memory_store() {
    let store = Arc::new(MemoryStore::bounded(1000).unwrap());
    each_order_runs_once_and_its_retry_gets_the_original(store).await;
}

#[tokio::test]
async fn each_order_runs_once_over_a_lossy_connection_with_the_redis_store() {
    let Some(url) = rampart_tests::redis_url() else {
        return;
    };
    let store = Arc::new(
        RedisIdempotencyStore::builder(url)
            .prefix(format!(
                "rampart-test:idem-e2e:{}:{:016x}",
                std::process::id(),
                fastrand::u64(..)
            ))
            .connect()
            .await
            .unwrap(),
    );
    each_order_runs_once_and_its_retry_gets_the_original(store.clone()).await;
    assert_eq!(
        store.clear().await.unwrap(),
        ORDERS as u64,
        "one entry per order"
    );
}
