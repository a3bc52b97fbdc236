//! Retries over loopback with a real hyper-util client: a `POST` whose body is buffered and
//! whose idempotency key is set once is replayed against an axum server that answers `503` with
//! `Retry-After: 1`, honoring the wait; a `GET` is retried after `502`s and after connections
//! that were closed or reset, with no key at all; a `POST` with no key is sent once; a request
//! the client refuses to send (no scheme, a scheme its connector does not speak) is tried once.
//!
//! Real time: the server's `Retry-After` is whole seconds, so the first test takes about 2 s.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::IntoResponse,
    routing::{get, post},
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rampart::core::classify::HttpClassifier;
use rampart_idempotency::IdempotencyKeyLayer;
use rampart_retry::{
    RetryLayer,
    backoff::{Backoff, Delays, Jitter},
    policy::GiveUp,
    protocol::HttpProtocol,
    replay::{BufferBodyLayer, HttpReplay, ReplayBody},
};
use rampart_tests::serve;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    time::Instant,
};
use tower::{ServiceBuilder, ServiceExt};

/// The body every `POST` sends.
const CHARGE: &str = r#"{"amount":4200,"currency":"EUR"}"#;

/// The backoff's own delay: far below the server's `Retry-After: 1`, so a gap of a second or
/// more can only come from the server's hint.
const BACKOFF: Duration = Duration::from_millis(50);

/// The client the retry stack wraps: hyper-util's legacy client over the replayable body, with
/// a new connection for every attempt.
type HttpClient = Client<HttpConnector, ReplayBody<Full<Bytes>>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

fn retry() -> RetryLayer<HttpClassifier, HttpProtocol, HttpReplay> {
    RetryLayer::builder()
        .max_attempts(4)
        .backoff(
            Backoff::builder()
                .delays(Delays::Constant(BACKOFF))
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

/// One attempt as the server saw it.
#[derive(Debug, Clone)]
struct Attempt {
    at: Instant,
    key: Option<HeaderValue>,
    body: Bytes,
}

/// What the server records, and how many attempts each idempotency key (or none) has made.
#[derive(Clone, Default)]
struct Ledger {
    attempts: Arc<Mutex<Vec<Attempt>>>,
    per_key: Arc<Mutex<HashMap<Option<HeaderValue>, usize>>>,
    gets: Arc<AtomicUsize>,
}

impl Ledger {
    fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock().unwrap().clone()
    }
}

/// `POST /charges`: the first 2 attempts of each distinct `Idempotency-Key` get `503` with
/// `Retry-After: 1`; the third gets `201`.
async fn charge(
    State(ledger): State<Ledger>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let key = headers.get("idempotency-key").cloned();
    ledger.attempts.lock().unwrap().push(Attempt {
        at: Instant::now(),
        key: key.clone(),
        body,
    });
    let n = {
        let mut per_key = ledger.per_key.lock().unwrap();
        let n = per_key.entry(key).or_default();
        *n += 1;
        *n
    };
    if n <= 2 {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "1")],
            "busy",
        )
            .into_response()
    } else {
        (StatusCode::CREATED, "charged").into_response()
    }
}

/// `GET /balance`: `502` twice, then `200`.
async fn balance(State(ledger): State<Ledger>, headers: HeaderMap) -> impl IntoResponse {
    assert!(
        !headers.contains_key("idempotency-key"),
        "a GET needs no idempotency key"
    );
    if ledger.gets.fetch_add(1, Ordering::SeqCst) < 2 {
        (StatusCode::BAD_GATEWAY, "upstream down").into_response()
    } else {
        (StatusCode::OK, "42").into_response()
    }
}

async fn server() -> (SocketAddr, Ledger) {
    let ledger = Ledger::default();
    let router = Router::new()
        .route("/charges", post(charge))
        .route("/balance", get(balance))
        .with_state(ledger.clone());
    (serve(router).await, ledger)
}

fn post_charge(addr: SocketAddr) -> http::Request<Full<Bytes>> {
    http::Request::post(format!("http://{addr}/charges"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(CHARGE.as_bytes())))
        .unwrap()
}

fn get_balance(addr: SocketAddr) -> http::Request<Full<Bytes>> {
    http::Request::get(format!("http://{addr}/balance"))
        .body(Full::default())
        .unwrap()
}

#[tokio::test]
async fn a_post_is_retried_with_one_key_and_one_body_after_the_servers_retry_after() {
    let (addr, ledger) = server().await;
    let svc = ServiceBuilder::new()
        .layer(IdempotencyKeyLayer::new())
        .layer(BufferBodyLayer::default())
        .layer(retry())
        .service(client());

    let req = post_charge(addr);
    assert!(
        !req.headers().contains_key("idempotency-key"),
        "the caller sets no key: the layer does"
    );
    let started = Instant::now();
    let res = tokio::time::timeout(Duration::from_secs(10), svc.oneshot(req))
        .await
        .expect("bounded: two 1 s waits, not more")
        .unwrap();
    let elapsed = started.elapsed();

    assert_eq!(res.status(), 201, "the third attempt succeeded");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "charged");

    let attempts = ledger.attempts();
    assert_eq!(attempts.len(), 3, "two 503s, then the 201");
    let key = attempts[0].key.clone().expect("the layer set a key");
    assert_eq!(key.len(), 36, "a hyphenated UUID: {key:?}");
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(a.key.as_ref(), Some(&key), "attempt {i}: the same key");
        assert_eq!(a.body, CHARGE, "attempt {i}: the same body");
    }
    for (i, w) in attempts.windows(2).enumerate() {
        let gap = w[1].at - w[0].at;
        assert!(
            gap >= Duration::from_secs(1),
            "gap {i} was {gap:?}: Retry-After: 1 was not honored (the backoff alone is {BACKOFF:?})"
        );
        assert!(gap < Duration::from_secs(3), "gap {i} was {gap:?}");
    }
    assert!(elapsed >= Duration::from_secs(2), "took {elapsed:?}");
}

