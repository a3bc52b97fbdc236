//! Queue for later, drained on recovery, end to end: orders sent while a real loopback upstream
//! is down are answered `202 Accepted` and parked; the drain worker, waiting on the breaker,
//! delivers every one exactly once after the upstream comes back. On the embedded SQLite store
//! and on Redis (`REDIS_URL`).

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use rampart_dead_letter::{DeadLetterId, DeadLetterStore, Filter, Query, SqliteStore, State};
use rampart_examples::{
    alert::Webhook,
    queue_for_later,
    upstream::{Faults, Upstream},
};

const ORDERS: u64 = 60;

/// A loopback pager: every alert posted to it, as (event, body).
#[derive(Clone, Default)]
struct Pager(Arc<Mutex<Vec<(String, String)>>>);

impl Pager {
    async fn start() -> (Pager, Webhook) {
        let pager = Pager::default();
        let seen = pager.clone();
        let app = axum::Router::new().route(
            "/alerts",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let seen = seen.clone();
                async move {
                    let event = headers["x-rampart-event"].to_str().unwrap().to_owned();
                    seen.0.lock().unwrap().push((event, body));
                }
            }),
        );
        let addr = rampart_tests::serve(app).await;
        let hook = Webhook::new(format!("http://{addr}/alerts").parse().unwrap());
        (pager, hook)
    }

    fn events(&self, event: &str) -> Vec<String> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|(e, _)| e == event)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// Waits until `n` alerts of `event` have arrived (they are posted in the background).
    async fn wait_for(&self, event: &str, n: usize) -> Vec<String> {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let got = self.events(event);
                if got.len() >= n {
                    return got;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{n} `{event}` alerts never arrived: {:?}",
                self.events(event)
            )
        })
    }
}

async fn drains_every_parked_order_once(store: Arc<dyn DeadLetterStore>) {
    let upstream = Upstream::start(Faults::NONE, 11).await.unwrap();
    let (pager, hook) = Pager::start().await;
    let report = queue_for_later::run(
        store.clone(),
        &upstream,
        ORDERS,
        Duration::from_millis(800),
        Duration::from_secs(60),
        &hook,
    )
    .await
    .unwrap();
    let opened = pager.wait_for("circuit_breaker.opened", 1).await;
    assert!(opened[0].contains("\"breaker\":\"orders\""), "{opened:?}");
    assert_eq!(hook.failed(), 0);

    assert_eq!(
        (report.accepted, report.created, report.lost),
        (ORDERS, 0, 0),
        "every caller answered 202 while the upstream was down: {report:?}"
    );
    assert_eq!(report.drained, ORDERS, "{report:?}");
    assert!(
        report.redrives_failed < 10,
        "while the breaker was open only its probes were sent, not every order: {report:?}"
    );
    assert_eq!((report.duplicated, report.missing), (0, 0), "{report:?}");
    assert!(
        pager.events("dead_letter.given_up").is_empty(),
        "nothing given up"
    );
    let effects = upstream.effects();
    assert_eq!(effects.len() as u64, ORDERS);
    assert!(effects.values().all(|&n| n == 1), "{effects:?}");
    let records = store.list(&Query::new(Filter::all(), 1000)).await.unwrap();
    assert_eq!(records.len() as u64, ORDERS);
    assert!(records.iter().all(|r| r.state == State::Delivered));
    // The probes sent while the upstream was still down failed and were tried again; every
    // record carries the key its caller was given, so none ran twice.
    assert!(records.iter().all(|r| r.idempotency_key.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("dlq.db")).unwrap();
    drains_every_parked_order_once(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis() {
    let Some(url) = rampart_tests::redis_url() else {
        return;
    };
    let store = rampart_redis::RedisDeadLetterStore::builder(&url)
        .prefix(format!(
            "rampart-test:{}:{}",
            std::process::id(),
            DeadLetterId::new()
        ))
        .connect()
        .await
        .unwrap();
    let store = Arc::new(store);
    drains_every_parked_order_once(store.clone()).await;
    Arc::into_inner(store).unwrap().destroy().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_recovers_gives_every_order_up_with_an_alert() {
    let upstream = Upstream::start(Faults::NONE, 12).await.unwrap();
    upstream.set_outage(true);
    let (pager, hook) = Pager::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn DeadLetterStore> =
        Arc::new(SqliteStore::open(dir.path().join("dlq.db")).unwrap());
    let breaker = queue_for_later::breaker(hook.breaker_opened()).unwrap();
    let client = queue_for_later::client(store.clone(), breaker.clone()).unwrap();
    let url = format!("http://{}/orders", upstream.addr());
    for i in 0..3 {
        let req = http::Request::post(&url)
            .body(http_body_util::Full::new(bytes::Bytes::from(format!(
                "{{\"item\":{i}}}"
            ))))
            .unwrap();
        use tower::ServiceExt as _;
        let res = client.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), http::StatusCode::ACCEPTED);
    }
    assert_eq!(
        breaker.handle().state(),
        rampart::circuit_breaker::State::Open,
        "three 503s in a row open the breaker"
    );
    // One redrive each: every probe fails, and its record is given up at once.
    let drain = queue_for_later::drain(store.clone(), &breaker, 1, hook.given_up()).unwrap();
    let given_up = pager.wait_for("dead_letter.given_up", 3).await;
    drain.stop();
    drain.stopped().await;
    let records: Vec<_> = given_up
        .iter()
        .map(|b| rampart_dead_letter::DeadLetter::from_json(b.as_bytes()).unwrap())
        .collect();
    assert!(
        records
            .iter()
            .all(|r| r.state == State::GivenUp && r.redrive_count == 1)
    );
    assert_eq!(drain.stats().given_up, 3);
    assert!(!pager.events("circuit_breaker.opened").is_empty());
    assert!(upstream.effects().is_empty(), "no order was placed");
}
