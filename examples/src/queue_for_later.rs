//! Queue for later, drained on recovery: the reference pipeline the `drain` example runs and
//! `tests/tests/drain.rs` checks.
//!
//! While the upstream is down, each `POST /orders` is parked in the dead-letter store and the
//! caller is answered `202 Accepted` at once (the breaker opens after a few failures, so later
//! requests do not even try). A [`Drain`] worker waits on the breaker's handle; each time the
//! open time ends it sends one parked order as the breaker's probe, and once the upstream is
//! back the probe succeeds, the breaker closes, and the worker delivers the rest, paced, each
//! with the idempotency key its caller was given, so every order is placed exactly once.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rampart::{
    ServiceBuilderExt,
    circuit_breaker::{CircuitBreakerLayer, OpenDuration, Transition},
    core::{body::ReplayBody, classify::HttpClassifier, error::BoxError},
    dead_letter::{DeadLetter, DeadLetterLayer, DeadLetterStore, Drain, DrainHandle, Redrive},
    idempotency::IdempotencyKeyLayer,
};
use tower::{Layer, ServiceBuilder, ServiceExt};

use crate::{alert::Webhook, upstream::Upstream};

/// The breaker both the callers' stack and the drain go through: it opens after three
/// failures in a row, stays open 200 ms (doubling if it reopens, up to 2 s), and lets one probe
/// through when half-open. `on_open` is its alert.
pub fn breaker(
    on_open: impl Fn(&Transition) + Send + Sync + 'static,
) -> Result<CircuitBreakerLayer<HttpClassifier>, BoxError> {
    Ok(CircuitBreakerLayer::builder()
        .name("orders")
        .consecutive_failures(3)
        .open_duration_policy(OpenDuration::Exponential {
            base: Duration::from_millis(200),
            multiplier: 2.0,
            max: Duration::from_secs(2),
            jitter: 0.1,
        })
        .half_open_max_probes(1)
        .on_open(on_open)
        .layer()?
        // Judge answers by their status: a 503 is a failure (the default judges by `Result`).
        .classifier(HttpClassifier::default()))
}

/// The callers' stack: an idempotency key per order, then the dead-letter layer answering
/// `202 Accepted` for what it parks, then the breaker, then hyper's client.
pub fn client(
    store: Arc<dyn DeadLetterStore>,
    breaker: CircuitBreakerLayer<HttpClassifier>,
) -> Result<
    impl tower::Service<
        Request<Full<Bytes>>,
        Response = http::Response<rampart::dead_letter::DeadLetterBody<axum::body::Body>>,
        Error = BoxError,
        Future: Send,
    > + Clone
    + Send
    + 'static,
    BoxError,
> {
    let transport: Client<HttpConnector, ReplayBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build_http();
    Ok(ServiceBuilder::new()
        .idempotency_keys(IdempotencyKeyLayer::new())
        .dead_letter(
            DeadLetterLayer::builder("orders-client", store)
                .build()?
                .accept_for_later(),
        )
        // `202 Accepted` needs a body type with an empty default: axum's.
        .map_response(|res: http::Response<hyper::body::Incoming>| res.map(axum::body::Body::new))
        .circuit_breaker(breaker)
        .service(transport))
}

/// The drain worker: redrives through the same breaker (not through the dead-letter layer: a
/// redrive that fails again stays where it is, it is not parked twice), 200 sends a second at
/// most, 8 at once, given up after `max_redrives` (`on_give_up` fires).
pub fn drain(
    store: Arc<dyn DeadLetterStore>,
    breaker: &CircuitBreakerLayer<HttpClassifier>,
    max_redrives: u32,
    on_give_up: impl Fn(&DeadLetter) + Send + Sync + 'static,
) -> Result<DrainHandle, BoxError> {
    let transport: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let redrive = Redrive::builder(store, breaker.layer(transport))
        .rate(200.0)
        .concurrency(8)
        .max_redrives(max_redrives)
        .on_give_up(on_give_up)
        .build()?;
    Ok(Drain::builder(redrive, breaker.handle())
        .name("orders")
        .poll_interval(Duration::from_millis(250))
        .build()?
        .spawn())
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Orders sent by callers.
    pub sent: u64,
    /// Callers answered `202 Accepted` (their order parked).
    pub accepted: u64,
    /// Callers answered `201 Created` (the upstream was up).
    pub created: u64,
    /// Callers answered anything else, or with an error: orders the caller must handle.
    pub lost: u64,
    /// Orders the worker delivered.
    pub drained: u64,
    /// Redrives that failed: while the breaker was open only its probes went out, so this is
    /// about the number of times it probed, not the number of orders.
    pub redrives_failed: u64,
    /// Orders placed more than once at the upstream.
    pub duplicated: u64,
    /// Orders never placed at all.
    pub missing: u64,
}

/// Sends `orders` orders while the upstream is down, brings it back after `outage`, and waits
/// (up to `deadline`) until the worker has delivered every parked order. The breaker opening
/// and an order given up (after 5 redrives) are posted to `alerts`.
pub async fn run(
    store: Arc<dyn DeadLetterStore>,
    upstream: &Upstream,
    orders: u64,
    outage: Duration,
    deadline: Duration,
    alerts: &Webhook,
) -> Result<Report, BoxError> {
    let breaker = breaker(alerts.breaker_opened())?;
    let client = client(store.clone(), breaker.clone())?;
    let drain = drain(store.clone(), &breaker, 5, alerts.given_up())?;

    upstream.set_outage(true);
    let url = format!("http://{}/orders", upstream.addr());
    let mut report = Report {
        sent: 0,
        accepted: 0,
        created: 0,
        lost: 0,
        drained: 0,
        redrives_failed: 0,
        duplicated: 0,
        missing: 0,
    };
    for i in 0..orders {
        let req = Request::post(&url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(format!("{{\"item\":{i}}}"))))?;
        report.sent += 1;
        match client.clone().oneshot(req).await.map(|r| r.status()) {
            Ok(StatusCode::ACCEPTED) => report.accepted += 1,
            Ok(StatusCode::CREATED) => report.created += 1,
            _ => report.lost += 1,
        }
    }
    tokio::time::sleep(outage).await;
    upstream.set_outage(false);

    let waited = tokio::time::timeout(deadline, async {
        loop {
            let stats = store.stats().await?;
            if stats.backlog() == 0 {
                return Ok::<_, BoxError>(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    drain.stop();
    drain.stopped().await;
    waited.map_err(|_| format!("orders still parked after {deadline:?}"))??;

    let stats = drain.stats();
    report.drained = stats.delivered;
    report.redrives_failed = stats.failed;
    let effects = upstream.effects();
    report.duplicated = effects.values().filter(|&&n| n > 1).count() as u64;
    report.missing = (report.accepted + report.created).saturating_sub(effects.len() as u64);
    Ok(report)
}
