#![allow(clippy::unwrap_used)]
//! The layer in front of real axum servers on 127.0.0.1, called by a real HTTP client: what a
//! client of an idempotent API sees.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    response::IntoResponse,
    routing::{get, post},
};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rampart_idempotency::{IdempotencyLayer, IdempotencyStore, KeyPolicy, MemoryStore};

/// Serves `router` on `127.0.0.1:0`; the address it listens on.
async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A real HTTP/1 client, a new connection per request (so the server clones its stack each
/// time, as it does for separate clients).
fn client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn replayed(&self) -> bool {
        self.headers
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true")
    }

    /// Checks an RFC 9457 problem: status, content type, and the `type` slug.
    fn assert_problem(&self, status: u16, slug: &str) {
        assert_eq!(self.status, status, "{:?}", self.body);
        assert_eq!(self.headers["content-type"], "application/problem+json");
        let json = self.json();
        assert_eq!(json["status"], status);
        assert!(
            json["type"].as_str().unwrap().ends_with(slug),
            "type {} should end with {slug}",
            json["type"]
        );
        assert!(json["title"].is_string() && json["detail"].is_string());
    }
}

/// Sends `method path` with `headers` and `body`.
async fn send(
    client: &HttpClient,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let res = client.request(req).await.unwrap();
    let (parts, body) = res.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

fn store() -> Arc<dyn IdempotencyStore> {
    Arc::new(MemoryStore::bounded(10_000).unwrap())
}

fn required(store: Arc<dyn IdempotencyStore>) -> rampart_idempotency::IdempotencyBuilder {
    IdempotencyLayer::builder(store).policy(KeyPolicy::Required)
}

/// `POST /charges`: counts its runs, answers `201` with the body it got, a charge id, and a
/// session cookie.
fn charges(layer: IdempotencyLayer, runs: Arc<AtomicUsize>) -> Router {
    Router::new().route(
        "/charges",
        post(move |body: Bytes| {
            let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                (
                    StatusCode::CREATED,
                    [
                        ("content-type", "application/json".to_owned()),
                        ("x-charge-id", format!("ch_{n}")),
                        ("set-cookie", "session=s3cr3t; HttpOnly".to_owned()),
                    ],
                    format!(
                        "{{\"run\":{n},\"request\":{}}}",
                        String::from_utf8_lossy(&body)
                    ),
                )
            }
        })
        .layer(layer),
    )
}

#[tokio::test]
async fn a_missing_key_on_a_required_route_is_400() {
    let runs = Arc::new(AtomicUsize::new(0));
    let addr = serve(charges(required(store()).build().unwrap(), runs.clone())).await;
    let reply = send(&client(), addr, "POST", "/charges", &[], "{}").await;
    reply.assert_problem(400, "idempotency-key-missing");
    assert!(
        reply.json()["detail"]
            .as_str()
            .unwrap()
            .contains("idempotency-key")
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_malformed_key_is_400() {
    let runs = Arc::new(AtomicUsize::new(0));
    let addr = serve(charges(
        IdempotencyLayer::builder(store()).build().unwrap(),
        runs.clone(),
    ))
    .await;
    let c = client();
    let long = "k".repeat(256);
    for key in [long.as_str(), "\"unterminated", "two words", "\"\""] {
        let reply = send(
            &c,
            addr,
            "POST",
            "/charges",
            &[("idempotency-key", key)],
            "{}",
        )
        .await;
        reply.assert_problem(400, "idempotency-key-invalid");
    }
    let reply = send(
        &c,
        addr,
        "POST",
        "/charges",
        &[("idempotency-key", "a"), ("idempotency-key", "b")],
        "{}",
    )
    .await;
    reply.assert_problem(400, "idempotency-key-invalid");
    assert!(
        reply.json()["detail"]
            .as_str()
            .unwrap()
            .contains("more than once")
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "a refused request never runs"
    );
}

#[tokio::test]
async fn a_retry_gets_the_stored_response_without_its_cookie() {
    let runs = Arc::new(AtomicUsize::new(0));
    let addr = serve(charges(required(store()).build().unwrap(), runs.clone())).await;
    let c = client();
    let key = [("idempotency-key", "order-42")];
    let first = send(&c, addr, "POST", "/charges", &key, "{\"amount\":500}").await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(!first.replayed());
    assert_eq!(
        first.headers["set-cookie"], "session=s3cr3t; HttpOnly",
        "the first caller gets its cookie"
    );
    assert!(first.headers.get("idempotency-stored").is_none());
    assert_eq!(
        first.body, "{\"run\":1,\"request\":{\"amount\":500}}",
        "the handler got the whole body"
    );

    // The draft's quoted form names the same key.
    let retry = send(
        &c,
        addr,
        "POST",
        "/charges",
        &[("idempotency-key", "\"order-42\"")],
        "{\"amount\":500}",
    )
    .await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the retry did not run the handler"
    );
    assert!(retry.replayed());
    assert_eq!(retry.status, first.status);
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.headers["x-charge-id"], "ch_1");
    assert_eq!(retry.headers["content-type"], "application/json");
    assert_eq!(
        retry.headers["content-length"],
        first.headers["content-length"]
    );
    assert!(
        retry.headers.get("set-cookie").is_none(),
        "Set-Cookie is not replayed"
    );
}

