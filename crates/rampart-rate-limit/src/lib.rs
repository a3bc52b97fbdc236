//! Rate limits for tower services: GCRA with a burst, a cost per call, one limit for every
//! call or one per key (tenant, host, route) in a bounded registry, run-time quota changes,
//! shadow mode, and a bounded wait.
//!
//! ```
//! use std::time::Duration;
//! use rampart_core::rejection::{LimitReason, RateLimited};
//! use rampart_rate_limit::{Quota, RateLimitLayer};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // 10 a second, 3 at once.
//! let limit = RateLimitLayer::new(Quota::per_second(10).burst(3)).unwrap();
//! let svc = limit.layer(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }));
//!
//! for n in 0..3 {
//!     assert_eq!(svc.clone().oneshot(n).await.unwrap(), n); // the burst
//! }
//! let refused = svc.clone().oneshot(3).await.unwrap_err();
//! let refused: &RateLimited = refused.rejection().unwrap();
//! assert_eq!(refused.reason(), LimitReason::OverLimit);
//! assert_eq!(refused.retry_after(), Some(Duration::from_millis(100)));
//!
//! tokio::time::advance(Duration::from_millis(100)).await;
//! assert!(svc.oneshot(4).await.is_ok()); // one more unit every 100 ms
//! # }
//! ```
//!
//! # The algorithm
//!
//! GCRA (as governor and redis-cell): each limit is one atomic word, the *theoretical arrival
//! time*; a call costing `c` moves it `c × interval` ahead and is admitted while it stays
//! within `burst × interval` of now. Arithmetic is in whole nanoseconds with the interval
//! rounded up, so the limit is never exceeded (it may admit a unit a nanosecond later than the
//! exact rate would); over any window `w` the admitted cost is at most
//! `burst + w / interval` (a property test checks it over random call sequences).
//!
//! # Cost, waiting and shadow mode
//!
//! - [`cost`](RateLimitLayer::cost): a call spends what a [`Cost`] says ([`cost_fn`]); one
//!   that costs more than the burst can never fit and is refused at once
//!   ([`LimitReason::CostTooHigh`](rampart_core::rejection::LimitReason::CostTooHigh)).
//! - [`max_wait`](RateLimitBuilder::max_wait): a call over the limit waits its turn (its cost
//!   reserved, so callers are served in order) if that takes at most `max_wait`; otherwise,
//!   and by default, it is refused at once.
//! - [`shadow`](RateLimitBuilder::shadow): decide and count, never refuse; a refusal it would
//!   have made spends nothing, so the counts are what enforcing would do.
//!
//! # Keys
//!
//! [`keyed`](RateLimitBuilder::keyed) keeps one limit per key from a `rampart_core::key`
//! extractor, in a registry bounded by [`max_keys`](RateLimitBuilder::max_keys): a key whose
//! debt is paid (its limit full again) can be forgotten, costing nothing; a key still in debt
//! is kept, because forgetting it would grant it a fresh burst. A new key that finds the
//! registry full of keys in debt, and a request without a key, share one overflow limit:
//! the trade-off is that such callers limit each other, never that they go unlimited.
//!
//! # Refusals
//!
//! A refusal is a [`RateLimited`](rampart_core::rejection::RateLimited) in
//! `PolicyError::Rejected`, with `retry_after` and the quota. rampart's axum mapping answers
//! `429 Too Many Requests` with `Retry-After` and the IETF `RateLimit-Policy`/`RateLimit`
//! headers; its tonic mapping, `RESOURCE_EXHAUSTED` with `grpc-retry-pushback-ms`.
//!
//! # Metrics
//!
//! `rampart_rate_limit_decisions_total{name, outcome=admitted|waited|rejected|shadow_rejected}`.
//!
//! # Cost budgets
//!
//! [`budget`]: so many units per period (500 credits a day from local midnight), an estimate
//! reserved before each call and the actual cost settled after, alerts at thresholds.
//!
//! # Shared by every replica
//!
//! [`RemoteRateLimitLayer`] decides each call with a [`RemoteLimit`]: rampart-redis's
//! `RedisRateLimiter` is one (one atomic script per call on Redis's clock, with a local
//! fallback when Redis does not answer).
//!
//! # Not yet here
//!
//! Budgets kept across restarts.

pub mod budget;
mod config;
mod cost;
mod future;
mod gcra;
mod handle;
mod layer;
mod limiter;
mod quota;
mod remote;
mod service;
mod state;

pub use crate::{
    config::RateLimitBuilder,
    cost::{Cost, CostFn, UnitCost, cost_fn},
    future::ResponseFuture,
    handle::RateLimitHandle,
    layer::RateLimitLayer,
    limiter::{HasCore, KeyedLimit, Limit, SingleLimit},
    quota::Quota,
    remote::{RemoteFuture, RemoteLimit, RemoteRateLimit, RemoteRateLimitLayer},
    service::RateLimit,
    state::RateLimitStats,
};

/// The error of a [`RateLimit`] service: the refusal, or the inner service's error.
pub type RateLimitError<E> =
    rampart_core::error::PolicyError<rampart_core::rejection::RateLimited, E>;
