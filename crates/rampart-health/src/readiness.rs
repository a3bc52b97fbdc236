//! [`HealthReadiness`]: a health registry as a [`Readiness`], so that work held back while a
//! dependency was down (the dead-letter drain worker's) resumes when its probe passes.

use std::time::Duration;

use rampart_core::{BoxFuture, readiness::Readiness};

use crate::{HealthRegistry, Status};

impl HealthRegistry {
    /// This registry as a [`Readiness`]: ready while its last check was
    /// [`Healthy`](Status::Healthy), and checked again every `every` by whoever waits on it.
    ///
    /// Give it a registry of its own holding the dependency's probe (a registry shared with
    /// the service's other components answers for all of them).
    ///
    /// ```
    /// use std::{sync::{Arc, atomic::{AtomicBool, Ordering}}, time::Duration};
    /// use rampart_core::readiness::Readiness;
    /// use rampart_health::HealthRegistry;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let up = Arc::new(AtomicBool::new(false));
    /// let probe = up.clone();
    /// let billing = HealthRegistry::new();
    /// billing.probe("billing", Duration::from_secs(1), move || {
    ///     let up = probe.load(Ordering::Acquire);
    ///     async move { if up { Ok(()) } else { Err("down") } }
    /// });
    /// let ready = billing.readiness(Duration::from_secs(5));
    /// ready.changed_soon().await; // the first check, at once
    /// assert!(!ready.is_ready());
    /// up.store(true, Ordering::Release);
    /// ready.changed_soon().await; // five seconds on, the next
    /// assert!(ready.is_ready());
    /// # }
    /// ```
    pub fn readiness(&self, every: Duration) -> HealthReadiness {
        HealthReadiness {
            registry: self.clone(),
            every,
        }
    }
}

/// A [`HealthRegistry`] as a [`Readiness`]. Made by [`HealthRegistry::readiness`].
///
/// Ready only while the last check was [`Healthy`](Status::Healthy): a degraded registry may
/// be degraded by the very breaker a drain waits on. Its
/// [`changed_soon`](Readiness::changed_soon) runs the next check (at once if none has run,
/// else after the period) and then completes, so the waiter drives the checks: no background
/// task. Trade-off: a change is seen up to one period late, and a check's cost is paid once
/// per period per waiter (the registry's [cache](HealthRegistry#caching) shares it).
#[derive(Clone)]
pub struct HealthReadiness {
    registry: HealthRegistry,
    every: Duration,
}

impl std::fmt::Debug for HealthReadiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthReadiness")
            .field("registry", &self.registry.name())
            .field("every", &self.every)
            .finish()
    }
}

impl Readiness for HealthReadiness {
    fn is_ready(&self) -> bool {
        self.registry.last_status() == Some(Status::Healthy)
    }

    fn changed_soon(&self) -> BoxFuture<'static, ()> {
        let registry = self.registry.clone();
        let wait = if registry.last_status().is_some() {
            self.every
        } else {
            Duration::ZERO
        };
        Box::pin(async move {
            tokio::time::sleep(wait).await;
            registry.check().await;
        })
    }
}