#[tokio::test]
async fn a_retry_while_the_first_runs_gets_409_with_retry_after() {
    let entered = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let runs = Arc::new(AtomicUsize::new(0));
    let (e, g, r) = (entered.clone(), gate.clone(), runs.clone());
    let app = Router::new().route(
        "/charges",
        post(move || {
            let (e, g, r) = (e.clone(), g.clone(), r.clone());
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                e.notify_one();
                g.acquire().await.unwrap().forget();
                (StatusCode::CREATED, "charged")
            }
        })
        .layer(
            required(store())
                .retry_after(Duration::from_secs(2))
                .build()
                .unwrap(),
        ),
    );
    let addr = serve(app).await;
    let c = client();
    let key = [("idempotency-key", "slow-1")];
    let first = tokio::spawn({
        let c = c.clone();
        async move { send(&c, addr, "POST", "/charges", &key, "{}").await }
    });
    entered.notified().await;

    let second = send(&c, addr, "POST", "/charges", &key, "{}").await;
    second.assert_problem(409, "idempotency-key-in-use");
    assert_eq!(second.headers["retry-after"], "2");

    gate.add_permits(1);
    let first = first.await.unwrap();
    assert_eq!(
        (first.status, &first.body[..]),
        (StatusCode::CREATED, &b"charged"[..])
    );
    let third = send(&c, addr, "POST", "/charges", &key, "{}").await;
    assert!(third.replayed());
    assert_eq!(third.body, "charged");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422() {
    let runs = Arc::new(AtomicUsize::new(0));
    let addr = serve(charges(required(store()).build().unwrap(), runs.clone())).await;
    let c = client();
    let key = [("idempotency-key", "order-7")];
    let first = send(&c, addr, "POST", "/charges", &key, "{\"amount\":500}").await;
    assert_eq!(first.status, StatusCode::CREATED);
    let other = send(&c, addr, "POST", "/charges", &key, "{\"amount\":900}").await;
    other.assert_problem(422, "idempotency-key-reused");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // The original is still replayed.
    assert!(
        send(&c, addr, "POST", "/charges", &key, "{\"amount\":500}")
            .await
            .replayed()
    );
}

#[tokio::test]
async fn server_errors_are_not_stored_so_a_retry_runs_again() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let app = Router::new().route(
        "/charges",
        post(move || {
            let n = r.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if n == 1 {
                    (StatusCode::INTERNAL_SERVER_ERROR, "upstream down").into_response()
                } else {
                    (StatusCode::CREATED, "charged").into_response()
                }
            }
        })
        .layer(required(store()).build().unwrap()),
    );
    let addr = serve(app).await;
    let c = client();
    let key = [("idempotency-key", "order-9")];
    let first = send(&c, addr, "POST", "/charges", &key, "{}").await;
    assert_eq!(first.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(first.headers["idempotency-stored"], "false");
    let second = send(&c, addr, "POST", "/charges", &key, "{}").await;
    assert_eq!(
        second.status,
        StatusCode::CREATED,
        "the retry ran the handler again"
    );
    assert!(!second.replayed());
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let third = send(&c, addr, "POST", "/charges", &key, "{}").await;
    assert!(third.replayed() && third.status == StatusCode::CREATED);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_response_over_the_store_limit_is_sent_whole_but_not_stored() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let app = Router::new().route(
        "/exports",
        post(move || {
            r.fetch_add(1, Ordering::SeqCst);
            async { "x".repeat(4096) }
        })
        .layer(required(store()).max_response_body(1024).build().unwrap()),
    );
    let addr = serve(app).await;
    let c = client();
    let key = [("idempotency-key", "export-1")];
    let first = send(&c, addr, "POST", "/exports", &key, "").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body.len(), 4096, "the client gets all of it");
    assert_eq!(first.headers["idempotency-stored"], "false");
    let second = send(&c, addr, "POST", "/exports", &key, "").await;
    assert_eq!(second.body.len(), 4096);
    assert!(
        !second.replayed(),
        "nothing was stored: the retry runs again"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_request_body_over_the_limit_is_413() {
    let runs = Arc::new(AtomicUsize::new(0));
    let addr = serve(charges(
        required(store()).max_request_body(16).build().unwrap(),
        runs.clone(),
    ))
    .await;
    let reply = send(
        &client(),
        addr,
        "POST",
        "/charges",
        &[("idempotency-key", "big")],
        &"x".repeat(17),
    )
    .await;
    reply.assert_problem(413, "request-body-too-large");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_requests_with_one_key_run_the_handler_once() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let app = Router::new().route(
        "/charges",
        post(move |body: Bytes| {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
                (StatusCode::CREATED, body)
            }
        })
        .layer(required(store()).build().unwrap()),
    );
    let addr = serve(app).await;
    let c = client();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                send(
                    &c,
                    addr,
                    "POST",
                    "/charges",
                    &[("idempotency-key", "burst")],
                    "{\"n\":1}",
                )
                .await
            })
        })
        .collect();
    let mut executed = 0;
    let mut replayed = 0;
    let mut conflicts = 0;
    for t in tasks {
        let reply = t.await.unwrap();
        match reply.status {
            StatusCode::CREATED if reply.replayed() => replayed += 1,
            StatusCode::CREATED => executed += 1,
            StatusCode::CONFLICT => {
                reply.assert_problem(409, "idempotency-key-in-use");
                conflicts += 1;
            }
            other => panic!("unexpected {other}: {:?}", reply.body),
        }
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "exactly one execution");
    assert_eq!(executed, 1);
    assert_eq!(executed + replayed + conflicts, 50);
}

