//! The bulkhead middleware against a real axum server whose handler holds requests until the
//! test releases them: excess calls rejected, a bounded wait, priority classes.
#![allow(clippy::unwrap_used)]

mod common;

use std::{sync::Arc, time::Duration};

use axum::{Router, extract::State, routing::get};
use rampart_bulkhead::{BulkheadFull, BulkheadLayer, FullReason, Priority};
use rampart_reqwest::{BulkheadMiddleware, PriorityFromHeader, find};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use tokio::sync::{Semaphore, mpsc};

/// A server whose handler reports each arrival, then waits for a release.
struct Gate {
    arrived: mpsc::UnboundedReceiver<()>,
    release: Arc<Semaphore>,
    base: String,
}

#[derive(Clone)]
struct GateState {
    arrived: mpsc::UnboundedSender<()>,
    release: Arc<Semaphore>,
}

async fn gate() -> Gate {
    let (tx, rx) = mpsc::unbounded_channel();
    let release = Arc::new(Semaphore::new(0));
    let router = Router::new()
        .route(
            "/",
            get(|State(s): State<GateState>| async move {
                s.arrived.send(()).unwrap();
                s.release.acquire().await.unwrap().forget();
                "done"
            }),
        )
        .with_state(GateState {
            arrived: tx,
            release: release.clone(),
        });
    Gate {
        arrived: rx,
        release,
        base: format!("http://{}", common::serve(router).await),
    }
}

fn with(
    bulkhead: BulkheadMiddleware<rampart_reqwest::ByHost, PriorityFromHeader>,
) -> ClientWithMiddleware {
    ClientBuilder::new(common::client()).with(bulkhead).build()
}

fn spawn_get(
    http: &ClientWithMiddleware,
    url: &str,
    class: Option<&'static str>,
) -> tokio::task::JoinHandle<reqwest_middleware::Result<String>> {
    let mut req = http.get(url);
    if let Some(class) = class {
        req = req.with_extension(Priority::new(class));
    }
    tokio::spawn(async move { req.send().await?.text().await.map_err(Into::into) })
}

#[tokio::test]
async fn rejects_excess_concurrent_calls_without_sending_them() {
    let mut server = gate().await;
    let layer = BulkheadLayer::builder()
        .name("e2e")
        .max_concurrent(2)
        .layer()
        .unwrap();
    let handle = layer.handle();
    let http = with(
        BulkheadMiddleware::new(layer).prioritize(PriorityFromHeader::new(
            http::HeaderName::from_static("x-priority"),
        )),
    );

    let first = spawn_get(&http, &server.base, None);
    let second = spawn_get(&http, &server.base, None);
    server.arrived.recv().await.unwrap();
    server.arrived.recv().await.unwrap();
    assert_eq!(handle.stats().active, 2);

    let err = http.get(&server.base).send().await.unwrap_err();
    let full = find::<BulkheadFull>(&err).expect("a BulkheadFull");
    assert_eq!(full.reason(), FullReason::NoCapacity);
    assert!(rampart_core::error::find::<BulkheadFull>(&err).is_some());
    assert!(
        server.arrived.try_recv().is_err(),
        "the rejected call was not sent"
    );

    server.release.add_permits(2);
    assert_eq!(first.await.unwrap().unwrap(), "done");
    assert_eq!(second.await.unwrap().unwrap(), "done");
    assert_eq!(handle.stats().active, 0);
    assert_eq!(handle.stats().rejected_no_capacity, 1);
}

#[tokio::test]
async fn a_call_waits_its_bounded_turn() {
    let mut server = gate().await;
    let layer = BulkheadLayer::builder()
        .name("waiting")
        .max_concurrent(1)
        .max_wait(Duration::from_secs(10))
        .layer()
        .unwrap();
    let handle = layer.handle();
    let http = ClientBuilder::new(common::client())
        .with(BulkheadMiddleware::new(layer))
        .build();

    let first = spawn_get(&http, &server.base, None);
    server.arrived.recv().await.unwrap();
    let second = spawn_get(&http, &server.base, None);
    // Wait (bounded) until the second call is in line.
    tokio::time::timeout(Duration::from_secs(5), async {
        while handle.stats().queued == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the second call queues");

    server.release.add_permits(1);
    assert_eq!(first.await.unwrap().unwrap(), "done");
    server.arrived.recv().await.unwrap();
    server.release.add_permits(1);
    assert_eq!(second.await.unwrap().unwrap(), "done");
    assert_eq!(handle.stats().rejected, 0);
}

#[tokio::test]
async fn priority_classes_have_their_own_capacity() {
    let mut server = gate().await;
    let layer = BulkheadLayer::builder()
        .name("classes")
        .class("critical", 1)
        .class("bulk", 1)
        .default_class("bulk")
        .layer()
        .unwrap();
    let http = with(
        BulkheadMiddleware::new(layer).prioritize(PriorityFromHeader::new(
            http::HeaderName::from_static("x-priority"),
        )),
    );

    let bulk = spawn_get(&http, &server.base, None);
    server.arrived.recv().await.unwrap();
    // Bulk is full: another bulk call (by header this time) is rejected…
    let err = http
        .get(&server.base)
        .header("x-priority", "bulk")
        .send()
        .await
        .unwrap_err();
    assert_eq!(find::<BulkheadFull>(&err).unwrap().class(), "bulk");
    // …while a critical one (by extension) goes through on its reserved capacity.
    let critical = spawn_get(&http, &server.base, Some("critical"));
    server.arrived.recv().await.unwrap();
    server.release.add_permits(2);
    assert_eq!(bulk.await.unwrap().unwrap(), "done");
    assert_eq!(critical.await.unwrap().unwrap(), "done");
}
