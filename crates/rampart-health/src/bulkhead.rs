//! Bulkheads as components: [`BulkheadCheck`].

use std::sync::atomic::{AtomicU64, Ordering};

use rampart_bulkhead::BulkheadHandle;

use crate::{
    component::{BoxFuture, Component},
    status::ComponentHealth,
};

/// One bulkhead's health, from its [`BulkheadHandle`]:
///
/// | bulkhead | status |
/// |---|---|
/// | a permit is free, and no call was rejected since the previous check | healthy |
/// | full: every permit in use | degraded |
/// | it rejected calls since the previous check | degraded |
///
/// A full or rejecting bulkhead is *degraded*, never unhealthy: shedding load is its job, and
/// readiness stays `200` so that the instance keeps serving what it can.
///
/// "Since the previous check" is since the previous time the registry ran this check (or since
/// the check was made, the first time): with the registry's cache, at most once per cache
/// interval.
///
/// Details: `in_use`, `limit`, `queued`, `rejected_total`, `rejected_since_last_check`,
/// `longest_wait_ms`.
#[derive(Debug)]
pub struct BulkheadCheck {
    handle: BulkheadHandle,
    last_rejected: AtomicU64,
}

impl BulkheadCheck {
    /// A check of the bulkhead behind `handle`; rejections from now on count.
    pub fn new(handle: BulkheadHandle) -> Self {
        let rejected = handle.stats().rejected;
        Self {
            handle,
            last_rejected: AtomicU64::new(rejected),
        }
    }
}

impl Component for BulkheadCheck {
    fn kind(&self) -> &'static str {
        "bulkhead"
    }

    fn check(&self) -> BoxFuture<'_, ComponentHealth> {
        let stats = self.handle.stats();
        let previous = self.last_rejected.swap(stats.rejected, Ordering::Relaxed);
        let rejected_since = stats.rejected.saturating_sub(previous);
        let full = stats.active >= stats.capacity;
        let health = match (full, rejected_since) {
            (false, 0) => ComponentHealth::healthy(),
            (true, 0) => ComponentHealth::degraded(format!(
                "full: {}/{} permits in use, {} queued",
                stats.active, stats.capacity, stats.queued
            )),
            (_, n) => ComponentHealth::degraded(format!(
                "rejected {n} call(s) since the previous check ({}/{} permits in use)",
                stats.active, stats.capacity
            )),
        };
        let health = health
            .detail("in_use", stats.active)
            .detail("limit", stats.capacity)
            .detail("queued", stats.queued)
            .detail("rejected_total", stats.rejected)
            .detail("rejected_since_last_check", rejected_since)
            .detail("longest_wait_ms", stats.longest_wait.as_secs_f64() * 1000.0);
        Box::pin(std::future::ready(health))
    }
}
