//! A circuit breaker for tower services.
//!
//! ```
//! use std::time::Duration;
//! use rampart_circuit_breaker::{BreakerError, CircuitBreakerLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let breaker = CircuitBreakerLayer::builder()
//!     .name("inventory")
//!     .failure_rate_threshold(50.0)            // trip at 50 % failures…
//!     .minimum_calls(10)                       // …once the window holds 10 calls
//!     .time_window(Duration::from_secs(10), 10)
//!     .consecutive_failures(5)                 // or after 5 failures in a row
//!     .open_duration(Duration::from_secs(30))
//!     .layer()?;
//! let handle = breaker.handle();
//!
//! let svc = ServiceBuilder::new()
//!     .layer(breaker)
//!     .service(service_fn(|n: u32| async move { Err::<u32, _>(std::io::Error::other("down")) }));
//!
//! for _ in 0..5 {
//!     let _ = svc.clone().oneshot(1).await;
//! }
//! match svc.clone().oneshot(1).await {
//!     Err(BreakerError::Rejected(open)) => assert!(open.retry_after().is_some()),
//!     other => panic!("expected a rejection, got {other:?}"),
//! }
//! assert_eq!(handle.stats().rejections, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # States
//!
//! **Closed**: calls flow and their [outcomes](rampart_core::classify) are recorded. The breaker
//! trips to **open** when any trip policy fires:
//!
//! - the failure rate over the sliding window reaches
//!   [`failure_rate_threshold`](CircuitBreakerConfigBuilder::failure_rate_threshold);
//! - the slow-call rate reaches its threshold ([`slow_calls`](CircuitBreakerConfigBuilder::slow_calls));
//! - [`consecutive_failures`](CircuitBreakerConfigBuilder::consecutive_failures) happen in a row.
//!
//! Rates are judged only once the window holds
//! [`minimum_calls`](CircuitBreakerConfigBuilder::minimum_calls). The window is count-based
//! (the last N calls) or time-based (rolling buckets); see [`SlidingWindow`] for the trade-off.
//! Ignored outcomes (4xx, cancellations) count neither way.
//!
//! **Open**: calls are rejected with [`CircuitOpen`], which carries the time left as a
//! retry-after hint, for [`OpenDuration`]: fixed, or growing exponentially with each
//! consecutive re-open (capped, with optional jitter). When it is over, the next call moves the
//! breaker to half-open (lazily; also on a timer with
//! [`half_open_on_timer`](CircuitBreakerConfigBuilder::half_open_on_timer)).
//!
//! **Half-open**: at most [`half_open_max_probes`](CircuitBreakerConfigBuilder::half_open_max_probes)
//! calls are in flight at once — strictly, under any concurrency; others are rejected. A probe
//! holds its slot until its outcome is recorded, and a dropped future (or dropped response body)
//! frees it. The breaker closes per [`ClosePolicy`] (N successes in a row, or a success rate
//! over N probes) and re-opens on failure, or when
//! [`half_open_max_wait`](CircuitBreakerConfigBuilder::half_open_max_wait) passes (60 s by
//! default, so a probe that never answers cannot hold the breaker half-open for good). A
//! half-open period that reaches that bound with every probe's outcome ignored (rejected by a
//! bulkhead below, cancelled) closes instead (`Reason::HalfOpenNoVerdict`): nothing said the
//! dependency is down, and staying half-open would cap calls at the probe limit for good.
//!
//! # Manual control and observation
//!
//! [`CircuitBreakerHandle`]: state, [`Stats`], [`Mode`] (force open, force closed, disabled,
//! metrics-only), reset, and [`subscribe`](CircuitBreakerHandle::subscribe) to transitions.
//! Callbacks can also be set with [`on_transition`](CircuitBreakerConfigBuilder::on_transition).
//!
//! Every transition is a `tracing` event (target `rampart::circuit_breaker`, `warn` when
//! opening, `info` otherwise; rejections at `trace`). Metrics, through the `metrics` facade
//! (install the recorder before building the layer; handles are registered once, at build):
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `rampart_circuit_breaker_calls_total` | counter | `name`, `outcome` = `success` / `failure` / `ignored` / `rejected` |
//! | `rampart_circuit_breaker_slow_calls_total` | counter | `name` |
//! | `rampart_circuit_breaker_transitions_total` | counter | `name`, `from`, `to` |
//! | `rampart_circuit_breaker_state` | gauge | `name`; 0 closed, 1 half-open, 2 open |
//!
//! A per-key breaker's series also carry `key`: by default `_other` for every key (one set of
//! series for the layer, however many hosts it sees; `_none` for requests without a key);
//! with [`metrics_per_key(n)`](CircuitBreakerConfigBuilder::metrics_per_key), the first `n`
//! keys get their own. The state gauge of a shared series holds the last transition's state:
//! chart `transitions_total` for a keyed layer.
//!
//! # Per-key breakers
//!
//! [`KeyedCircuitBreakerLayer`] keeps one breaker per host, tenant or route, in a bounded
//! registry (max keys, idle eviction):
//!
//! ```
//! use rampart_circuit_breaker::CircuitBreakerLayer;
//! use rampart_core::{classify::HttpClassifier, key::ByAuthority};
//!
//! let per_host = CircuitBreakerLayer::builder()
//!     .name("upstreams")
//!     .max_keys(256)
//!     .keyed(ByAuthority)
//!     .unwrap()
//!     .classifier(HttpClassifier::new());
//! # let _: &rampart_circuit_breaker::KeyedCircuitBreakerLayer<_, http::uri::Authority, _> = &per_host;
//! ```
//!
//! # Across replicas
//!
//! [`shared::SharedBreakers`] shares breakers' state between the replicas of a service
//! through a store (Redis: `rampart_redis::RedisBreakerState`), so that they open together
//! (by a [`shared::Decision`]: follow, quorum, pooled windows) and one replica probes for all
//! — without a network round trip on any call. See the [`shared`] module.
//!
//! # Errors and protocol mappings
//!
//! The service's error is [`BreakerError<E>`]: `Rejected(CircuitOpen)` or the inner error
//! untouched. A rejection never allocates. Map it:
//!
//! - **axum**: `503 Service Unavailable` with `Retry-After` =
//!   [`CircuitOpen::retry_after_secs`]: `rampart::axum::RespondToErrorsLayer` (or `handle_error` in a `HandleErrorLayer`)
//!   (see this workspace's `tests/tests/axum_breaker.rs`);
//! - **tonic**: `Status::unavailable(..)` with `grpc-retry-pushback-ms`, so a gRPC client's
//!   retry policy treats it as retryable: `rampart::tonic::MapRejectionLayer`.
//!
//! # Where it goes in a stack
//!
//! Inside the retry and outside the bulkhead: each attempt is judged (and an open breaker fails
//! the attempts fast, so retries don't hammer a dead host), and the breaker's probe limit is
//! not eaten by bulkhead rejections. The whole stack, layer by layer, is the workspace's one
//! [recommended client stack](https://github.com/rampart-rs/rampart#the-recommended-client-stack) table.
//!
//! # Time, and what it costs
//!
//! With tokio's clock (the default) inside a tokio runtime, the hot paths read no clock: an
//! alarm in tokio's timer driver marks the end of each time-window bucket and the end of the
//! open time, and the calls in between use the bucket number and the "still open" flag as they
//! stand. The alarms go off 5 ms early (timers round up to the millisecond); calls in that last
//! stretch read the clock, so no decision is taken early, and under paused time
//! (`tokio::time::advance`) every boundary is exact. The price: a time-window bucket ends up to
//! 5 ms early (its last calls count in the next bucket), and a runtime starved for more than
//! 5 ms may reject a call just after the open time ended (with a zero retry-after). Outside a
//! runtime, or with another [`Clock`](rampart_core::clock::Clock), every decision reads the
//! clock.
//!
//! # Testing with time
//!
//! The breaker reads time through a [`Clock`](rampart_core::clock::Clock): tokio's by default
//! (so `#[tokio::test(start_paused = true)]` works), or a
//! [`ManualClock`](rampart_core::clock::ManualClock) given to
//! [`clock`](CircuitBreakerConfigBuilder::clock).

mod config;
mod error;
mod events;
mod future;
mod handle;
mod layer;
mod policy;
mod readiness;
mod registry;
mod service;
pub mod shared;

pub use crate::{
    config::{
        CircuitBreakerConfig, CircuitBreakerConfigBuilder, ClosePolicy, DEFAULT_HALF_OPEN_MAX_WAIT,
        OpenDuration, SlidingWindow,
    },
    error::{BreakerError, CircuitOpen, RejectedBy},
    events::{Reason, State, Transition},
    future::ResponseFuture,
    handle::CircuitBreakerHandle,
    layer::{CircuitBreakerLayer, KeyedCircuitBreakerHandle, KeyedCircuitBreakerLayer},
    policy::{CallGuard, Mode, Stats},
    service::{CircuitBreaker, KeyedCircuitBreaker},
};
