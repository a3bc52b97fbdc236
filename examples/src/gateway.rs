//! Gateway aggregation with partial failure: one incoming request fanned out to several
//! downstreams, each behind its own timeout, circuit breaker and bulkhead, answered within one
//! overall deadline with what answered and the failed parts marked (as the API gateway of the
//! microservices write-up does). The `gateway` example runs it; `tests/tests/gateway.rs`
//! checks it against loopback downstreams.
//!
//! A pattern, not a library type: the parts differ too much between gateways (what a part's
//! answer is, whether one part is required) for one type to fit them all. What it shows:
//!
//! - every part runs at once, in its own task; the overall deadline cuts the slow ones (their
//!   tasks are dropped, so their connections and bulkhead permits are freed), and the answer
//!   goes out at the deadline at the latest;
//! - a part's failure never fails the whole: it is marked with why (its status, its
//!   timeout, its open circuit, its full bulkhead, the transport error);
//! - each part's breaker sees only that part's calls (its failures and its timeouts), so a
//!   dead or hanging downstream is soon refused without a connection (`circuit_open`), and
//!   the gateway's answer gets faster, not slower, as things break.
//!
//! Trade-off: a part's own timeout is what its breaker counts as slow or failed; the overall
//! deadline is the caller's and counts for no breaker (a part cut by it was not wrong, the
//! others were slow). Set each part's timeout below the overall deadline so that the breakers
//! learn.

use std::{
    collections::BTreeMap,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use rampart::{
    bulkhead::BulkheadLayer,
    circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer},
    core::{
        classify::HttpClassifier,
        error::BoxError,
        rejection::{Rejected, RejectionKind},
    },
    timeout::TimeoutLayer,
};
use tokio::{task::JoinSet, time::Instant};
use tower::{ServiceBuilder, ServiceExt, util::BoxCloneSyncService};

type PartService = BoxCloneSyncService<Request<Full<Bytes>>, Response<Bytes>, BoxError>;

/// How one downstream is reached and guarded.
#[derive(Debug, Clone)]
pub struct PartConfig {
    /// The part's name in the answer.
    pub name: &'static str,
    /// The URL it is fetched from (`GET`).
    pub url: String,
    /// Its own timeout: what its breaker counts as a failure.
    pub timeout: Duration,
    /// How many calls to it may be in flight at once (more are refused, not queued).
    pub max_concurrent: u32,
}

/// Why a part is missing from the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartFailure {
    /// The downstream answered with a failure status.
    Status(u16),
    /// The part's own timeout passed.
    TimedOut,
    /// Its breaker is open: not called.
    CircuitOpen,
    /// Its bulkhead is full: not called.
    BulkheadFull,
    /// The overall deadline passed first.
    Deadline,
    /// The call failed (refused, reset, …).
    Error(String),
}

impl PartFailure {
    /// A short name, for the answer.
    pub fn as_str(&self) -> &'static str {
        match self {
            PartFailure::Status(_) => "status",
            PartFailure::TimedOut => "timed_out",
            PartFailure::CircuitOpen => "circuit_open",
            PartFailure::BulkheadFull => "bulkhead_full",
            PartFailure::Deadline => "deadline",
            PartFailure::Error(_) => "error",
        }
    }
}

impl fmt::Display for PartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartFailure::Status(s) => write!(f, "answered {s}"),
            PartFailure::Error(e) => write!(f, "failed: {e}"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// What the gateway answers: every part, answered or marked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregate {
    /// The parts by name: the body of the ones that answered, why for the others.
    pub parts: BTreeMap<&'static str, Result<Bytes, PartFailure>>,
}

impl Aggregate {
    /// `true` if any part is missing.
    pub fn is_partial(&self) -> bool {
        self.parts.values().any(Result::is_err)
    }

    /// The answer as JSON: `{"partial": bool, "parts": {name: {"ok": body} | {"failed": why,
    /// "detail": text}}}`; a body that is not JSON is given as a string.
    pub fn to_json(&self) -> serde_json::Value {
        let parts: serde_json::Map<String, serde_json::Value> = self
            .parts
            .iter()
            .map(|(name, part)| {
                let value = match part {
                    Ok(body) => serde_json::json!({
                        "ok": serde_json::from_slice::<serde_json::Value>(body)
                            .unwrap_or_else(|_| String::from_utf8_lossy(body).into()),
                    }),
                    Err(why) => {
                        serde_json::json!({"failed": why.as_str(), "detail": why.to_string()})
                    }
                };
                ((*name).to_owned(), value)
            })
            .collect();
        serde_json::json!({"partial": self.is_partial(), "parts": parts})
    }
}

/// One guarded downstream.
#[derive(Clone)]
struct Part {
    name: &'static str,
    url: String,
    svc: PartService,
    breaker: CircuitBreakerHandle,
}

