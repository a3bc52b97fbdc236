//! The payments API of the write-ups, as one pipeline: what they name, wired together. The
//! `pipeline` example runs it; `tests/tests/pipeline.rs` checks each part.
//!
//! | piece | here |
//! |---|---|
//! | priority bulkhead 10/5/2 | `critical` 10 (borrowing), `normal` 5, `bulk` 2, 20 in all (3 shared), by `x-priority` (set by the gateway in front); no queue: a full class is refused at once with `503` and `Retry-After` |
//! | timeout classes | `request` 2 s (the default), `report` for `/reports/*` (1 s by default), `payment` 5 s for `POST /payments` |
//! | success-rate health | every API call (not the health routes) counted; below 95 % degraded, below 80 % unhealthy |
//! | dead-letter backlog health | a payment the processor cannot take is parked (SQLite by default) and answered `202`; a backlog over the threshold (100 by default) is degraded |
//! | credit budget | `POST /exports` spends credits from a daily budget (500 by default, from midnight UTC): 100 reserved per export, settled to what the handler reports in `x-credits-used`; a spent budget answers `429` until midnight, and health is degraded from 80 % spent |
//!
//! Outermost first: success rate (it sees what callers see, rejections included), the error
//! handler that turns rampart rejections into `503`/`504`, the timeout by class, the
//! priority bulkhead, the routes. The timeout is outside the bulkhead so that a request's
//! deadline counts its wait for a permit too (here there is no wait: the bulkhead fails
//! fast).

use rampart::core::header::IDEMPOTENCY_KEY;
use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::State,
    routing::{get, post},
};
use bytes::Bytes;
use http::{HeaderName, Request, StatusCode};
use http_body_util::Full;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rampart::{
    ServiceBuilderExt,
    bulkhead::{BulkheadHandle, BulkheadLayer, PriorityHeader},
    core::{body::ReplayBody, error::BoxError},
    dead_letter::{DeadLetterLayer, DeadLetterStore, ParkedAs},
    health::{BudgetCheck, DeadLetterCheck, HealthRegistry, SuccessRate, SuccessRateLayer},
    rate_limit::{
        budget::{Budget, BudgetHandle, BudgetLayer, CostHeader, Period},
        cost_fn,
    },
    timeout::{RequestHead, TimeoutLayer},
};
use tokio::sync::watch;
use tower::{ServiceBuilder, ServiceExt};

/// The header the gateway in front names a request's priority class in.
pub const PRIORITY: HeaderName = HeaderName::from_static("x-priority");

/// Settings of the pipeline.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The payment processor the API forwards `POST /payments` to.
    pub processor: SocketAddr,
    /// The `report` class's timeout.
    pub report_timeout: Duration,
    /// The dead-letter backlog over which health is degraded.
    pub backlog_threshold: u64,
    /// How long a health report is reused (1 s in production; zero in the tests).
    pub health_cache: Duration,
    /// The daily credit budget of `POST /exports`.
    pub credits_per_day: u64,
}

impl Settings {
    /// The write-ups' numbers: `report` 1 s, a backlog of 100, health cached for 1 s.
    pub fn new(processor: SocketAddr) -> Self {
        Self {
            processor,
            report_timeout: Duration::from_secs(1),
            backlog_threshold: 100,
            health_cache: Duration::from_secs(1),
            credits_per_day: 500,
        }
    }
}

/// What the pipeline's owner holds: the handles the health view also reads, and the gate the
/// work route waits on.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The priority bulkhead.
    pub bulkhead: BulkheadHandle,
    /// The calls' success rate.
    pub success_rate: SuccessRate,
    /// The export credits.
    pub credits: BudgetHandle,
    /// The health view.
    pub health: HealthRegistry,
    /// `GET /work` answers once this is `true` (it starts open): a test holds requests in
    /// flight by closing it.
    pub gate: watch::Sender<bool>,
}

