//! The payments API pipeline of the write-ups (examples' `pipeline`), over loopback: the
//! priority bulkhead 10/5/2 admits each class up to its share and refuses the rest at once;
//! the timeout classes cut a report at its class's timeout while other calls keep theirs; the
//! health view turns degraded on a dead-letter backlog and unhealthy on a falling success rate.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use rampart::dead_letter::{DeadLetterStore, MemoryStore};
use rampart::health::Status;
use rampart_examples::pipeline::{self, PRIORITY, Pipeline, Settings};
use tokio::task::JoinSet;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn http() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn start(settings: impl FnOnce(&mut Settings)) -> (SocketAddr, Pipeline, Arc<MemoryStore>) {
    let processor = pipeline::processor_down().await.unwrap();
    let mut s = Settings::new(processor);
    s.health_cache = Duration::ZERO;
    settings(&mut s);
    let store = Arc::new(MemoryStore::bounded(1_000).unwrap());
    let (app, handles) = pipeline::app(&s, store.clone() as Arc<dyn DeadLetterStore>).unwrap();
    (pipeline::serve(app).await.unwrap(), handles, store)
}

async fn get(client: &HttpClient, addr: SocketAddr, path: &str, class: Option<&str>) -> StatusCode {
    let mut req = Request::get(format!("http://{addr}{path}"));
    if let Some(class) = class {
        req = req.header(&PRIORITY, class);
    }
    let res = client
        .request(req.body(Full::default()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    res.into_body().collect().await.unwrap();
    status
}

/// Waits (bounded) until the bulkhead holds `n` calls.
async fn until_active(pipeline: &Pipeline, n: u32) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while pipeline.bulkhead.stats().active < n {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the bulkhead never held {n} calls"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_priority_bulkhead_admits_each_class_its_share_and_refuses_the_rest_at_once() {
    let (addr, pipeline, _) = start(|_| {}).await;
    pipeline.gate.send_replace(false); // hold every admitted call
    let client = http();
    let mut calls = JoinSet::new();
    let mut refused = std::collections::BTreeMap::new();
    // Each class in turn, so that which calls get in does not depend on arrival order.
    let mut active = 0;
    for (class, sent, admitted) in [("bulk", 4, 2), ("normal", 7, 5), ("critical", 14, 13)] {
        let mut quick = JoinSet::new();
        for _ in 0..sent {
            let client = client.clone();
            quick.spawn(async move { get(&client, addr, "/work", Some(class)).await });
        }
        active += admitted;
        until_active(&pipeline, active).await;
        // The refused ones answer now, while the admitted ones are held.
        for _ in 0..sent - admitted {
            let status = quick.join_next().await.unwrap().unwrap();
            assert_eq!(
                status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{class}: refused at once"
            );
        }
        refused.insert(class, sent - admitted);
        assert_eq!(
            quick.len() as u32,
            admitted,
            "{class}: the admitted are held"
        );
        calls.spawn(async move { quick.join_all().await });
    }
    assert_eq!(
        refused,
        [("bulk", 2u32), ("critical", 1), ("normal", 2)]
            .into_iter()
            .collect(),
        "bulk gets 2, normal 5, critical its 10 and the 3 shared"
    );
    pipeline.gate.send_replace(true);
    let admitted: Vec<StatusCode> = calls.join_all().await.into_iter().flatten().collect();
    assert_eq!(admitted.len(), 2 + 5 + 13);
    assert!(
        admitted.iter().all(|s| *s == StatusCode::OK),
        "{admitted:?}"
    );
    assert_eq!(pipeline.bulkhead.stats().rejected, 5);
}

#[tokio::test]
async fn a_report_is_cut_at_its_class_timeout_and_other_calls_keep_theirs() {
    let (addr, _, _) = start(|_| {}).await;
    let client = http();
    // The report takes 1.5 s; its class allows 1 s.
    assert_eq!(
        get(&client, addr, "/reports/daily", None).await,
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(get(&client, addr, "/work", None).await, StatusCode::OK);

    // Given 3 s, the same report is built.
    let (addr, _, _) = start(|s| s.report_timeout = Duration::from_secs(3)).await;
    assert_eq!(
        get(&client, addr, "/reports/daily", None).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn health_is_degraded_by_a_dead_letter_backlog_and_unhealthy_by_failing_calls() {
    let (addr, pipeline, store) = start(|s| s.backlog_threshold = 5).await;
    let client = http();
    assert_eq!(pipeline.health.check().await.status, Status::Healthy);

    // The processor is down: each payment is parked and accepted.
    for n in 0..6 {
        let req = Request::post(format!("http://{addr}/payments"))
            .header("idempotency-key", format!("pay-{n}"))
            .body(Full::new(Bytes::from(format!("{{\"amount\":{n}}}"))))
            .unwrap();
        let res = client.request(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
    }
    assert_eq!(store.stats().await.unwrap().total, 6);
    let report = pipeline.health.check().await;
    assert_eq!(report.status, Status::Degraded, "{report:?}");
    let parked = report
        .components
        .iter()
        .find(|c| c.name == "parked-payments")
        .unwrap();
    assert_eq!(parked.health.status, Status::Degraded);
    assert_eq!(
        get(&client, addr, "/health/ready", None).await,
        StatusCode::OK,
        "degraded is still ready"
    );

    // Then most calls fail: the success rate falls under 80 %.
    for _ in 0..30 {
        assert_eq!(
            get(&client, addr, "/fail", None).await,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    let report = pipeline.health.check().await;
    assert_eq!(report.status, Status::Unhealthy, "{report:?}");
    assert_eq!(
        get(&client, addr, "/health/ready", None).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn exports_spend_the_daily_credits_and_a_spent_budget_answers_429() {
    let (addr, pipeline, _) = start(|s| s.credits_per_day = 300).await;
    let client = http();
    let export = || {
        let client = client.clone();
        async move {
            let req = Request::post(format!("http://{addr}/exports"))
                .body(Full::default())
                .unwrap();
            client.request(req).await.unwrap()
        }
    };
    for _ in 0..3 {
        assert_eq!(export().await.status(), StatusCode::OK);
    }
    // 100 reserved each, 80 used: 240 spent; the next needs 100 more than the 60 left.
    assert_eq!(pipeline.credits.stats().spent, 240);
    let refused = export().await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        refused.headers().contains_key(http::header::RETRY_AFTER),
        "until midnight"
    );
    assert_eq!(
        refused.headers()["ratelimit-policy"],
        r#""limit";q=300;w=86400"#
    );
    let report = pipeline.health.check().await;
    let credits = report
        .components
        .iter()
        .find(|c| c.name == "credits")
        .unwrap();
    assert_eq!(credits.health.status, Status::Degraded, "80 % spent");
}
