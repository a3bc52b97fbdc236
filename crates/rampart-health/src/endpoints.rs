//! The HTTP endpoints, as axum handlers (feature `axum`).
//!
//! | path | answers |
//! |---|---|
//! | [`LIVE_PATH`] `/health/live` | `200` while the process runs and serves HTTP; checks nothing |
//! | [`READY_PATH`] `/health/ready` | `200` when healthy or degraded, `503` when unhealthy; the body is the [`HealthReport::summary`]: the overall status and the components that are not healthy, with their reasons |
//! | [`DETAIL_PATH`] `/health` | the same status codes; the body is the whole [`HealthReport`]: every component with its status, reason and details |
//!
//! Bodies are JSON (`application/json`), with `Cache-Control: no-store`. `HEAD` works as well
//! as `GET`.
//!
//! [`HealthRegistry::router`] mounts the three at these paths. To mount them elsewhere, route to
//! the handlers yourself, with the registry as the state (or reachable from your state through
//! `FromRef`):
//!
//! ```
//! use axum::{Router, routing::get};
//! use rampart_health::{HealthRegistry, endpoints};
//!
//! let registry = HealthRegistry::new();
//! let app: Router = Router::new()
//!     .route("/livez", get(endpoints::live))
//!     .route("/readyz", get(endpoints::ready))
//!     .route("/status", get(endpoints::detail))
//!     .with_state(registry);
//! # let _ = app;
//! ```
//!
//! Liveness checks nothing on purpose: a failing dependency is a reason to stop sending
//! traffic (readiness), never a reason to restart the process (liveness), which would not fix
//! the dependency and would lose the work in flight.

use axum::{
    Router,
    body::Body,
    extract::State,
    response::{IntoResponse, Response},
    routing::get,
};
use http::{
    HeaderValue, StatusCode,
    header::{CACHE_CONTROL, CONTENT_TYPE},
};
use serde::Serialize;

use crate::{registry::HealthRegistry, status::HealthReport};

/// Where [`HealthRegistry::router`] serves liveness.
pub const LIVE_PATH: &str = "/health/live";
/// Where [`HealthRegistry::router`] serves readiness.
pub const READY_PATH: &str = "/health/ready";
/// Where [`HealthRegistry::router`] serves the detailed view.
pub const DETAIL_PATH: &str = "/health";

/// Liveness: `200` with `{"status":"alive"}`, always.
pub async fn live() -> Response {
    json(StatusCode::OK, &serde_json::json!({ "status": "alive" }))
}

/// Readiness: checks the registry (or uses its cached report); `200` unless unhealthy, then
/// `503`. The body is the report's [`summary`](HealthReport::summary).
pub async fn ready(State(registry): State<HealthRegistry>) -> Response {
    let report = registry.check().await;
    json(code(&report), &report.summary())
}

/// The detailed view: checks the registry (or uses its cached report); `200` unless
/// unhealthy, then `503`. The body is the whole [`HealthReport`].
pub async fn detail(State(registry): State<HealthRegistry>) -> Response {
    let report = registry.check().await;
    json(code(&report), &*report)
}

fn code(report: &HealthReport) -> StatusCode {
    if report.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

fn json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut res = Response::new(Body::from(bytes));
            *res.status_mut() = status;
            let headers = res.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("health report could not be serialized: {e}"),
        )
            .into_response(),
    }
}

impl HealthRegistry {
    /// A router serving [`LIVE_PATH`], [`READY_PATH`] and [`DETAIL_PATH`] from this registry
    /// (see the [`endpoints`](crate::endpoints) module). It fits any application state: merge it
    /// into your router with `Router::merge`.
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        Router::new()
            .route(LIVE_PATH, get(live))
            .route(READY_PATH, get(ready))
            .route(DETAIL_PATH, get(detail))
            .with_state(self.clone())
    }
}
