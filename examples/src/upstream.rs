//! A flaky upstream on loopback: the server the demo and the end-to-end chaos test drive.
//!
//! `POST /orders` is the effect: it is guarded by a server-side [`IdempotencyLayer`] and counts
//! each execution per `Idempotency-Key`, so duplicate effects can be counted. `GET /inventory`
//! has no effect. In front of both, a fault injector:
//!
//! | fault | what the client sees | effect |
//! |---|---|---|
//! | outage window ([`Upstream::set_outage`]) | `503` | none |
//! | server error | `503` | none |
//! | throttling | `429` with `Retry-After: 1` | none |
//! | slow response | the answer, [`Faults::slow_by`] late | done |
//! | reset after commit | the connection closes without a response | **done**, and stored for replay |
//!
//! The last one is the case idempotency keys exist for: the work happened, the client can't
//! know, and its retry must not do it again.

use rampart::core::header::{GRPC_RETRY_PUSHBACK_MS, IDEMPOTENCY_KEY};
use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, body::Body, extract::State, http::HeaderMap, routing::get, routing::post};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use rampart::core::error::BoxError;
use rampart::core::sync::lock;
use rampart_idempotency::{
    IdempotencyLayer, IdempotencyOutcome as Outcome, KeyPolicy, MemoryStore,
};
use tower::{Service, ServiceExt};

/// How often each fault happens, per request (0.0 to 1.0), and how slow "slow" is.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// `503` without doing anything.
    pub server_error: f64,
    /// `429` with `Retry-After: 1`.
    pub throttle: f64,
    /// The answer comes [`slow_by`](Self::slow_by) late.
    pub slow: f64,
    /// How late a slow answer is.
    pub slow_by: Duration,
    /// The work is done (and its response stored), then the connection is dropped.
    pub reset_after_commit: f64,
}

impl Faults {
    /// No faults.
    pub const NONE: Faults = Faults {
        server_error: 0.0,
        throttle: 0.0,
        slow: 0.0,
        slow_by: Duration::ZERO,
        reset_after_commit: 0.0,
    };
}

/// What the upstream did, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamStats {
    /// Requests received.
    pub requests: u64,
    /// `503`s during the outage window.
    pub outage_rejections: u64,
    /// Injected `503`s.
    pub server_errors: u64,
    /// Injected `429`s.
    pub throttled: u64,
    /// Slow answers.
    pub slow: u64,
    /// Connections dropped after the work was done.
    pub resets: u64,
    /// Retries answered from the idempotency store instead of running again: duplicate
    /// effects prevented.
    pub replays: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    outage_rejections: AtomicU64,
    server_errors: AtomicU64,
    throttled: AtomicU64,
    slow: AtomicU64,
    resets: AtomicU64,
    replays: AtomicU64,
}

struct Shared {
    /// Answer faults the gRPC way (trailers-only responses with a `grpc-status`).
    grpc: bool,
    faults: Faults,
    rng: Mutex<fastrand::Rng>,
    outage: AtomicBool,
    effects: Mutex<HashMap<String, u32>>,
    counters: Counters,
}

/// The running upstream. It serves until the runtime shuts down.
#[derive(Clone)]
pub struct Upstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Starts the upstream on `127.0.0.1:0` with `faults`, drawn from a generator seeded with
    /// `seed` (the same seed, the same faults for the same order of requests).
    pub async fn start(faults: Faults, seed: u64) -> std::io::Result<Upstream> {
        Self::start_with(faults, seed, false).await
    }

    /// The same upstream speaking gRPC over HTTP/2 (no code generation: messages are raw
    /// bytes): `/orders.Orders/Place` is the effect, `/orders.Orders/Stock` has none, and
    /// injected failures are trailers-only responses (`UNAVAILABLE`, `RESOURCE_EXHAUSTED` with
    /// `grpc-retry-pushback-ms`); a reset after commit resets the HTTP/2 stream.
    pub async fn start_grpc(faults: Faults, seed: u64) -> std::io::Result<Upstream> {
        Self::start_with(faults, seed, true).await
    }

    async fn start_with(faults: Faults, seed: u64, grpc: bool) -> std::io::Result<Upstream> {
        let shared = Arc::new(Shared {
            grpc,
            faults,
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            outage: AtomicBool::new(false),
            effects: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        });
        let store = MemoryStore::bounded(1_000_000).map_err(std::io::Error::other)?;
        let idempotency = IdempotencyLayer::builder(Arc::new(store))
            .name("orders")
            .policy(KeyPolicy::Required)
            .build()
            .map_err(std::io::Error::other)?;
        let app = if grpc {
            Router::new()
                .route("/orders.Orders/Place", post(grpc_place))
                .route("/orders.Orders/Stock", post(grpc_stock))
                .layer(idempotency)
                .with_state(shared.clone())
        } else {
            Router::new()
                .route("/orders", post(order).layer(idempotency))
                .route("/inventory", get(inventory))
                .with_state(shared.clone())
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let injector = Injector {
            app,
            shared: shared.clone(),
        };
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let svc = TowerToHyperService::new(injector.clone());
                tokio::spawn(async move {
                    // A connection dropped on purpose ends with an error: nothing to report.
                    if grpc {
                        let _ = hyper::server::conn::http2::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    }
                });
            }
        });
        Ok(Upstream { addr, shared })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts (`true`) or ends an outage: every request gets `503`.
    pub fn set_outage(&self, on: bool) {
        self.shared.outage.store(on, Ordering::SeqCst);
    }

    /// How many times each key's order was executed.
    pub fn effects(&self) -> HashMap<String, u32> {
        lock(&self.shared.effects).clone()
    }

    /// What it did so far.
    pub fn stats(&self) -> UpstreamStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        UpstreamStats {
            requests: get(&c.requests),
            outage_rejections: get(&c.outage_rejections),
            server_errors: get(&c.server_errors),
            throttled: get(&c.throttled),
            slow: get(&c.slow),
            resets: get(&c.resets),
            replays: get(&c.replays),
        }
    }
}

