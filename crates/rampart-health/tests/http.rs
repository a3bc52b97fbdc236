//! The health endpoints in a real axum server on loopback, asked by a real HTTP client, while
//! a dependency (a second loopback listener) goes down and comes back, and a breaker opens.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report
#![cfg(all(feature = "axum", feature = "circuit-breaker"))]

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rampart_circuit_breaker::CircuitBreakerLayer;
use rampart_health::HealthRegistry;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

struct Answer {
    status: StatusCode,
    content_type: String,
    cache_control: String,
    json: Value,
}

async fn get(client: &HttpClient, addr: SocketAddr, path: &str) -> Answer {
    let res = client
        .get(format!("http://{addr}{path}").parse().unwrap())
        .await
        .unwrap();
    let status = res.status();
    let header = |name| {
        res.headers()
            .get(name)
            .map(|v: &http::HeaderValue| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (content_type, cache_control) = (header("content-type"), header("cache-control"));
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        content_type,
        cache_control,
        json: serde_json::from_slice(&body).unwrap(),
    }
}

/// The component named `name` in a report's JSON.
fn component<'a>(json: &'a Value, name: &str) -> Option<&'a Value> {
    json["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
}

#[tokio::test]
async fn ready_follows_a_dependency_down_and_back() {
    // The dependency: a listener the probe connects to.
    let dependency = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dependency_addr = dependency.local_addr().unwrap();

    let payments = CircuitBreakerLayer::builder()
        .name("payments")
        .layer()
        .unwrap();
    // No cache: every request sees the state of the moment.
    let health = HealthRegistry::builder().cache_for(Duration::ZERO).build();
    health.breaker("payments", payments.handle()).probe(
        "inventory-db",
        Duration::from_secs(2),
        move || async move { TcpStream::connect(dependency_addr).await.map(drop) },
    );

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app: axum::Router = health.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http();

    // 1. All up.
    let live = get(&client, addr, "/health/live").await;
    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(live.json["status"], "alive");
    let ready = get(&client, addr, "/health/ready").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.content_type, "application/json");
    assert_eq!(ready.cache_control, "no-store");
    assert_eq!(ready.json["status"], "healthy");
    assert_eq!(ready.json["components"], serde_json::json!([]));
    let detail = get(&client, addr, "/health").await;
    assert_eq!(detail.status, StatusCode::OK);
    assert_eq!(detail.json["status"], "healthy");
    let db = component(&detail.json, "inventory-db").unwrap();
    assert_eq!(
        (db["kind"].as_str(), db["status"].as_str()),
        (Some("probe"), Some("healthy"))
    );
    assert!(db["details"]["latency_ms"].is_number());
    assert_eq!(
        component(&detail.json, "payments").unwrap()["details"]["state"],
        "closed"
    );

    // 2. A breaker opens: degraded, still ready.
    payments.handle().force_open();
    let ready = get(&client, addr, "/health/ready").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json["status"], "degraded");
    let p = component(&ready.json, "payments").unwrap();
    assert_eq!(p["status"], "degraded");
    assert_eq!(p["reason"], "circuit forced open");
    assert!(
        component(&ready.json, "inventory-db").is_none(),
        "healthy ones are left out"
    );

    // 3. The dependency goes down: unhealthy, not ready, and the JSON says which.
    drop(dependency);
    let ready = get(&client, addr, "/health/ready").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json["status"], "unhealthy");
    let db = component(&ready.json, "inventory-db").unwrap();
    assert_eq!(db["status"], "unhealthy");
    assert!(db["reason"].as_str().unwrap().starts_with("probe failed: "));
    let detail = get(&client, addr, "/health").await;
    assert_eq!(detail.status, StatusCode::SERVICE_UNAVAILABLE);
    let db = component(&detail.json, "inventory-db").unwrap();
    assert!(
        db["details"]["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("refused"),
        "{db}"
    );
    assert_eq!(
        component(&detail.json, "payments").unwrap()["status"],
        "degraded"
    );
    // Liveness does not care.
    assert_eq!(
        get(&client, addr, "/health/live").await.status,
        StatusCode::OK
    );

    // 4. The dependency comes back on the same address: ready again.
    let dependency = TcpListener::bind(dependency_addr).await.unwrap();
    let ready = get(&client, addr, "/health/ready").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json["status"], "degraded");
    payments.handle().reset();
    let detail = get(&client, addr, "/health").await;
    assert_eq!(detail.status, StatusCode::OK);
    assert_eq!(detail.json["status"], "healthy");
    assert_eq!(
        component(&detail.json, "inventory-db").unwrap()["status"],
        "healthy"
    );
    drop(dependency);
}

#[tokio::test]
async fn the_router_merges_into_an_application_with_its_own_state() {
    #[derive(Clone)]
    struct AppState {
        greeting: &'static str,
    }
    let health = HealthRegistry::new();
    let app = axum::Router::new()
        .route(
            "/hello",
            axum::routing::get(
                |axum::extract::State(s): axum::extract::State<AppState>| async move { s.greeting },
            ),
        )
        .merge(health.router())
        .with_state(AppState { greeting: "hi" });

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    assert_eq!(
        get(&client, addr, "/health/ready").await.status,
        StatusCode::OK
    );
    let res = client
        .get(format!("http://{addr}/hello").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "hi");
}