/// Fans a request out to its parts within one deadline.
#[derive(Clone)]
pub struct Gateway {
    parts: Vec<Part>,
    deadline: Duration,
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field(
                "parts",
                &self.parts.iter().map(|p| p.name).collect::<Vec<_>>(),
            )
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl Gateway {
    /// A gateway over `parts`, answering within `deadline`. Each part gets its stack: breaker
    /// (three failures in a row open it for 30 s), timeout (inside the breaker, so that the
    /// breaker counts a timeout as a failure; outside it, the breaker would only see its call
    /// dropped), bulkhead, then one shared HTTP client.
    pub fn new(parts: Vec<PartConfig>, deadline: Duration) -> Result<Self, BoxError> {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let parts = parts
            .into_iter()
            .map(|cfg| {
                let breaker = CircuitBreakerLayer::builder()
                    .name(cfg.name)
                    .consecutive_failures(3)
                    .open_duration(Duration::from_secs(30))
                    .layer()?
                    .classifier(HttpClassifier::default())
                    // A full bulkhead is the gateway's own overload, not the part's failure;
                    // the part's timeout (a rejection too) is counted: a deadline further in
                    // is a transient failure.
                    .ignore_rejections();
                let handle = breaker.handle();
                let bulkhead = BulkheadLayer::builder()
                    .name(cfg.name)
                    .max_concurrent(cfg.max_concurrent)
                    .layer()?;
                // The body is read inside the part's stack: its timeout covers a downstream
                // that sends its head and stalls, and its bulkhead permit is held until the
                // body is in.
                let fetch = client
                    .clone()
                    // An error type of its own (the layers' errors wrap it), for the client's
                    // error and the body's.
                    .map_err(std::io::Error::other)
                    .and_then(|res: Response<hyper::body::Incoming>| async move {
                        let (head, body) = res.into_parts();
                        let bytes = body.collect().await.map_err(std::io::Error::other)?;
                        Ok::<_, std::io::Error>(Response::from_parts(head, bytes.to_bytes()))
                    });
                let svc = ServiceBuilder::new()
                    .layer(breaker)
                    .layer(TimeoutLayer::new(cfg.timeout)?)
                    .layer(bulkhead)
                    .service(fetch)
                    .map_err(Into::<BoxError>::into);
                Ok(Part {
                    name: cfg.name,
                    url: cfg.url,
                    svc: BoxCloneSyncService::new(svc),
                    breaker: handle,
                })
            })
            .collect::<Result<Vec<_>, BoxError>>()?;
        Ok(Self { parts, deadline })
    }

    /// The breaker of the part named `name`.
    pub fn breaker(&self, name: &str) -> Option<&CircuitBreakerHandle> {
        self.parts
            .iter()
            .find(|p| p.name == name)
            .map(|p| &p.breaker)
    }

    /// Calls every part at once; answers when all have, or at the deadline with the ones that
    /// have not marked [`PartFailure::Deadline`].
    pub async fn fetch(&self) -> Aggregate {
        let deadline = Instant::now() + self.deadline;
        let mut tasks = JoinSet::new();
        let mut names = std::collections::HashMap::new();
        for part in &self.parts {
            let (name, svc, url) = (part.name, part.svc.clone(), part.url.clone());
            let task = tasks.spawn(async move { (name, call(svc, url).await) });
            names.insert(task.id(), name);
        }
        let mut out = Aggregate::default();
        loop {
            match tokio::time::timeout_at(deadline, tasks.join_next()).await {
                Ok(Some(Ok((name, result)))) => {
                    out.parts.insert(name, result);
                }
                // A part's task panicked: marked as failed, the others go on.
                Ok(Some(Err(join))) => {
                    if let Some(name) = names.get(&join.id()) {
                        out.parts.insert(
                            name,
                            Err(PartFailure::Error(format!("the part panicked: {join}"))),
                        );
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        // Dropping the set aborts the parts still running.
        drop(tasks);
        for part in &self.parts {
            out.parts
                .entry(part.name)
                .or_insert(Err(PartFailure::Deadline));
        }
        out
    }

    /// [`fetch`](Self::fetch) as an HTTP answer: `200` with the JSON of [`Aggregate`] (also
    /// when partial: the caller reads `partial`), `503` if no part answered.
    pub async fn answer(&self) -> Response<String> {
        let aggregate = self.fetch().await;
        let status = if aggregate.parts.values().any(Result::is_ok) {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        let mut res = Response::new(aggregate.to_json().to_string());
        *res.status_mut() = status;
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        res
    }
}

/// The example's downstreams on `127.0.0.1:0`: `/profile` answers `{"name":"ada"}`,
/// `/orders` fails with `500` (counted in the returned counter), `/stock` and
/// `/recommendations` take 3 s.
pub async fn downstreams() -> std::io::Result<(std::net::SocketAddr, Arc<AtomicUsize>)> {
    use axum::{Router, routing::get};
    let orders = Arc::new(AtomicUsize::new(0));
    let counted = orders.clone();
    let slow = || async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        "late"
    };
    let app = Router::new()
        .route("/profile", get(|| async { r#"{"name":"ada"}"# }))
        .route(
            "/orders",
            get(move || async move {
                counted.fetch_add(1, Ordering::SeqCst);
                StatusCode::INTERNAL_SERVER_ERROR
            }),
        )
        .route("/stock", get(slow))
        .route("/recommendations", get(slow));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, orders))
}

/// One part's call, its failure named.
async fn call(svc: PartService, url: String) -> Result<Bytes, PartFailure> {
    let req = Request::get(url)
        .body(Full::new(Bytes::new()))
        .map_err(|e| PartFailure::Error(e.to_string()))?;
    match svc.oneshot(req).await {
        Ok(res) if res.status().is_success() => Ok(res.into_body()),
        Ok(res) => Err(PartFailure::Status(res.status().as_u16())),
        Err(e) => Err(match Rejected::find(&*e).map(|r| r.kind()) {
            Some(RejectionKind::CircuitOpen) => PartFailure::CircuitOpen,
            Some(RejectionKind::BulkheadFull) => PartFailure::BulkheadFull,
            Some(RejectionKind::Timeout) => PartFailure::TimedOut,
            _ => PartFailure::Error(rampart::core::error::chain_line(&*e)),
        }),
    }
}
