//! Per-user isolation and batches that survive a bad item: two reference pipelines, which the
//! `per_user` example runs and `tests/tests/per_user.rs` checks.
//!
//! - **One breaker per user.** A breaker keyed by the `x-user` header: when one user's calls
//!   fail (her account's shard is down, say), only her breaker opens; every other user's calls
//!   go on, untouched by her failures.
//! - **A batch where one bad item stops nothing.** Each item is its own call, through a
//!   dead-letter layer: an item that fails is parked (and can be redriven later), the batch
//!   goes on, and it ends with what was done and what was parked, instead of an error that
//!   throws the finished work away.

use rampart::core::header::IDEMPOTENCY_KEY;
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, extract::Path, http::HeaderMap, routing::post};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rampart::core::sync::lock;
use rampart::{
    ServiceBuilderExt,
    circuit_breaker::{CircuitBreakerLayer, KeyedCircuitBreakerHandle, State},
    core::{body::ReplayBody, classify::HttpClassifier, error::BoxError, key::ByHeader},
    dead_letter::{DeadLetterId, DeadLetterLayer, DeadLetterStore, Parked},
};
use tower::{ServiceBuilder, ServiceExt};

/// The header that says who is calling.
pub const USER: http::HeaderName = http::HeaderName::from_static("x-user");

/// Calls the upstream received, per user (or per item, for the batch route).
pub type Received = Arc<Mutex<BTreeMap<String, u64>>>;

/// Starts an upstream on `127.0.0.1:0`: `POST /work` fails (`503`) for the users in
/// `failing`, and `POST /items/{n}` fails for the items in `bad_items`.
pub async fn upstream(
    failing: &'static [&'static str],
    bad_items: &'static [u32],
) -> std::io::Result<(SocketAddr, Received)> {
    let received: Received = Arc::default();
    let (r1, r2) = (received.clone(), received.clone());
    let app = Router::new()
        .route(
            "/work",
            post(move |headers: HeaderMap| async move {
                let user = headers
                    .get(&USER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let fails = failing.contains(&user.as_str());
                *lock(&r1).entry(user).or_default() += 1;
                if fails {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }),
        )
        .route(
            "/items/{n}",
            post(move |Path(n): Path<u32>| async move {
                *lock(&r2).entry(format!("item {n}")).or_default() += 1;
                if bad_items.contains(&n) {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, received))
}

/// What each user saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserReport {
    /// Calls answered `2xx`.
    pub ok: u64,
    /// Calls the upstream answered with a failure.
    pub failed: u64,
    /// Calls the user's open breaker refused without sending.
    pub rejected: u64,
    /// The user's breaker at the end.
    pub breaker: Option<State>,
}

/// Sends `calls` calls for each of `users`, interleaved, through one breaker per user (three
/// failures in a row open it, for 30 s), and reports what each user saw.
pub async fn isolate(
    addr: SocketAddr,
    users: &[&str],
    calls: u64,
) -> Result<BTreeMap<String, UserReport>, BoxError> {
    let breakers = CircuitBreakerLayer::builder()
        .name("work")
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(30))
        .keyed(ByHeader::new(USER))?
        .classifier(HttpClassifier::default());
    let handle: KeyedCircuitBreakerHandle<_, _> = breakers.handle();
    let transport: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let client = ServiceBuilder::new().layer(breakers).service(transport);

    let mut report: BTreeMap<String, UserReport> = BTreeMap::new();
    for _ in 0..calls {
        for user in users {
            let req = Request::post(format!("http://{addr}/work"))
                .header(&USER, *user)
                .body(Full::new(Bytes::new()))?;
            let seen = report.entry((*user).to_owned()).or_default();
            match client.clone().oneshot(req).await {
                Ok(res) if res.status().is_success() => seen.ok += 1,
                Ok(_) => seen.failed += 1,
                Err(rampart::core::error::PolicyError::Rejected(_)) => seen.rejected += 1,
                Err(_) => seen.failed += 1,
            }
        }
    }
    for (user, seen) in &mut report {
        let key = http::HeaderValue::from_str(user)?;
        seen.breaker = handle.get(&key).map(|b| b.state());
    }
    Ok(report)
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Items done.
    pub done: Vec<u32>,
    /// Items that failed and were parked, with their dead letter's id.
    pub parked: Vec<(u32, DeadLetterId)>,
    /// Items that failed and could not be parked (the store failed too): the caller still
    /// holds them.
    pub failed: Vec<u32>,
}

/// Processes `items`, each its own `POST /items/{n}`, through a dead-letter layer parking in
/// `store`: a failing item is parked and the batch goes on.
pub async fn batch(
    addr: SocketAddr,
    store: Arc<dyn DeadLetterStore>,
    items: impl IntoIterator<Item = u32>,
) -> Result<BatchReport, BoxError> {
    let transport: Client<HttpConnector, ReplayBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build_http();
    let client = ServiceBuilder::new()
        .dead_letter(DeadLetterLayer::builder("batch", store).build()?)
        .service(transport);
    let mut report = BatchReport::default();
    for n in items {
        // An idempotency key per item, derived from it: a redrive (or a rerun of the batch)
        // is recognised by the server.
        let req = Request::post(format!("http://{addr}/items/{n}"))
            .header(IDEMPOTENCY_KEY, format!("batch-7/item-{n}"))
            .body(Full::new(Bytes::from(format!("{{\"item\":{n}}}"))))?;
        match client.clone().oneshot(req).await {
            Ok(res) if res.status().is_success() => report.done.push(n),
            Ok(res) => match res.extensions().get::<rampart::dead_letter::ParkedAs>() {
                Some(parked) => report.parked.push((n, parked.0)),
                None => report.failed.push(n),
            },
            Err(e) => match rampart::core::error::find::<Parked>(&*e) {
                Some(parked) => report.parked.push((n, parked.id())),
                None => report.failed.push(n),
            },
        }
    }
    Ok(report)
}
