//! Readiness probes: [`Probe`].

use std::{fmt, future::Future, panic::AssertUnwindSafe, time::Duration};

use futures_util::FutureExt;
use rampart_core::error::BoxError;
use tokio::time::Instant;

use crate::{
    component::{BoxFuture, Component},
    status::{ComponentHealth, Status},
};

/// An async check of a dependency, such as a `SELECT 1` or a TCP connect, with its own
/// timeout.
///
/// | probe | status |
/// |---|---|
/// | returned `Ok` within the timeout | healthy |
/// | returned `Err`, panicked, or ran out of time | unhealthy (or the status set with [`failure_status`](Self::failure_status)) |
///
/// The probe runs on every uncached check (see
/// [`HealthRegistry`](crate::HealthRegistry#caching)), concurrently with the other
/// components; a slow probe delays the answer by at most its timeout.
///
/// Probe only what this instance cannot serve without, and what is this instance's own to
/// lose (its database pool, a local sidecar). A probe of a dependency that every instance
/// shares takes every instance out of rotation at once when it fails; for those, a circuit
/// breaker (degraded) says the same thing without the outage.
///
/// Details: `latency_ms`, `timeout_ms`, and `error` when it failed.
///
/// ```
/// use std::time::Duration;
/// use rampart_health::{HealthRegistry, Probe, Status};
///
/// let registry = HealthRegistry::new();
/// // Through the registry: unhealthy when it fails.
/// registry.probe("postgres", Duration::from_secs(1), || async {
///     // e.g. sqlx::query("SELECT 1").execute(&pool).await?;
///     Ok::<_, std::io::Error>(())
/// });
/// // A soft dependency: degraded only.
/// registry.component(
///     "recommendations",
///     Probe::new(Duration::from_millis(300), || async { Ok::<_, std::io::Error>(()) })
///         .failure_status(Status::Degraded),
/// );
/// ```
pub struct Probe<F> {
    f: F,
    timeout: Duration,
    on_failure: Status,
}

impl<F> Probe<F> {
    /// A probe that runs `f` and waits at most `timeout` for it.
    pub fn new<Fut, E>(timeout: Duration, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send,
        E: Into<BoxError>,
    {
        Self {
            f,
            timeout,
            on_failure: Status::Unhealthy,
        }
    }

    /// The status of a failed probe (default: [`Status::Unhealthy`]). `Healthy` makes a probe
    /// that only reports.
    pub fn failure_status(mut self, status: Status) -> Self {
        self.on_failure = status;
        self
    }
}

impl<F> fmt::Debug for Probe<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probe")
            .field("timeout", &self.timeout)
            .field("failure_status", &self.on_failure)
            .finish_non_exhaustive()
    }
}

impl<F, Fut, E> Component for Probe<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Into<BoxError>,
{
    fn kind(&self) -> &'static str {
        "probe"
    }

    fn check(&self) -> BoxFuture<'_, ComponentHealth> {
        Box::pin(async move {
            let start = Instant::now();
            // A panicking probe is a failed probe, not a failed health endpoint.
            let run = AssertUnwindSafe(async { (self.f)().await }).catch_unwind();
            let result = tokio::time::timeout(self.timeout, run).await;
            let latency = start.elapsed();
            let error = match result {
                Ok(Ok(Ok(()))) => None,
                Ok(Ok(Err(e))) => Some(e.into().to_string()),
                Ok(Err(_panic)) => Some("probe panicked".to_owned()),
                Err(_) => Some(format!("timed out after {} ms", self.timeout.as_millis())),
            };
            let health = match &error {
                None => ComponentHealth::healthy(),
                Some(e) => {
                    ComponentHealth::new(self.on_failure).reason(format!("probe failed: {e}"))
                }
            };
            let health = health
                .detail("latency_ms", latency.as_secs_f64() * 1000.0)
                .detail("timeout_ms", self.timeout.as_secs_f64() * 1000.0);
            match error {
                Some(e) => health.detail("error", e),
                None => health,
            }
        })
    }
}