#[tokio::test]
async fn a_get_is_retried_after_502s_without_a_key() {
    let (addr, ledger) = server().await;
    // No IdempotencyKeyLayer: a GET may be sent again as it is.
    let svc = ServiceBuilder::new()
        .layer(BufferBodyLayer::default())
        .layer(retry())
        .service(client());

    let started = Instant::now();
    let res = svc.oneshot(get_balance(addr)).await.unwrap();
    assert_eq!(res.status(), 200, "the third attempt succeeded");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "42");
    assert_eq!(ledger.gets.load(Ordering::SeqCst), 3, "502, 502, 200");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= 2 * BACKOFF && elapsed < Duration::from_secs(2),
        "two backoff waits, took {elapsed:?}"
    );
}

#[tokio::test]
async fn a_post_without_a_key_is_sent_once_and_its_503_comes_back() {
    let (addr, ledger) = server().await;
    // No IdempotencyKeyLayer: a retried POST could charge twice.
    let svc = ServiceBuilder::new()
        .layer(BufferBodyLayer::default())
        .layer(retry())
        .service(client());

    let started = Instant::now();
    let res = svc.oneshot(post_charge(addr)).await.unwrap();
    assert_eq!(res.status(), 503, "the response itself, not an error");
    assert_eq!(res.headers()["retry-after"], "1");
    let attempts = ledger.attempts();
    assert_eq!(attempts.len(), 1, "exactly one attempt");
    assert_eq!(attempts[0].key, None);
    assert_eq!(attempts[0].body, CHARGE);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no Retry-After wait for a request that is not retried"
    );
}

/// A bare TCP server: resets the first connection, closes the second without answering, and
/// answers `200 OK` from the third on. Returns its address and the connection count.
async fn flaky_tcp_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    tokio::spawn({
        let conns = conns.clone();
        async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let n = conns.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    // Read the request head before failing, so that the request was sent.
                    let mut buf = vec![0u8; 4096];
                    let mut read = 0;
                    while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf[read..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => read += k,
                        }
                    }
                    match n {
                        0 => stream.set_zero_linger().unwrap(), // drop sends RST
                        1 => {}                                 // drop sends FIN
                        _ => {
                            let res = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\
                                        connection: close\r\n\r\nok";
                            stream.write_all(res).await.unwrap();
                            stream.shutdown().await.unwrap();
                        }
                    }
                });
            }
        }
    });
    (addr, conns)
}

#[tokio::test]
async fn a_get_is_retried_after_connection_reset_and_close() {
    let (addr, conns) = flaky_tcp_server().await;
    let svc = ServiceBuilder::new()
        .layer(BufferBodyLayer::default())
        .layer(retry())
        .service(client());
    let req = http::Request::get(format!("http://{addr}/balance"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(5), svc.oneshot(req))
        .await
        .expect("bounded")
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "transport errors are transient for a GET"
    );
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok");
    assert_eq!(conns.load(Ordering::SeqCst), 3, "reset, closed, answered");
}

#[tokio::test]
async fn a_post_without_a_key_is_not_resent_after_a_transport_error() {
    let (addr, conns) = flaky_tcp_server().await;
    let svc = ServiceBuilder::new()
        .layer(BufferBodyLayer::default())
        .layer(retry())
        .service(client());
    let err = svc.oneshot(post_charge(addr)).await.unwrap_err();
    assert_eq!(err.attempts(), 1);
    assert_eq!(err.reason(), GiveUp::NotReplaySafe);
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "the server may have charged once"
    );
}

/// The client's own refusals are programmer errors: retrying cannot help, so the retry gives up
/// after the first attempt (rampart-core's `failure_kind_of`, through `HttpClassifier`).
#[tokio::test]
async fn a_request_the_client_refuses_is_tried_once() {
    let (addr, _) = server().await;
    for (uri, what) in [
        ("/balance".to_owned(), "no scheme or authority"),
        (
            format!("https://{addr}/balance"),
            "https through an http-only connector",
        ),
    ] {
        let attempts = Arc::new(AtomicUsize::new(0));
        let svc = ServiceBuilder::new()
            .layer(BufferBodyLayer::default())
            .layer(retry())
            .map_request({
                let attempts = attempts.clone();
                move |req| {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    req
                }
            })
            .service(client());
        let req = http::Request::get(&uri)
            .body(Full::<Bytes>::default())
            .unwrap();
        let err = svc.oneshot(req).await.unwrap_err();
        assert_eq!(err.reason(), GiveUp::Fatal, "{what}: {err}");
        assert_eq!(err.attempts(), 1, "{what}");
        assert_eq!(attempts.load(Ordering::SeqCst), 1, "{what}");
    }
}
