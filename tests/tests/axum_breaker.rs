//! A circuit breaker in a real axum server, called over loopback by a real HTTP client.
//!
//! Time is a `ManualClock` given to the breaker: no sleeps.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router, error_handling::HandleErrorLayer, extract::State as AxumState, http::StatusCode,
    routing::get,
};
use http_body_util::BodyExt;
use rampart::{
    ServiceBuilderExt,
    circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer, State},
    core::{classify::HttpClassifier, clock::ManualClock},
};
use rampart_tests::{HttpClient, http_client, serve};
use tower::ServiceBuilder;

const OPEN_FOR: Duration = Duration::from_secs(30);

/// The handlers' shared state: a switch that makes them fail, and a call count per route.
#[derive(Clone, Default)]
struct Backend {
    failing: Arc<AtomicBool>,
    calls_a: Arc<AtomicUsize>,
    calls_b: Arc<AtomicUsize>,
}

impl Backend {
    fn reply(&self, calls: &AtomicUsize) -> (StatusCode, &'static str) {
        calls.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            (StatusCode::INTERNAL_SERVER_ERROR, "backend failed")
        } else {
            (StatusCode::OK, "ok")
        }
    }

    fn calls(&self) -> usize {
        self.calls_a.load(Ordering::SeqCst) + self.calls_b.load(Ordering::SeqCst)
    }
}

fn breaker(clock: &ManualClock) -> CircuitBreakerLayer<HttpClassifier> {
    CircuitBreakerLayer::builder()
        .name("axum-e2e")
        .consecutive_failures(3)
        .open_duration(OPEN_FOR)
        .clock(clock.shared())
        .layer()
        .expect("valid config")
        .classifier(HttpClassifier::new())
}

/// Two routes behind one `Router::layer`: axum calls `layer()` once per route.
fn app(backend: Backend, breaker: CircuitBreakerLayer<HttpClassifier>) -> Router {
    Router::new()
        .route(
            "/a",
            get(|AxumState(b): AxumState<Backend>| async move { b.reply(&b.calls_a) }),
        )
        .route(
            "/b",
            get(|AxumState(b): AxumState<Backend>| async move { b.reply(&b.calls_b) }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(rampart::axum::RespondToErrorsLayer::new())
                .circuit_breaker(breaker),
        )
        .with_state(backend)
}

/// What the client saw: status, `Retry-After` (if any), body.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

async fn get_path(client: &HttpClient, addr: std::net::SocketAddr, path: &str) -> Seen {
    let uri = format!("http://{addr}{path}")
        .parse::<http::Uri>()
        .expect("uri");
    let res = client.get(uri).await.expect("HTTP request");
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get(http::header::RETRY_AFTER)
        .map(|v| v.to_str().expect("ascii").to_owned());
    let body = res.into_body().collect().await.expect("body").to_bytes();
    Seen {
        status,
        retry_after,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn rejected(retry_after: &str) -> Seen {
    Seen {
        status: 503,
        retry_after: Some(retry_after.to_owned()),
        body: format!(
            r#"{{"type":"urn:rampart:circuit-open","title":"Circuit open","status":503,"detail":"circuit breaker is open","retry_after":{retry_after}}}"#
        ),
    }
}

fn ok() -> Seen {
    Seen {
        status: 200,
        retry_after: None,
        body: "ok".to_owned(),
    }
}

fn drain(
    rx: &mut tokio::sync::broadcast::Receiver<rampart::circuit_breaker::Transition>,
) -> Vec<(State, State)> {
    std::iter::from_fn(|| rx.try_recv().ok())
        .map(|t| (t.from, t.to))
        .collect()
}

#[tokio::test]
async fn breaker_trips_rejects_with_retry_after_and_recovers() {
    let clock = ManualClock::new();
    let backend = Backend::default();
    let layer = breaker(&clock);
    let handle: CircuitBreakerHandle = layer.handle();
    let mut transitions = handle.subscribe();
    let addr = serve(app(backend.clone(), layer)).await;
    let client = http_client();

    // Healthy.
    assert_eq!(get_path(&client, addr, "/a").await, ok());

    // Three 500s in a row trip the breaker; each of them reached the handler.
    backend.failing.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(get_path(&client, addr, "/a").await.status, 500);
    }
    assert_eq!(backend.calls(), 4);
    assert_eq!(handle.state(), State::Open);

    // Open: 503 with Retry-After, and the handler is not called.
    for _ in 0..5 {
        assert_eq!(get_path(&client, addr, "/a").await, rejected("30"));
    }
    assert_eq!(
        backend.calls(),
        4,
        "no request reached the handler while open"
    );
    assert_eq!(handle.stats().rejections, 5);

    // Retry-After counts down with the breaker's clock, rounded up.
    clock.advance(Duration::from_millis(29_500));
    assert_eq!(get_path(&client, addr, "/a").await, rejected("1"));
    assert_eq!(backend.calls(), 4);

    // Open time over and the backend healthy again: probes go through and close the breaker
    // (two successes needed, by default).
    backend.failing.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_millis(500));
    assert_eq!(get_path(&client, addr, "/a").await, ok());
    assert_eq!(handle.state(), State::HalfOpen);
    assert_eq!(get_path(&client, addr, "/a").await, ok());
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(backend.calls(), 6);

    assert_eq!(
        drain(&mut transitions),
        vec![
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed),
        ]
    );
}

