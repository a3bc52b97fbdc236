//! [`HealthRegistry`]: the named components, checked together.

use std::{
    fmt,
    future::Future,
    panic::AssertUnwindSafe,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::{FutureExt, future::join_all};
use rampart_core::error::BoxError;
use tokio::time::Instant;

use crate::{
    component::Component,
    probe::Probe,
    status::{ComponentHealth, ComponentReport, HealthReport, Status},
    success_rate::SuccessRate,
};

/// Marks a status not seen yet.
const UNKNOWN: u8 = u8::MAX;

/// Every component whose health makes up the service's health, by name, and the checks that
/// judge them. Cheap to clone: clones share the components, the cache and the last status, so
/// a component registered through any clone shows in every endpoint.
///
/// Register components with [`breaker`](Self::breaker), [`bulkhead`](Self::bulkhead),
/// [`dead_letters`](Self::dead_letters), [`probe`](Self::probe),
/// [`success_rate`](Self::success_rate) or, for your own, [`component`](Self::component).
/// Registering a name again replaces the earlier component in place.
///
/// [`check`](Self::check) runs every component's check concurrently and returns a
/// [`HealthReport`] whose status is the worst component status (healthy with no components).
///
/// # Caching
///
/// A check's report is kept for [`cache_for`](HealthRegistryBuilder::cache_for) (default 1 s):
/// checks within that time get the same report without running anything, and concurrent
/// checks while one is running wait for it and share its result. Load balancers, orchestrators
/// and dashboards polling the endpoints at once therefore cost one round of probes per
/// interval, not one per request. The price is that a change shows up to `cache_for` late;
/// `Duration::ZERO` turns the cache off (every check runs every component, concurrently with
/// other checks). Registering or removing a component drops the cached report.
///
/// # Observability
///
/// Every change of a component's status, and of the overall status, is a `tracing` event with
/// target `rampart::health` (`warn` when it gets worse, `info` when it gets better; a first
/// `healthy` is `debug`). Through the `metrics` facade, each check sets the gauges
/// `rampart_health_status{registry}` and `rampart_health_component_status{registry, component}`
/// (0 healthy, 1 degraded, 2 unhealthy).
#[derive(Clone)]
pub struct HealthRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    cache_for: Duration,
    components: RwLock<Vec<Arc<Entry>>>,
    /// Bumped when the components change, so a cached report of other components is not used.
    generation: AtomicU64,
    cache: tokio::sync::Mutex<Option<Cached>>,
    last_status: AtomicU8,
}

struct Entry {
    name: Arc<str>,
    component: Box<dyn Component>,
    last_status: AtomicU8,
}

struct Cached {
    at: Instant,
    generation: u64,
    report: Arc<HealthReport>,
}

impl fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<Arc<str>> = self.entries().iter().map(|e| e.name.clone()).collect();
        f.debug_struct("HealthRegistry")
            .field("name", &self.inner.name)
            .field("cache_for", &self.inner.cache_for)
            .field("components", &names)
            .field("last_status", &self.last_status())
            .finish()
    }
}

impl Default for HealthRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthRegistry {
    /// An empty registry named `default`, caching reports for 1 s.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder for the registry's name and cache.
    pub fn builder() -> HealthRegistryBuilder {
        HealthRegistryBuilder::default()
    }

    /// The registry's name (the `name` label of its metrics).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Registers `component` as `name`, replacing a component of the same name.
    pub fn component(&self, name: impl Into<String>, component: impl Component) -> &Self {
        let entry = Arc::new(Entry {
            name: Arc::from(name.into()),
            component: Box::new(component),
            last_status: AtomicU8::new(UNKNOWN),
        });
        {
            let mut list = rampart_core::sync::write(&self.inner.components);
            match list.iter_mut().find(|e| e.name == entry.name) {
                Some(slot) => *slot = entry,
                None => list.push(entry),
            }
        }
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        self
    }

    /// Removes the component registered as `name`; `true` if there was one.
    pub fn remove(&self, name: &str) -> bool {
        let removed = {
            let mut list = rampart_core::sync::write(&self.inner.components);
            let before = list.len();
            list.retain(|e| &*e.name != name);
            list.len() != before
        };
        if removed {
            self.inner.generation.fetch_add(1, Ordering::AcqRel);
        }
        removed
    }

    /// The names of the registered components, in registration order.
    pub fn names(&self) -> Vec<String> {
        self.entries().iter().map(|e| e.name.to_string()).collect()
    }

