//! An axum server protected by rampart: a bulkhead on the expensive route, server-side
//! idempotency on the route with an effect, a circuit breaker (with a fallback) around the
//! call to a downstream, and health endpoints that see all of them.
//!
//! ```text
//! cargo run -p rampart-examples --bin axum_server            # runs the tour below, then exits
//! cargo run -p rampart-examples --bin axum_server -- --serve # and then keeps serving
//! ```
//!
//! | route | protected by |
//! |---|---|
//! | `POST /orders` | `IdempotencyLayer` (key required): a retried order is answered from the store, not placed twice |
//! | `GET /report` | `BulkheadLayer`: 2 at a time, the rest get `503` problem+json at once |
//! | `GET /prices` | a `CircuitBreakerLayer` and a `FallbackLayer` around the downstream call: while the downstream is down, the last good prices, marked stale |
//! | `/health/live`, `/health/ready`, `/health` | `HealthRegistry`: breaker, bulkhead, a probe of the downstream |
#![allow(clippy::print_stdout)]

use rampart::core::header::IDEMPOTENCY_KEY;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    routing::{get, post},
};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use rampart::{
    ServiceBuilderExt,
    bulkhead::BulkheadLayer,
    circuit_breaker::CircuitBreakerLayer,
    core::{classify::HttpClassifier, error::BoxError},
    fallback::{FallbackLayer, LastGood},
    health::HealthRegistry,
    idempotency::{IdempotencyLayer, KeyPolicy, MemoryStore},
};
use tower::{ServiceBuilder, ServiceExt};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

/// The client to the downstream, boxed: a fallback over a breaker over `HttpClient`.
type PricesClient = tower::util::BoxCloneSyncService<
    Request<Empty<Bytes>>,
    http::Response<rampart::fallback::FallbackBody<hyper::body::Incoming>>,
    BoxError,
>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let serve_forever = std::env::args().any(|a| a == "--serve");

    // The downstream this server depends on, with a switch to take it down.
    let downstream_up = Arc::new(AtomicBool::new(true));
    let downstream = start(Router::new().route(
        "/prices",
        get({
            let up = downstream_up.clone();
            move || async move {
                if up.load(Ordering::SeqCst) {
                    (StatusCode::OK, "{\"widget\":9.99}")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "down")
                }
            }
        }),
    ))
    .await?;

    // The client to the downstream: a breaker, with a fallback outside it.
    let breaker = CircuitBreakerLayer::builder()
        .name("prices")
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(5))
        .layer()?
        .classifier(HttpClassifier::default());
    let bulkhead = BulkheadLayer::builder()
        .name("reports")
        .max_concurrent(2)
        .layer()?;
    let http: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let prices_client = ServiceBuilder::new()
        .fallback(
            FallbackLayer::builder()
                .cache(
                    LastGood::builder()
                        .fresh_for(Duration::from_secs(1))
                        .build()?,
                )
                .build(),
        )
        .map_err(
            |e: rampart::circuit_breaker::BreakerError<hyper_util::client::legacy::Error>| {
                e.into_box()
            },
        )
        .circuit_breaker(breaker.clone())
        .service(http.clone());
    let prices_client = PricesClient::new(prices_client);

    // Health: the breaker, the bulkhead, and a probe of the downstream.
    let health = HealthRegistry::new();
    health
        .breaker("prices", breaker.handle())
        .bulkhead("reports", bulkhead.handle())
        .probe("downstream", Duration::from_millis(500), {
            let http = http.clone();
            move || {
                let http = http.clone();
                async move {
                    let uri = format!("http://{downstream}/prices").parse::<http::Uri>()?;
                    http.get(uri).await?;
                    Ok::<_, BoxError>(())
                }
            }
        });

    let placed = Arc::new(AtomicU32::new(0));
    let idempotency = IdempotencyLayer::builder(Arc::new(MemoryStore::bounded(100_000)?))
        .name("orders")
        .policy(KeyPolicy::Required)
        .build()?;
    let app = Router::new()
        .route(
            "/orders",
            post({
                let placed = placed.clone();
                move |body: String| async move {
                    let n = placed.fetch_add(1, Ordering::SeqCst) + 1;
                    (StatusCode::CREATED, format!("order #{n}: {body}"))
                }
            })
            .layer(idempotency),
        )
        .route(
            "/report",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "a long report"
            })
            .layer(
                ServiceBuilder::new()
                    .layer(rampart::axum::RespondToErrorsLayer::new())
                    .bulkhead(bulkhead),
            ),
        )
        .route(
            "/prices",
            get(move || {
                let client = prices_client.clone();
                async move {
                    prices(client, downstream)
                        .await
                        .unwrap_or_else(|e| format!("no prices: {e}"))
                }
            }),
        )
        .merge(health.router());
    let addr = start(app).await?;
    println!("axum server with rampart on http://{addr}\n");

    // The tour.
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let send = |method: &str, path: &str, key: Option<&str>| {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        if let Some(k) = key {
            req = req.header(IDEMPOTENCY_KEY, k);
        }
        let req = req.body(Full::new(Bytes::from_static(b"{\"widgets\":3}")));
        let client = client.clone();
        async move {
            let res = client.request(req?).await?;
            let status = res.status();
            let replayed = res.headers().contains_key("idempotent-replayed");
            let body = res.into_body().collect().await?.to_bytes();
            Ok::<_, BoxError>((
                status,
                replayed,
                String::from_utf8_lossy(&body).into_owned(),
            ))
        }
    };

    println!("1. POST /orders twice with one Idempotency-Key: placed once");
    for _ in 0..2 {
        let (status, replayed, body) = send("POST", "/orders", Some("order-42")).await?;
        println!("   {status} replayed={replayed}  {body}");
    }
    let (status, _, body) = send("POST", "/orders", None).await?;
    println!("   without a key: {status} {body}");
    println!("   orders placed: {}\n", placed.load(Ordering::SeqCst));

    println!("2. GET /report, 4 at once through a bulkhead of 2");
    let reports: Vec<_> = (0..4).map(|_| send("GET", "/report", None)).collect();
    for r in futures_join(reports).await {
        let (status, _, body) = r?;
        println!("   {status} {body}");
    }

    println!("\n3. GET /prices, then the downstream goes down");
    println!("   {}", send("GET", "/prices", None).await?.2);
    downstream_up.store(false, Ordering::SeqCst);
    for _ in 0..4 {
        println!("   {}", send("GET", "/prices", None).await?.2);
    }
    println!("   breaker: {}", breaker.handle().state());

    println!("\n4. GET /health/ready and /health");
    let (status, _, body) = send("GET", "/health/ready", None).await?;
    println!("   /health/ready {status} {body}");
    let (status, _, body) = send("GET", "/health", None).await?;
    println!("   /health {status} {}", &body[..body.len().min(300)]);

    if serve_forever {
        println!("\nserving on http://{addr} (Ctrl-C to stop)");
        std::future::pending::<()>().await;
    }
    Ok(())
}

/// Calls the downstream through the breaker and the fallback; says if a fallback answered.
async fn prices(
    client: PricesClient,
    downstream: std::net::SocketAddr,
) -> Result<String, BoxError> {
    let req = Request::get(format!("http://{downstream}/prices")).body(Empty::new())?;
    let res = client.oneshot(req).await?;
    let marker = res
        .headers()
        .get(rampart::fallback::FALLBACK)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = res.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    Ok(match marker {
        Some(m) => format!("{text} (fallback: {m})"),
        None => text,
    })
}

/// Awaits every future, in order.
async fn futures_join<F>(futs: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

async fn start(app: Router) -> Result<std::net::SocketAddr, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}
