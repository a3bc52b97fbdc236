//! Reporting the health to gRPC clients through tonic-health (feature `grpc`).

use std::time::Duration;

use rampart_core::error::ConfigError;
use tokio::{task::JoinHandle, time::MissedTickBehavior};
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{registry::HealthRegistry, status::Status};

impl Status {
    /// The gRPC serving status: `SERVING` when healthy or degraded, `NOT_SERVING` when
    /// unhealthy (the same line as `/health/ready`).
    pub const fn serving_status(self) -> ServingStatus {
        if self.is_ready() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        }
    }
}

impl HealthRegistry {
    /// Keeps `service_name`'s status in `reporter` in step with this registry: checks it now
    /// and then every `every` (through the registry's cache), and sets the service
    /// [`SERVING`](ServingStatus::Serving) while healthy or degraded,
    /// [`NOT_SERVING`](ServingStatus::NotServing) while unhealthy. The status is set only when it
    /// changes, so `Watch` clients see one message per change.
    ///
    /// Runs on a task spawned on the current tokio runtime (call it from within one) until the
    /// returned handle is aborted or the runtime shuts down. `service_name` is what clients put
    /// in their `HealthCheckRequest` (e.g. `"shop.v1.Orders"`; `""` is the whole server).
    ///
    /// A zero `every` is a [`ConfigError`] for the field `every`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use rampart_health::HealthRegistry;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (reporter, health_service) = tonic_health::server::health_reporter();
    /// let registry = HealthRegistry::new();
    /// let task = registry.report_to(reporter, "shop.v1.Orders", Duration::from_secs(5)).unwrap();
    /// // tonic::transport::Server::builder().add_service(health_service)…
    /// # let _ = health_service;
    /// task.abort();
    /// # }
    /// ```
    pub fn report_to(
        &self,
        reporter: HealthReporter,
        service_name: impl Into<String>,
        every: Duration,
    ) -> Result<JoinHandle<()>, ConfigError> {
        if every.is_zero() {
            return Err(ConfigError::new(
                "health registry",
                "every",
                "must be more than zero, got 0 s",
            ));
        }
        let registry = self.clone();
        let service = service_name.into();
        Ok(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut last = None;
            loop {
                ticks.tick().await;
                let serving = registry.check().await.status.serving_status();
                if last != Some(serving) {
                    reporter.set_service_status(service.clone(), serving).await;
                    tracing::info!(target: "rampart::health", registry = registry.name(),
                        service = %service, status = %serving, "gRPC serving status set");
                    last = Some(serving);
                }
            }
        }))
    }
}
