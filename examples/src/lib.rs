//! Shared pieces of the examples, the demo and the end-to-end chaos test.
//!
//! - [`upstream`]: a flaky HTTP upstream on loopback (5xx, 429 with `Retry-After`, slow
//!   answers, connections dropped after the work was done, outage windows), with a
//!   server-side idempotency layer and a count of effects per key.
//! - [`stack`]: the recommended client stack, and why it is in that order.
//! - [`workflow`]: a multi-step job with deterministic idempotency keys, safe to rerun after
//!   a crash.
//! - [`gateway`]: one request fanned out to several guarded downstreams, answered within one
//!   deadline with the failed parts marked.

pub mod alert;
pub mod gateway;
pub mod grpc;
pub mod per_user;
pub mod pipeline;
pub mod queue_for_later;
pub mod stack;
pub mod upstream;
pub mod workflow;
