//! A bulkhead in a real axum server, called over loopback by a real HTTP client.
//!
//! The slow handler blocks on a semaphore the test holds closed, and reports on a channel when
//! it starts: the test knows exactly which requests are in the handler, with no sleeps. Every
//! wait is bounded by [`within`], so a regression fails instead of hanging.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router, error_handling::HandleErrorLayer, extract::State, http::HeaderMap,
    routing::get as get_route,
};
use bytes::Bytes;
use http::{HeaderName, Request, header::RETRY_AFTER};
use http_body_util::{BodyExt, Empty};
use rampart::{
    ServiceBuilderExt,
    bulkhead::{BulkheadLayer, PriorityHeader},
};
use rampart_tests::{HttpClient, http_client, serve};
use tokio::sync::{Semaphore, mpsc};
use tower::ServiceBuilder;

const PRIORITY: HeaderName = HeaderName::from_static("x-priority");

/// The slow handler's controls: it reports on `entered` when it starts, then waits for a
/// permit of `release` (closed until the test adds permits).
#[derive(Clone)]
struct Gate {
    entered: mpsc::UnboundedSender<()>,
    release: Arc<Semaphore>,
}

impl Gate {
    fn new() -> (Self, mpsc::UnboundedReceiver<()>) {
        let (entered, rx) = mpsc::unbounded_channel();
        let release = Arc::new(Semaphore::new(0));
        (Self { entered, release }, rx)
    }

    async fn pass(&self) {
        self.entered.send(()).expect("the test is listening");
        self.release.acquire().await.expect("never closed").forget();
    }
}

/// A slow route: every request waits at the gate.
async fn slow(State(gate): State<Gate>) -> &'static str {
    gate.pass().await;
    "done"
}

/// A route where `x-priority: critical` requests answer at once and the others wait at the gate.
async fn by_priority(State(gate): State<Gate>, headers: HeaderMap) -> &'static str {
    if headers.get(&PRIORITY).is_some_and(|v| v == "critical") {
        return "critical done";
    }
    gate.pass().await;
    "done"
}

/// What the client saw: status, `Retry-After` (if any), body.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

impl Seen {
    fn ok(body: &str) -> Self {
        Self {
            status: 200,
            retry_after: None,
            body: body.to_owned(),
        }
    }

    /// A full bulkhead: `503`, no `Retry-After` (nobody knows when a permit frees up).
    fn full() -> Self {
        Self {
            status: 503,
            retry_after: None,
            body: r#"{"type":"urn:rampart:bulkhead-full","title":"Bulkhead full","status":503,"detail":"bulkhead is full"}"#
                .to_owned(),
        }
    }
}