    /// Registers a readiness probe: `f` is called on every uncached check and must return
    /// `Ok` within `timeout`, or the component (and so the service) is unhealthy. See
    /// [`Probe`] for what to probe and what not, and for a probe that only degrades.
    ///
    /// ```
    /// use std::time::Duration;
    /// use rampart_health::HealthRegistry;
    ///
    /// let registry = HealthRegistry::new();
    /// registry.probe("payments-db", Duration::from_secs(1), || async {
    ///     tokio::net::TcpStream::connect("127.0.0.1:5432").await?;
    ///     Ok::<_, std::io::Error>(())
    /// });
    /// ```
    pub fn probe<F, Fut, E>(&self, name: impl Into<String>, timeout: Duration, f: F) -> &Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send,
        E: Into<BoxError>,
    {
        self.component(name, Probe::new(timeout, f))
    }

    /// Registers a success-rate tracker (see [`SuccessRate`] for its thresholds).
    pub fn success_rate(&self, name: impl Into<String>, rate: SuccessRate) -> &Self {
        self.component(name, rate)
    }

    /// The overall status of the last check, if any ran.
    pub fn last_status(&self) -> Option<Status> {
        Status::from_u8(self.inner.last_status.load(Ordering::Acquire))
    }

    /// Checks every component (or returns the cached report; see [caching](Self#caching)).
    pub async fn check(&self) -> Arc<HealthReport> {
        let inner = &*self.inner;
        if inner.cache_for.is_zero() {
            return Arc::new(self.run().await);
        }
        let mut cache = inner.cache.lock().await;
        let generation = inner.generation.load(Ordering::Acquire);
        if let Some(c) = &*cache
            && c.generation == generation
            && c.at.elapsed() < inner.cache_for
        {
            return c.report.clone();
        }
        let report = Arc::new(self.run().await);
        *cache = Some(Cached {
            at: Instant::now(),
            generation,
            report: report.clone(),
        });
        report
    }

    fn entries(&self) -> Vec<Arc<Entry>> {
        rampart_core::sync::read(&self.inner.components).clone()
    }

    /// Runs every check, concurrently.
    async fn run(&self) -> HealthReport {
        let entries = self.entries();
        let results = join_all(entries.iter().map(|e| check_one(&*e.component))).await;
        let components = entries
            .iter()
            .zip(results)
            .map(|(e, health)| {
                self.observe_component(e, &health);
                ComponentReport {
                    name: e.name.to_string(),
                    kind: e.component.kind().into(),
                    health,
                }
            })
            .collect();
        let report = HealthReport::from_components(components);
        self.observe_overall(&report);
        report
    }

    fn observe_component(&self, entry: &Entry, health: &ComponentHealth) {
        let registry = &*self.inner.name;
        let to = health.status;
        metrics::gauge!("rampart_health_component_status",
            rampart_core::registry::INSTANCE_LABEL => registry.to_owned(), "component" => entry.name.to_string())
        .set(to.as_gauge());
        let from = Status::from_u8(entry.last_status.swap(to.to_u8(), Ordering::AcqRel));
        if from == Some(to) {
            return;
        }
        let component = &*entry.name;
        let from_str = from.map_or("unknown", Status::as_str);
        let reason = health.reason.as_deref().unwrap_or("");
        match from {
            Some(from) if to > from => tracing::warn!(target: "rampart::health",
                registry, component, from = from_str, to = to.as_str(), reason,
                "health component status changed"),
            None if to != Status::Healthy => tracing::warn!(target: "rampart::health",
                registry, component, from = from_str, to = to.as_str(), reason,
                "health component status changed"),
            None => tracing::debug!(target: "rampart::health",
                registry, component, from = from_str, to = to.as_str(),
                "health component status changed"),
            Some(_) => tracing::info!(target: "rampart::health",
                registry, component, from = from_str, to = to.as_str(), reason,
                "health component status changed"),
        }
    }