/// The operation class of a request: `report` for `/reports/*`, `payment` for
/// `POST /payments`, else `request`.
fn operation_class(head: &RequestHead<'_>) -> &'static str {
    let path = head.uri.path();
    if path.starts_with("/reports/") {
        "report"
    } else if path == "/payments" && head.method == http::Method::POST {
        "payment"
    } else {
        "request"
    }
}

#[derive(Clone)]
struct AppState {
    gate: watch::Receiver<bool>,
    payments: PaymentsClient,
    processor: SocketAddr,
}

type PaymentsClient = tower::util::BoxCloneSyncService<
    Request<Full<Bytes>>,
    http::Response<rampart::dead_letter::DeadLetterBody<hyper::body::Incoming>>,
    BoxError,
>;

/// Builds the API over `store` (where unprocessed payments are parked).
pub fn app(
    settings: &Settings,
    store: Arc<dyn DeadLetterStore>,
) -> Result<(Router, Pipeline), BoxError> {
    let bulkhead = BulkheadLayer::builder()
        .name("payments-api")
        .borrowing_class("critical", 10)
        .class("normal", 5)
        .class("bulk", 2)
        .capacity(20)
        .default_class("normal")
        .layer()?
        .prioritize(PriorityHeader::new(PRIORITY));
    let timeouts = TimeoutLayer::builder()
        .class("request", Duration::from_secs(2))
        .class("report", settings.report_timeout)
        .class("payment", Duration::from_secs(5))
        .classify(operation_class)
        .layer()?;
    let success_rate = SuccessRate::new();

    // The client to the processor: a payment it does not take is parked.
    let transport: Client<HttpConnector, ReplayBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build_http();
    let payments = ServiceBuilder::new()
        .dead_letter(DeadLetterLayer::builder("payments", store.clone()).build()?)
        .service(transport);
    let payments = PaymentsClient::new(payments);

    // Exports cost credits: 100 reserved, settled to what the export reports.
    let credits =
        BudgetLayer::new(Budget::new(settings.credits_per_day, Period::day()).name("credits"))?
            .estimate(cost_fn(|_: &Request<axum::body::Body>| 100))
            .settle(CostHeader::new(CREDITS_USED));

    let health = HealthRegistry::builder()
        .name("payments-api")
        .cache_for(settings.health_cache)
        .build();
    health
        .bulkhead("payments-api", bulkhead.handle())
        .success_rate("api", success_rate.clone())
        .component("credits", BudgetCheck::new(credits.handle()))
        .component(
            "parked-payments",
            DeadLetterCheck::new(store).backlog_threshold(settings.backlog_threshold),
        );

    let (gate, gate_rx) = watch::channel(true);
    let state = AppState {
        gate: gate_rx,
        payments,
        processor: settings.processor,
    };
    let api = Router::new()
        .route("/work", get(work))
        .route("/reports/{name}", get(report))
        .route("/payments", post(pay))
        .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .route(
            "/exports",
            post(export).layer(
                ServiceBuilder::new()
                    .layer(rampart::axum::RespondToErrorsLayer::new())
                    .layer(credits.clone()),
            ),
        )
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SuccessRateLayer::new(success_rate.clone()))
                .layer(rampart::axum::RespondToErrorsLayer::new())
                .timeouts(timeouts)
                .bulkhead(bulkhead.clone()),
        );
    let app = api.merge(health.router());
    let pipeline = Pipeline {
        bulkhead: bulkhead.handle(),
        success_rate,
        credits: credits.handle(),
        health,
        gate,
    };
    Ok((app, pipeline))
}

/// The header an export reports the credits it used in.
pub const CREDITS_USED: HeaderName = HeaderName::from_static("x-credits-used");

/// An export: uses 80 credits.
async fn export() -> ([(HeaderName, &'static str); 1], &'static str) {
    ([(CREDITS_USED, "80")], "exported")
}

/// Work that waits on the gate, then answers.
async fn work(State(state): State<AppState>) -> &'static str {
    let mut gate = state.gate.clone();
    // The sender lives in the pipeline; if it is gone, nothing will close the gate again.
    let _ = gate.wait_for(|open| *open).await;
    "done"
}

/// A report that takes 1.5 s to build: longer than the `report` class allows by default.
async fn report() -> &'static str {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    "the report"
}

/// Forwards a payment to the processor; parked (and `202`) if the processor fails it.
async fn pay(
    State(state): State<AppState>,
    headers: http::HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let mut req = Request::post(format!("http://{}/charge", state.processor));
    if let Some(key) = headers.get(IDEMPOTENCY_KEY) {
        req = req.header(IDEMPOTENCY_KEY, key);
    }
    let Ok(req) = req.body(Full::new(body)) else {
        return (StatusCode::BAD_REQUEST, "bad request".into());
    };
    match state.payments.oneshot(req).await {
        Ok(res) if res.status().is_success() => (StatusCode::CREATED, "charged".into()),
        Ok(res) => match res.extensions().get::<ParkedAs>() {
            Some(parked) => (StatusCode::ACCEPTED, format!("queued as {}", parked.0)),
            None => (
                StatusCode::BAD_GATEWAY,
                format!("processor answered {}", res.status()),
            ),
        },
        Err(e) => match rampart::core::error::find::<rampart::dead_letter::Parked>(&*e) {
            Some(parked) => (StatusCode::ACCEPTED, format!("queued as {}", parked.id())),
            None => (StatusCode::BAD_GATEWAY, format!("not charged: {e}")),
        },
    }
}

/// A payment processor on `127.0.0.1:0` that is down: every charge answers `503`.
pub async fn processor_down() -> std::io::Result<SocketAddr> {
    let app = Router::new().route(
        "/charge",
        post(|| async { StatusCode::SERVICE_UNAVAILABLE }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// Serves `app` on `127.0.0.1:0`.
pub async fn serve(app: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}