#[tokio::test]
async fn another_caller_with_the_same_key_runs_separately() {
    let runs = Arc::new(AtomicUsize::new(0));
    let layer = required(store())
        .caller_header(HeaderName::from_static("x-api-key"))
        .build()
        .unwrap();
    let addr = serve(charges(layer, runs.clone())).await;
    let c = client();
    let alice = [("idempotency-key", "order-1"), ("x-api-key", "sk_alice")];
    let bob = [("idempotency-key", "order-1"), ("x-api-key", "sk_bob")];
    let a1 = send(&c, addr, "POST", "/charges", &alice, "{\"who\":\"alice\"}").await;
    let b1 = send(&c, addr, "POST", "/charges", &bob, "{\"who\":\"bob\"}").await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "bob's request ran: it is not alice's"
    );
    assert!(!a1.replayed() && !b1.replayed());
    let a2 = send(&c, addr, "POST", "/charges", &alice, "{\"who\":\"alice\"}").await;
    let b2 = send(&c, addr, "POST", "/charges", &bob, "{\"who\":\"bob\"}").await;
    assert!(a2.replayed() && b2.replayed());
    assert_eq!(a2.body, a1.body);
    assert_eq!(b2.body, b1.body);
    assert_ne!(a2.body, b2.body, "each caller gets its own response");
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    // No identity: refused.
    let anon = send(
        &c,
        addr,
        "POST",
        "/charges",
        &[("idempotency-key", "order-1")],
        "{}",
    )
    .await;
    anon.assert_problem(400, "caller-unidentified");
}

#[tokio::test]
async fn other_methods_pass_through_untouched() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let app = Router::new()
        .route(
            "/charges",
            get(move || {
                r.fetch_add(1, Ordering::SeqCst);
                async { "list" }
            }),
        )
        .layer(required(store()).build().unwrap());
    let addr = serve(app).await;
    let c = client();
    for _ in 0..2 {
        let reply = send(
            &c,
            addr,
            "GET",
            "/charges",
            &[("idempotency-key", "bad key")],
            "",
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(!reply.replayed() && reply.headers.get("idempotency-stored").is_none());
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "GET is neither checked nor deduplicated"
    );
}

#[tokio::test]
async fn per_route_layers_share_a_store_and_a_key_reused_on_another_route_is_422() {
    let store = store();
    let runs = Arc::new(AtomicUsize::new(0));
    let (r1, r2) = (runs.clone(), runs.clone());
    let app = Router::new()
        .route(
            "/charges",
            post(move || {
                r1.fetch_add(1, Ordering::SeqCst);
                async { (StatusCode::CREATED, "charge") }
            })
            .layer(required(store.clone()).name("charges").build().unwrap()),
        )
        .route(
            "/notes",
            post(move || {
                r2.fetch_add(1, Ordering::SeqCst);
                async { (StatusCode::CREATED, "note") }
            })
            .layer(
                IdempotencyLayer::builder(store.clone())
                    .name("notes")
                    .build()
                    .unwrap(),
            ),
        );
    let addr = serve(app).await;
    let c = client();
    // Optional on /notes: no key, no deduplication.
    for _ in 0..2 {
        assert_eq!(
            send(&c, addr, "POST", "/notes", &[], "{}").await.status,
            StatusCode::CREATED
        );
    }
    // Required on /charges.
    send(&c, addr, "POST", "/charges", &[], "{}")
        .await
        .assert_problem(400, "idempotency-key-missing");
    let key = [("idempotency-key", "shared-1")];
    assert_eq!(
        send(&c, addr, "POST", "/charges", &key, "{}").await.status,
        StatusCode::CREATED
    );
    send(&c, addr, "POST", "/notes", &key, "{}")
        .await
        .assert_problem(422, "idempotency-key-reused");
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}