/// `GET path`, with `x-priority: <priority>` if given.
async fn get(client: &HttpClient, addr: SocketAddr, path: &str, priority: Option<&str>) -> Seen {
    let mut req = Request::get(format!("http://{addr}{path}"));
    if let Some(p) = priority {
        req = req.header(PRIORITY, p);
    }
    let req = req.body(Empty::<Bytes>::new()).expect("request");
    let res = client.request(req).await.expect("HTTP request");
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get(RETRY_AFTER)
        .map(|v| v.to_str().expect("ascii").to_owned());
    let body = res.into_body().collect().await.expect("body").to_bytes();
    Seen {
        status,
        retry_after,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Sends `n` requests at once, each on its own task and connection; what each one saw arrives
/// on the returned channel as soon as its response is complete.
fn fire(
    n: usize,
    client: &HttpClient,
    addr: SocketAddr,
    path: &'static str,
    priority: Option<&'static str>,
) -> mpsc::UnboundedReceiver<Seen> {
    let (tx, rx) = mpsc::unbounded_channel();
    for _ in 0..n {
        let (client, tx) = (client.clone(), tx.clone());
        tokio::spawn(async move {
            let seen = get(&client, addr, path, priority).await;
            tx.send(seen).expect("the test is listening");
        });
    }
    rx
}

/// Waits for `fut`, failing the test after 10 s instead of hanging.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    within(what, rx.recv()).await.expect("channel open")
}

#[tokio::test]
async fn excess_requests_get_503_at_once_while_admitted_ones_run() {
    let bulkhead = BulkheadLayer::builder()
        .name("axum-e2e")
        .max_concurrent(2) // and the default: no waiting
        .layer()
        .expect("valid config");
    let handle = bulkhead.handle();
    let (gate, mut entered) = Gate::new();
    let app = Router::new()
        .route("/slow", get_route(slow))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(rampart::axum::handle_error))
                .bulkhead(bulkhead),
        )
        .with_state(gate.clone());
    let addr = serve(app).await;
    let client = http_client();

    let mut seen = fire(5, &client, addr, "/slow", None);

    // Two requests get permits and are now blocked in the handler…
    next(&mut entered, "the first admitted request").await;
    next(&mut entered, "the second admitted request").await;

    // …and the other three are answered at once, while those two are still blocked.
    for i in 0..3 {
        assert_eq!(next(&mut seen, "a rejection").await, Seen::full(), "#{i}");
    }
    assert!(
        entered.try_recv().is_err(),
        "no rejected request ran the handler"
    );
    assert!(
        seen.try_recv().is_err(),
        "the admitted requests are still blocked"
    );
    let stats = handle.stats();
    assert_eq!((stats.active, stats.rejected), (2, 3));
    assert_eq!(stats.rejected_no_capacity, 3);

    // Open the gate: the two admitted requests finish normally and give their permits back.
    gate.release.add_permits(2);
    for _ in 0..2 {
        assert_eq!(
            next(&mut seen, "an admitted request").await,
            Seen::ok("done")
        );
    }
    let stats = handle.stats();
    assert_eq!((stats.active, stats.rejected), (0, 3));

    // Capacity is free again.
    gate.release.add_permits(1);
    assert_eq!(get(&client, addr, "/slow", None).await, Seen::ok("done"));
    assert_eq!(handle.stats().rejected, 3);
}

#[tokio::test]
async fn a_critical_request_gets_through_while_bulk_is_saturated() {
    let bulkhead = BulkheadLayer::builder()
        .name("axum-e2e-priority")
        .class("critical", 1) // highest priority first
        .class("bulk", 2)
        .default_class("bulk")
        .layer()
        .expect("valid config")
        .prioritize(PriorityHeader::new(PRIORITY));
    let handle = bulkhead.handle();
    let (gate, mut entered) = Gate::new();
    let app = Router::new()
        .route("/work", get_route(by_priority))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(rampart::axum::handle_error))
                .bulkhead(bulkhead),
        )
        .with_state(gate.clone());
    let addr = serve(app).await;
    let client = http_client();

    // Two bulk requests fill the bulk class.
    let mut bulk = fire(2, &client, addr, "/work", Some("bulk"));
    next(&mut entered, "the first bulk request").await;
    next(&mut entered, "the second bulk request").await;

    // Bulk is saturated: another bulk request, or one naming no class (the default class is
    // bulk) or an unknown one, is rejected at once…
    for priority in [Some("bulk"), None, Some("urgent!!")] {
        assert_eq!(
            get(&client, addr, "/work", priority).await,
            Seen::full(),
            "{priority:?}"
        );
    }
    // …while a critical request still finds its reserved permit.
    assert_eq!(
        get(&client, addr, "/work", Some("critical")).await,
        Seen::ok("critical done")
    );

    let stats = handle.stats();
    assert_eq!((stats.active, stats.rejected), (2, 3));
    let active = |name: &str| {
        stats
            .classes
            .iter()
            .find(|c| &*c.name == name)
            .map(|c| c.active)
            .expect("class")
    };
    assert_eq!((active("bulk"), active("critical")), (2, 0));
    assert!(bulk.try_recv().is_err(), "bulk requests still blocked");

    gate.release.add_permits(2);
    for _ in 0..2 {
        assert_eq!(next(&mut bulk, "a bulk request").await, Seen::ok("done"));
    }
    assert_eq!(handle.stats().active, 0);
}
