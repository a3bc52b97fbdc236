//! A health view for services built with rampart: it tells **healthy** from **degraded** from
//! **unhealthy**, from the state of circuit breakers, bulkheads, dead-letter backlogs,
//! readiness probes and success rates, and serves it as `/health/live`, `/health/ready` and a
//! detailed JSON `/health` (axum), or as a gRPC serving status (tonic-health).
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use axum::Router;
//! use rampart_circuit_breaker::CircuitBreakerLayer;
//! use rampart_dead_letter::MemoryStore;
//! use rampart_health::{HealthRegistry, Status, SuccessRate};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let payments = CircuitBreakerLayer::builder().name("payments").layer()?;
//! let dead_letters = Arc::new(MemoryStore::bounded(10_000)?);
//! let requests = SuccessRate::new(); // feed it with a `SuccessRateLayer`
//!
//! let health = HealthRegistry::new();
//! health
//!     .breaker("payments", payments.handle())
//!     .dead_letters("webhooks", dead_letters)
//!     .success_rate("requests", requests)
//!     .probe("database", Duration::from_secs(1), || async {
//!         // e.g. `SELECT 1` on the pool
//!         Ok::<_, std::io::Error>(())
//!     });
//!
//! // GET /health/live, /health/ready and /health
//! let app: Router = Router::new().merge(health.router());
//! # let _ = app;
//!
//! payments.handle().force_open();
//! let report = health.check().await;
//! assert_eq!(report.status, Status::Degraded); // still ready: /health/ready answers 200
//! assert_eq!(report.component("payments").unwrap().health.reason.as_deref(), Some("circuit forced open"));
//! # Ok(())
//! # }
//! ```
//!
//! # Rules
//!
//! The overall status is the worst component status. Degraded still serves (`/health/ready`
//! is `200`, gRPC `SERVING`); unhealthy does not (`503`, `NOT_SERVING`).
//!
//! | component | healthy | degraded | unhealthy |
//! |---|---|---|---|
//! | circuit breaker ([`BreakerCheck`], [`KeyedBreakerCheck`]) | closed (or forced closed) | open, forced open, or half-open | never |
//! | bulkhead ([`BulkheadCheck`]) | a permit free, no rejection since the previous check | full, or rejected calls since the previous check | never |
//! | dead-letter store ([`DeadLetterCheck`]) | backlog (pending + redriving) ≤ threshold (100) | backlog > threshold, or the store did not answer | never |
//! | cost budget (`BudgetCheck`, feature `rate-limit`) | under 80 % spent | 80 % or more spent, or spent | never |
//! | readiness probe ([`Probe`]) | `Ok` within its timeout | (with [`Probe::failure_status`]) | `Err`, panic or timeout |
//! | success rate ([`SuccessRate`]) | > 95 %, or too few calls (< 10) to judge | > 80 % | ≤ 80 % |
//! | your own ([`Component`]) | as it says | as it says | as it says |
//!
//! Each component's JSON entry carries its details: breaker state and failure rate, bulkhead
//! permits in use and limit, dead-letter backlog and the age of its oldest record, probe
//! latency and error, success rate and call counts.
//!
//! # Trade-offs
//!
//! - **Only probes make a service unhealthy by default.** An open breaker, a full bulkhead and
//!   a dead-letter backlog are rampart doing its job while a dependency is down: the instance
//!   still serves what it can, often from a fallback. Every instance shares those dependencies,
//!   so failing readiness on them would take every instance out of rotation at once and turn a
//!   partial outage into a total one. They are degraded: visible, alertable, still ready.
//! - **Probe what is this instance's own to lose**: its connection pool, a sidecar, a local
//!   disk. A probe failure means *this* instance should get no traffic.
//! - **A store that cannot answer is degraded, not unhealthy**: dead letters are off the request
//!   path. Add a probe for the store if your service cannot work without it.
//! - **Success rate is judged only over enough calls** (default 10 in the window), so one
//!   failed call at 3 a.m. does not flip the service. When it measures this service's own
//!   traffic, an instance taken out of rotation gets no calls, its window empties and it
//!   judges healthy again once the window has slid past the failures: readiness recovers by
//!   itself, and a real fault shows again as soon as traffic returns.
//! - **Reports are cached for 1 s** by default, and concurrent requests share one check, so
//!   many pollers cost one round of probes per interval; see
//!   [caching](HealthRegistry#caching).
//! - **Liveness checks nothing**: restarting a process never fixes its dependencies.
//!
//! # Endpoints
//!
//! See the [`endpoints`] module (feature `axum`): paths, status codes, bodies, and how to
//! mount the handlers at other paths.
//!
//! # gRPC
//!
//! `HealthRegistry::report_to` (feature `grpc`) keeps a service's status in a
//! `tonic_health::server::HealthReporter` in step with the registry, so gRPC clients and load
//! balancers using the standard `grpc.health.v1.Health` service see `SERVING` /
//! `NOT_SERVING`.
//!
//! # Features
//!
//! | feature | default | gives |
//! |---|---|---|
//! | `circuit-breaker` | yes | [`HealthRegistry::breaker`], [`HealthRegistry::keyed_breakers`] |
//! | `bulkhead` | yes | [`HealthRegistry::bulkhead`] |
//! | `dead-letter` | yes | [`HealthRegistry::dead_letters`] |
//! | `axum` | yes | [`HealthRegistry::router`] and the [`endpoints`] handlers |
//! | `grpc` | no | `HealthRegistry::report_to` and `Status::serving_status` (tonic-health) |
//!
//! # Observability
//!
//! Status changes are `tracing` events (target `rampart::health`); the gauges
//! `rampart_health_status{name}` and `rampart_health_component_status{name, component}` (`name` is the registry's)
//! are 0 healthy, 1 degraded, 2 unhealthy. See [`HealthRegistry`].

#[cfg(feature = "circuit-breaker")]
mod breaker;
#[cfg(feature = "rate-limit")]
mod budget;
#[cfg(feature = "bulkhead")]
mod bulkhead;
mod component;
#[cfg(feature = "dead-letter")]
mod dead_letter;
#[cfg(feature = "axum")]
pub mod endpoints;
mod future;
#[cfg(feature = "grpc")]
mod grpc;
mod layer;
mod probe;
mod readiness;
mod registry;
mod service;
mod status;
mod success_rate;

#[cfg(feature = "circuit-breaker")]
pub use crate::breaker::{BreakerCheck, KeyedBreakerCheck, SharedBreakersCheck};
#[cfg(feature = "rate-limit")]
pub use crate::budget::BudgetCheck;
#[cfg(feature = "bulkhead")]
pub use crate::bulkhead::BulkheadCheck;
#[cfg(feature = "dead-letter")]
pub use crate::dead_letter::DeadLetterCheck;
pub use crate::{
    component::{BoxFuture, Component},
    future::{Recorder, ResponseFuture},
    layer::{ServerErrors, SuccessRateLayer},
    probe::Probe,
    readiness::HealthReadiness,
    registry::{HealthRegistry, HealthRegistryBuilder},
    service::SuccessRateService,
    status::{ComponentHealth, ComponentReport, HealthReport, Status},
    success_rate::{SuccessRate, SuccessRateBuilder, SuccessRateSnapshot},
};
