//! A bulkhead for tower services: bounded concurrency that fails fast, with priority classes.
//!
//! ```
//! use std::time::Duration;
//! use rampart_bulkhead::{BulkheadLayer, FullReason};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bulkhead = BulkheadLayer::builder()
//!     .name("inventory")
//!     .max_concurrent(2)      // two calls at a time …
//!     .layer()?;              // … and no waiting: the third is rejected at once
//! let handle = bulkhead.handle();
//!
//! let (release, hold) = tokio::sync::watch::channel(());
//! let mut svc = ServiceBuilder::new().layer(bulkhead).service(service_fn(move |_: ()| {
//!     let mut hold = hold.clone();
//!     async move { hold.changed().await.ok(); Ok::<_, std::io::Error>("done") }
//! }));
//!
//! let first = svc.ready().await?.call(());
//! let second = svc.ready().await?.call(());
//! let err = svc.ready().await?.call(()).await.unwrap_err();
//! assert_eq!(err.rejection().unwrap().reason(), FullReason::NoCapacity);
//! assert_eq!(handle.stats().active, 2);
//!
//! release.send(())?;
//! assert_eq!((first.await?, second.await?), ("done", "done"));
//! assert_eq!(handle.stats().active, 0);
//! # Ok(())
//! # }
//! ```
//!
//! # Limits and waiting
//!
//! [`max_concurrent`](BulkheadConfigBuilder::max_concurrent) calls run at once. A call that
//! finds no permit is rejected at once with [`BulkheadFull`] (the default: fail fast), or, with
//! [`max_wait`](BulkheadConfigBuilder::max_wait), waits that long in a bounded queue
//! ([`max_queued`](BulkheadConfigBuilder::max_queued)). The rejection says which:
//! [`FullReason::NoCapacity`], [`FullReason::QueueFull`] or [`FullReason::WaitElapsed`].
//!
//! # Priority classes
//!
//! ```
//! use rampart_bulkhead::{BulkheadLayer, PriorityHeader};
//!
//! let bulkhead = BulkheadLayer::builder()
//!     .name("payments-api")
//!     .borrowing_class("critical", 10) // highest priority first
//!     .class("normal", 5)
//!     .class("bulk", 2)
//!     .capacity(20)                   // 3 more, shared, for borrowing classes
//!     .default_class("normal")
//!     .layer()
//!     .unwrap()
//!     .prioritize(PriorityHeader::new(http::HeaderName::from_static("x-priority")));
//! ```
//!
//! Each class has capacity reserved for it. A class never takes capacity reserved for a class
//! above it; a [borrowing](BulkheadConfigBuilder::borrowing_class) class may also use idle
//! capacity reserved for classes below it and the shared pool. Waiters are served by priority,
//! oldest first within a class, and a class below its reservation reclaims the next free
//! permit before any borrower. The starvation bound, precisely: a waiter whose class is below
//! its reservation is admitted after at most (the waiters ahead of it in its class) + (the
//! reservation shortfall of the classes above it) releases; borrowing beyond a reservation is
//! best effort and bounded by `max_wait`.
//!
//! A [`Prioritize`] names each request's class: [`PriorityHeader`], [`ByExtension`] (a
//! [`Priority`] extension set by an earlier layer or the route), or [`priority_fn`].
//!
//! # Permits and cancellation
//!
//! A permit is held from `call` until the response future completes or is dropped, so a
//! cancelled call frees its permit, and a dropped waiting call leaves the queue. By default
//! ([`OnResponse`]) the permit is *not* held while an HTTP response body streams: the bulkhead
//! bounds the work of producing responses (the handler, the downstream call), not the time
//! clients take to read them. Where the streaming is the cost (downloads, proxied streams),
//! [`release_on_body_end`](BulkheadLayer::release_on_body_end) ([`OnBodyEnd`]) holds the permit
//! until the body's last frame, an error, or the body being dropped.
//!
//! # Sharing and partitions
//!
//! The bulkhead lives in the layer behind an `Arc`: clone the layer (or the service) to share
//! one limit across routes and clients calling the same dependency.
//! [`KeyedBulkheadLayer`] keeps one partition per key (per tenant, per host) in a bounded
//! registry; a partition with calls in flight is never evicted.
//!
//! # Observability and control
//!
//! [`BulkheadHandle`]: [`Stats`] (active, queued, rejected by reason, longest wait, per class)
//! and resizing at run time ([`set_capacity`](BulkheadHandle::set_capacity),
//! [`set_reserved`](BulkheadHandle::set_reserved)). Rejections and resizes are `tracing` events
//! (target `rampart::bulkhead`). Metrics, through the `metrics` facade:
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `rampart_bulkhead_calls_total` | counter | `name`, `class`, `outcome` = `admitted` / `rejected` |
//! | `rampart_bulkhead_active` | gauge | `name`, `class` |
//!
//! A partition's series also carry `key`: `_other` for every key by default (`_none` for
//! requests without one), or their own for the first `n` keys with
//! [`metrics_per_key(n)`](BulkheadConfigBuilder::metrics_per_key): the number of series
//! stays bounded however many tenants pass.
//!
//! # Errors and protocol mappings
//!
//! The service's error is [`BulkheadError<E>`]: `Rejected(BulkheadFull)` or the inner error
//! untouched. Map a rejection to HTTP `503 Service Unavailable` (or `429 Too Many Requests` for
//! a per-tenant partition whose tenant is over its share) and to gRPC `RESOURCE_EXHAUSTED`.
//!
//! # Cost
//!
//! While nobody waits, admission is one compare-and-swap on a word packing every class's count,
//! and release one atomic subtraction: no lock, no allocation. See the policy notes in the
//! source (`policy.rs`) for the exact rules.
//!
//! # Where it goes in a stack
//!
//! Inside the breaker, so that bulkhead rejections (the caller's own overload) don't count as
//! the dependency's failures; outside the per-attempt timeout, so a timed-out call frees its
//! permit. The whole stack is the workspace's one
//! [recommended client stack](https://github.com/rampart-rs/rampart#the-recommended-client-stack) table.

mod acquire;
mod config;
mod error;
mod future;
mod handle;
mod layer;
mod partitions;
mod policy;
mod priority;
mod release;
mod service;

pub use crate::{
    acquire::AcquirePermit,
    config::{BulkheadConfig, BulkheadConfigBuilder, ClassConfig, MAX_CLASSES},
    error::{BulkheadError, BulkheadFull, FullReason},
    future::ResponseFuture,
    handle::{BulkheadHandle, KeyedBulkheadHandle},
    layer::{BulkheadLayer, KeyedBulkheadLayer},
    policy::{ClassStats, Permit, Stats},
    priority::{DefaultClass, Prioritize, Priority, PriorityFn, priority_fn},
    release::{OnResponse, Release},
    service::{Bulkhead, KeyedBulkhead},
};
#[cfg(feature = "http")]
pub use crate::{
    priority::{ByExtension, PriorityHeader},
    release::OnBodyEnd,
};