#[tokio::test]
async fn a_failed_probe_reopens() {
    let clock = ManualClock::new();
    let backend = Backend::default();
    let layer = breaker(&clock);
    let handle = layer.handle();
    let addr = serve(app(backend.clone(), layer)).await;
    let client = http_client();

    backend.failing.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        get_path(&client, addr, "/a").await;
    }
    assert_eq!(handle.state(), State::Open);

    clock.advance(OPEN_FOR);
    // The probe reaches the still-failing handler, and the breaker opens again at once.
    assert_eq!(get_path(&client, addr, "/a").await.status, 500);
    assert_eq!(backend.calls(), 4);
    assert_eq!(handle.state(), State::Open);
    assert_eq!(get_path(&client, addr, "/a").await.status, 503);
    assert_eq!(backend.calls(), 4);
}

#[tokio::test]
async fn one_breaker_is_shared_across_routes_and_connections() {
    let clock = ManualClock::new();
    let backend = Backend::default();
    let layer = breaker(&clock);
    let handle = layer.handle();
    let addr = serve(app(backend.clone(), layer)).await;
    // A new TCP connection per request: the server clones its service stack for each one.
    let client = http_client();

    // Failures spread over both routes count towards one breaker…
    backend.failing.store(true, Ordering::SeqCst);
    for path in ["/a", "/b", "/a"] {
        assert_eq!(get_path(&client, addr, path).await.status, 500);
    }
    assert_eq!(handle.state(), State::Open);
    assert_eq!(handle.stats().failures, 3);

    // …and once it is open, both routes are rejected without running their handlers.
    let (a, b) = (
        backend.calls_a.load(Ordering::SeqCst),
        backend.calls_b.load(Ordering::SeqCst),
    );
    for path in ["/b", "/a", "/b"] {
        assert_eq!(get_path(&client, addr, path).await, rejected("30"));
    }
    assert_eq!(backend.calls_a.load(Ordering::SeqCst), a);
    assert_eq!(backend.calls_b.load(Ordering::SeqCst), b);
}

#[tokio::test]
async fn route_layer_with_separate_layers_gives_separate_breakers() {
    let clock = ManualClock::new();
    let backend = Backend::default();
    let (layer_a, layer_b) = (breaker(&clock), breaker(&clock));
    let (handle_a, handle_b) = (layer_a.handle(), layer_b.handle());
    let guard = |layer| {
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(rampart::axum::handle_error))
            .circuit_breaker(layer)
    };
    let app = Router::new()
        .route(
            "/a",
            get(|AxumState(b): AxumState<Backend>| async move { b.reply(&b.calls_a) })
                .route_layer(guard(layer_a)),
        )
        .route(
            "/b",
            get(|AxumState(b): AxumState<Backend>| async move { b.reply(&b.calls_b) })
                .route_layer(guard(layer_b)),
        )
        .with_state(backend.clone());
    let addr = serve(app).await;
    let client = http_client();

    backend.failing.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        get_path(&client, addr, "/a").await;
    }
    assert_eq!(handle_a.state(), State::Open);
    assert_eq!(handle_b.state(), State::Closed);
    assert_eq!(get_path(&client, addr, "/a").await.status, 503);

    backend.failing.store(false, Ordering::SeqCst);
    assert_eq!(get_path(&client, addr, "/b").await, ok());
}
