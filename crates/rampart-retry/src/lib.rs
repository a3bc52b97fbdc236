//! Retries for tower services that are safe for non-idempotent calls.
//!
//! **Work in progress.** This crate holds the retry *policy core* so far: plain synchronous
//! decisions with no tower types, tested on their own. The `RetryLayer`, idempotency-key
//! injection and body replay build on it next.
//!
//! - [`backoff`]: how long to wait before each retry: constant, linear or exponential with a
//!   cap, with no, full, equal or decorrelated jitter, or a function of your own.
//! - [`after`]: what the server asks for: `Retry-After` (delta-seconds or HTTP-date) and
//!   `grpc-retry-pushback-ms`.
//! - [`budget`]: a retry budget shared by every clone, so that retries can't grow into a storm.
//! - [`policy`]: the decision after a failed attempt: retry after how long, or give up and why.

pub mod after;
pub mod backoff;
pub mod budget;
pub mod policy;
