//! The distributed rate limit as a health component (feature `health`).

use rampart_health::{BoxFuture, Component, ComponentHealth};

use crate::rate_limit::RedisRateLimiter;

/// A [`RedisRateLimiter`]'s health, for a `rampart_health::HealthRegistry`:
///
/// | state | status |
/// |---|---|
/// | Redis answers | healthy |
/// | Redis did not answer the last decision: the fallback decides | degraded, saying how |
///
/// Never unhealthy: the fallback keeps deciding (locally, or by refusing), and every replica
/// loses the same Redis at once, so failing readiness would take them all out of service
/// together. Details: `redis` (the address, no credentials), `degraded`, `fallback`,
/// `backend_failures_total`.
impl Component for RedisRateLimiter {
    fn kind(&self) -> &'static str {
        "redis-rate-limit"
    }

    fn check(&self) -> BoxFuture<'_, ComponentHealth> {
        let degraded = self.is_degraded();
        let fallback = self.fallback_description();
        let health = if degraded {
            ComponentHealth::degraded(format!("Redis does not answer: {fallback}"))
        } else {
            ComponentHealth::healthy()
        };
        let health = health
            .detail("redis", self.describe())
            .detail("degraded", degraded)
            .detail("fallback", fallback)
            .detail("backend_failures_total", self.backend_failures());
        Box::pin(std::future::ready(health))
    }
}