/// `POST /orders`: the effect, counted per key.
async fn order(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Response<Body> {
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let n = {
        let mut effects = lock(&shared.effects);
        let n = effects.entry(key).or_default();
        *n += 1;
        *n
    };
    let mut res = Response::new(Body::from(format!(
        "{{\"order\":{body},\"executions\":{n}}}"
    )));
    *res.status_mut() = StatusCode::CREATED;
    res
}

/// A gRPC response: the framed `message`, then `grpc-status: 0` in the trailers.
fn grpc_ok(message: Bytes) -> Response<Body> {
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0);
    framed.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    framed.extend_from_slice(&message);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let body = http_body_util::Full::new(Bytes::from(framed))
        .with_trailers(async move { Some(Ok::<_, Infallible>(trailers)) });
    let mut res = Response::new(Body::new(body));
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    res
}

/// `/orders.Orders/Place`: the effect, counted per key; answers with the request message.
async fn grpc_place(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    *lock(&shared.effects).entry(key).or_default() += 1;
    grpc_ok(body.slice(5.min(body.len())..))
}

/// `/orders.Orders/Stock`: no effect.
async fn grpc_stock() -> Response<Body> {
    grpc_ok(Bytes::from_static(b"{\"widgets\":42}"))
}

/// A trailers-only gRPC failure: `grpc-status` in the head, no body.
fn grpc_status(code: u8, pushback_ms: Option<&'static str>) -> Response<Body> {
    let mut res = Response::new(Body::empty());
    let h = res.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", http::HeaderValue::from(u16::from(code)));
    h.insert("grpc-message", http::HeaderValue::from_static("injected"));
    if let Some(ms) = pushback_ms {
        h.insert(GRPC_RETRY_PUSHBACK_MS, http::HeaderValue::from_static(ms));
    }
    res
}

/// `GET /inventory`: no effect.
async fn inventory() -> &'static str {
    "{\"widgets\":42}"
}

fn status(code: StatusCode, retry_after: Option<&'static str>) -> Response<Body> {
    let mut res = Response::new(Body::from(code.canonical_reason().unwrap_or("")));
    *res.status_mut() = code;
    if let Some(secs) = retry_after {
        res.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static(secs),
        );
    }
    res
}

/// The fault injector in front of the app.
#[derive(Clone)]
struct Injector {
    app: Router,
    shared: Arc<Shared>,
}

enum Fault {
    None,
    ServerError,
    Throttle,
    Slow,
    Reset,
}

impl Injector {
    fn draw(&self) -> Fault {
        let f = self.shared.faults;
        let x = lock(&self.shared.rng).f64();
        let mut edge = f.server_error;
        if x < edge {
            return Fault::ServerError;
        }
        edge += f.throttle;
        if x < edge {
            return Fault::Throttle;
        }
        edge += f.slow;
        if x < edge {
            return Fault::Slow;
        }
        edge += f.reset_after_commit;
        if x < edge {
            return Fault::Reset;
        }
        Fault::None
    }
}

impl Service<Request<hyper::body::Incoming>> for Injector {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Body>, BoxError>> + Send>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<hyper::body::Incoming>) -> Self::Future {
        let c = &self.shared.counters;
        c.requests.fetch_add(1, Ordering::Relaxed);
        let shared = self.shared.clone();
        let grpc = shared.grpc;
        if shared.outage.load(Ordering::SeqCst) {
            c.outage_rejections.fetch_add(1, Ordering::Relaxed);
            return Box::pin(async move {
                Ok(if grpc {
                    grpc_status(14, None)
                } else {
                    status(StatusCode::SERVICE_UNAVAILABLE, None)
                })
            });
        }
        let fault = self.draw();
        let app = self.app.clone();
        Box::pin(async move {
            let c = &shared.counters;
            match fault {
                Fault::ServerError => {
                    c.server_errors.fetch_add(1, Ordering::Relaxed);
                    return Ok(if grpc {
                        grpc_status(14, None)
                    } else {
                        status(StatusCode::SERVICE_UNAVAILABLE, None)
                    });
                }
                Fault::Throttle => {
                    c.throttled.fetch_add(1, Ordering::Relaxed);
                    return Ok(if grpc {
                        grpc_status(8, Some("200"))
                    } else {
                        status(StatusCode::TOO_MANY_REQUESTS, Some("1"))
                    });
                }
                Fault::Slow => {
                    c.slow.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(shared.faults.slow_by).await;
                }
                Fault::None | Fault::Reset => {}
            }
            let res = app
                .oneshot(req.map(Body::new))
                .await
                .unwrap_or_else(|e: Infallible| match e {});
            if matches!(res.extensions().get::<Outcome>(), Some(Outcome::Replayed)) {
                c.replays.fetch_add(1, Ordering::Relaxed);
            }
            if matches!(fault, Fault::Reset) {
                // The work is done and its response stored: now lose the connection.
                c.resets.fetch_add(1, Ordering::Relaxed);
                return Err("connection reset after commit (injected)".into());
            }
            Ok(res)
        })
    }
}