    fn observe_overall(&self, report: &HealthReport) {
        let registry = &*self.inner.name;
        let to = report.status;
        metrics::gauge!("rampart_health_status", rampart_core::registry::INSTANCE_LABEL => registry.to_owned())
            .set(to.as_gauge());
        let from = Status::from_u8(self.inner.last_status.swap(to.to_u8(), Ordering::AcqRel));
        if from == Some(to) {
            return;
        }
        let from_str = from.map_or("unknown", Status::as_str);
        // Which components made it so, for the log line.
        let causes = report
            .components
            .iter()
            .filter(|c| c.status() != Status::Healthy)
            .map(|c| format!("{} ({})", c.name, c.status()))
            .collect::<Vec<_>>()
            .join(", ");
        match from {
            Some(from) if to < from => tracing::info!(target: "rampart::health",
                registry, from = from_str, to = to.as_str(), causes,
                "health status changed"),
            None if to == Status::Healthy => tracing::debug!(target: "rampart::health",
                registry, from = from_str, to = to.as_str(),
                "health status changed"),
            _ => tracing::warn!(target: "rampart::health",
                registry, from = from_str, to = to.as_str(), causes,
                "health status changed"),
        }
    }
}

/// Checks one component; a component whose check panics is unhealthy, and the health endpoint
/// keeps working.
async fn check_one(component: &dyn Component) -> ComponentHealth {
    match AssertUnwindSafe(component.check()).catch_unwind().await {
        Ok(health) => health,
        Err(_) => ComponentHealth::unhealthy("health check panicked"),
    }
}

#[cfg(feature = "circuit-breaker")]
impl HealthRegistry {
    /// Registers a circuit breaker: degraded while open, half-open or forced open (see
    /// [`BreakerCheck`](crate::BreakerCheck)).
    pub fn breaker(
        &self,
        name: impl Into<String>,
        handle: rampart_circuit_breaker::CircuitBreakerHandle,
    ) -> &Self {
        self.component(name, crate::breaker::BreakerCheck::new(handle))
    }

    /// Registers every breaker of a per-key breaker layer: degraded while any of them is
    /// open, half-open or forced open (see [`KeyedBreakerCheck`](crate::KeyedBreakerCheck)).
    pub fn keyed_breakers<K, C>(
        &self,
        name: impl Into<String>,
        handle: rampart_circuit_breaker::KeyedCircuitBreakerHandle<K, C>,
    ) -> &Self
    where
        K: std::hash::Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
        C: Clone + Send + Sync + 'static,
    {
        self.component(name, crate::breaker::KeyedBreakerCheck::new(handle))
    }
}

#[cfg(feature = "bulkhead")]
impl HealthRegistry {
    /// Registers a bulkhead: degraded while full or rejecting (see
    /// [`BulkheadCheck`](crate::BulkheadCheck)).
    pub fn bulkhead(
        &self,
        name: impl Into<String>,
        handle: rampart_bulkhead::BulkheadHandle,
    ) -> &Self {
        self.component(name, crate::bulkhead::BulkheadCheck::new(handle))
    }
}

#[cfg(feature = "dead-letter")]
impl HealthRegistry {
    /// Registers a dead-letter store: degraded when more than 100 records wait for a redrive,
    /// or when the store does not answer (see [`DeadLetterCheck`](crate::DeadLetterCheck),
    /// also for another threshold).
    pub fn dead_letters(
        &self,
        name: impl Into<String>,
        store: Arc<dyn rampart_dead_letter::DeadLetterStore>,
    ) -> &Self {
        self.component(name, crate::dead_letter::DeadLetterCheck::new(store))
    }
}

/// Builds a [`HealthRegistry`].
#[derive(Debug, Clone)]
pub struct HealthRegistryBuilder {
    name: String,
    cache_for: Duration,
}

impl Default for HealthRegistryBuilder {
    fn default() -> Self {
        Self {
            name: "default".to_owned(),
            cache_for: Duration::from_secs(1),
        }
    }
}

impl HealthRegistryBuilder {
    /// The registry's name, the `registry` label of its metrics and tracing events (default:
    /// `default`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How long a report is reused (default: 1 s; zero: never). See
    /// [caching](HealthRegistry#caching).
    pub fn cache_for(mut self, cache_for: Duration) -> Self {
        self.cache_for = cache_for;
        self
    }

    /// The registry, with no components yet.
    pub fn build(self) -> HealthRegistry {
        HealthRegistry {
            inner: Arc::new(Inner {
                name: Arc::from(self.name),
                cache_for: self.cache_for,
                components: RwLock::new(Vec::new()),
                generation: AtomicU64::new(0),
                cache: tokio::sync::Mutex::new(None),
                last_status: AtomicU8::new(UNKNOWN),
            }),
        }
    }
}
