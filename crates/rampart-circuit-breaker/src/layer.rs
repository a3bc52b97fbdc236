//! [`CircuitBreakerLayer`] (one breaker) and [`KeyedCircuitBreakerLayer`] (one per key).

use std::{fmt, hash::Hash, marker::PhantomData, sync::Arc};

use rampart_core::{
    classify::{IgnoreRejections, ResultClassifier},
    error::ConfigError,
};
use tower_layer::Layer;

use crate::{
    config::{CircuitBreakerConfig, CircuitBreakerConfigBuilder},
    handle::CircuitBreakerHandle,
    policy::{CallGuard, Core, Lanes, current_shard, lanes},
    registry::Registry,
    service::{CircuitBreaker, KeyedCircuitBreaker},
};

/// Wraps a service in a circuit breaker.
///
/// The breaker lives in the layer behind an `Arc`: every service the layer makes (axum calls
/// `layer` once per route and clones services per connection) shares it, so they trip together.
///
/// `C` is the [classifier](rampart_core::classify) that judges outcomes; the default,
/// [`ResultClassifier`], counts every `Err` as a failure. Use [`classifier`](Self::classifier)
/// with an `HttpClassifier` or `GrpcClassifier` for HTTP and gRPC services.
pub struct CircuitBreakerLayer<C = ResultClassifier> {
    core: Arc<Core>,
    lanes: Lanes<C>,
    classifier: C,
}

impl<C: Clone> Clone for CircuitBreakerLayer<C> {
    fn clone(&self) -> Self {
        Self {
            core: self.core.clone(),
            lanes: self.lanes.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<C> fmt::Debug for CircuitBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("breaker", &self.core)
            .finish()
    }
}

impl CircuitBreakerLayer {
    /// A layer with a breaker built from `config`.
    pub fn new(config: CircuitBreakerConfig) -> Self {
        let core = Core::unkeyed(config.clone(), Arc::from(config.name()));
        let lanes = lanes(&core, &ResultClassifier);
        Self {
            core,
            lanes,
            classifier: ResultClassifier,
        }
    }

    /// A configuration builder; finish it with
    /// [`layer`](CircuitBreakerConfigBuilder::layer).
    pub fn builder() -> CircuitBreakerConfigBuilder {
        CircuitBreakerConfig::builder()
    }
}

impl<C: Clone> CircuitBreakerLayer<C> {
    /// Judges outcomes with `classifier` instead. The breaker (and its handle) is kept.
    pub fn classifier<C2: Clone>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            lanes: lanes(&self.core, &classifier),
            core: self.core,
            classifier,
        }
    }

    /// Judges the inner layer's rampart rejections by rampart-core's one rule,
    /// [`outcome_of_rejection`](rampart_core::classify::outcome_of_rejection): a full bulkhead
    /// or an open breaker further in counts as neither success nor failure (the caller's own
    /// overload says nothing about the dependency), a timeout further in counts as a failure;
    /// everything else is judged by the current classifier. See [`IgnoreRejections`], also for
    /// why a tower breaker needs telling and rampart-reqwest's does not. Needed when this
    /// breaker sits outside a bulkhead, as recommended, and the inner error is the bulkhead's
    /// `BulkheadError`; a stack whose inner error is not a rampart `PolicyError` does not
    /// compile with it.
    pub fn ignore_rejections(self) -> CircuitBreakerLayer<IgnoreRejections<C>> {
        let classifier = IgnoreRejections(self.classifier.clone());
        self.classifier(classifier)
    }

    /// A handle on the breaker.
    pub fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle {
            core: self.core.clone(),
        }
    }

    /// Asks the breaker to admit one call, outside tower: the entry point for adapters that
    /// are not tower services (rampart-reqwest's middleware).
    ///
    /// `Ok` holds the call's place (a half-open probe slot, if it is a probe) until its
    /// outcome is recorded with [`Record::record`](rampart_core::classify::Record::record) on
    /// the [`CallGuard`]; judge the result with [`CallGuard::classifier`]. Dropping the guard
    /// unrecorded counts the call as ignored and frees its slot. `Err` is the same
    /// [`CircuitOpen`](crate::CircuitOpen) rejection the service returns, and counts as one.
    ///
    /// ```
    /// use rampart_circuit_breaker::CircuitBreakerLayer;
    /// use rampart_core::classify::{Outcome, Record};
    ///
    /// let breaker = CircuitBreakerLayer::builder().consecutive_failures(1).layer().unwrap();
    /// let guard = breaker.try_acquire().expect("closed: admitted");
    /// guard.record(Outcome::TRANSIENT); // …the call failed: the breaker opens
    /// assert!(breaker.try_acquire().is_err());
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> Result<CallGuard<C>, crate::CircuitOpen> {
        CallGuard::acquire(&self.lanes[current_shard()])
    }
}

impl<S, C> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::from_parts(inner, self.lanes.clone())
    }
}

impl CircuitBreakerConfigBuilder {
    /// Validates the configuration and builds a [`CircuitBreakerLayer`].
    pub fn layer(self) -> Result<CircuitBreakerLayer, ConfigError> {
        Ok(CircuitBreakerLayer::new(self.build()?))
    }

    /// Validates the configuration and builds a [`KeyedCircuitBreakerLayer`] that keeps one
    /// breaker per key extracted by `extractor`.
    pub fn keyed<X, K>(self, extractor: X) -> Result<KeyedCircuitBreakerLayer<X, K>, ConfigError>
    where
        K: Hash + Eq + Clone + fmt::Debug,
    {
        Ok(KeyedCircuitBreakerLayer::new(self.build()?, extractor))
    }
}

/// Keeps one circuit breaker per key: per downstream host, tenant or route.
///
/// The key comes from a [`KeyExtractor`](rampart_core::key::KeyExtractor) (`ByAuthority`, `ByHeader`, [`key_fn`]). Requests
/// without a key share one fallback breaker. The registry is bounded by
/// [`max_keys`](CircuitBreakerConfigBuilder::max_keys) and
/// [`idle_timeout`](CircuitBreakerConfigBuilder::idle_timeout): memory can't grow without limit.
/// Every breaker in it has the same configuration and its name is `name/key`.
///
/// [`key_fn`]: rampart_core::key::key_fn
pub struct KeyedCircuitBreakerLayer<X, K, C = ResultClassifier> {
    registry: Arc<Registry<K, C>>,
    extractor: X,
    _key: PhantomData<fn() -> K>,
}

impl<X: Clone, K, C> Clone for KeyedCircuitBreakerLayer<X, K, C> {
    fn clone(&self) -> Self {
        Self {
            registry: self.registry.clone(),
            extractor: self.extractor.clone(),
            _key: PhantomData,
        }
    }
}

impl<X, K: fmt::Debug, C> fmt::Debug for KeyedCircuitBreakerLayer<X, K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerLayer")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl<X, K> KeyedCircuitBreakerLayer<X, K>
where
    K: Hash + Eq + Clone + fmt::Debug,
{
    /// One breaker per key extracted by `extractor`, each built from `config`.
    pub fn new(config: CircuitBreakerConfig, extractor: X) -> Self {
        Self {
            registry: Arc::new(Registry::new(config, ResultClassifier)),
            extractor,
            _key: PhantomData,
        }
    }
}

impl<X, K, C> KeyedCircuitBreakerLayer<X, K, C>
where
    K: Hash + Eq + Clone + fmt::Debug,
    C: Clone,
{
    /// Judges outcomes with `classifier`. It starts a new, empty registry: call it right after
    /// [`keyed`](CircuitBreakerConfigBuilder::keyed), before taking a [`handle`](Self::handle)
    /// or using the layer (a handle taken earlier watches the old registry).
    pub fn classifier<C2: Clone>(self, classifier: C2) -> KeyedCircuitBreakerLayer<X, K, C2> {
        let config = self.registry.config_ref().clone();
        KeyedCircuitBreakerLayer {
            registry: Arc::new(Registry::new(config, classifier)),
            extractor: self.extractor,
            _key: PhantomData,
        }
    }

    /// Counts rampart rejections from inner layers as neither success nor failure; see
    /// [`CircuitBreakerLayer::ignore_rejections`]. Like [`classifier`](Self::classifier), it
    /// starts a new, empty registry.
    pub fn ignore_rejections(self) -> KeyedCircuitBreakerLayer<X, K, IgnoreRejections<C>> {
        let classifier = IgnoreRejections(self.registry.classifier_ref().clone());
        self.classifier(classifier)
    }

    /// A handle on the registry.
    pub fn handle(&self) -> KeyedCircuitBreakerHandle<K, C> {
        KeyedCircuitBreakerHandle {
            registry: self.registry.clone(),
        }
    }

    /// The key extractor the layer was built with.
    pub fn extractor(&self) -> &X {
        &self.extractor
    }

    /// Asks the breaker of `key` (made on first use; `None` is the shared fallback breaker) to
    /// admit one call, outside tower. See [`CircuitBreakerLayer::try_acquire`]: the same
    /// [`CallGuard`] contract, per key.
    ///
    /// ```
    /// use rampart_circuit_breaker::CircuitBreakerLayer;
    /// use rampart_core::{classify::{Outcome, Record}, key::key_fn};
    ///
    /// let per_host = CircuitBreakerLayer::builder()
    ///     .consecutive_failures(1)
    ///     .keyed(key_fn(|host: &&'static str| Some(*host)))
    ///     .unwrap();
    /// per_host.try_acquire(Some("a")).unwrap().record(Outcome::TRANSIENT);
    /// assert!(per_host.try_acquire(Some("a")).is_err(), "a's breaker is open");
    /// assert!(per_host.try_acquire(Some("b")).is_ok(), "b's is not");
    /// ```
    pub fn try_acquire(&self, key: Option<K>) -> Result<CallGuard<C>, crate::CircuitOpen> {
        CallGuard::acquire_owned(self.registry.lane(key, current_shard()))
    }
}

impl<S, X, K, C> Layer<S> for KeyedCircuitBreakerLayer<X, K, C>
where
    X: Clone,
{
    type Service = KeyedCircuitBreaker<S, X, K, C>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedCircuitBreaker::from_parts(inner, self.registry.clone(), self.extractor.clone())
    }
}

/// A handle on a per-key registry: look up one key's breaker, list them, evict idle ones.
pub struct KeyedCircuitBreakerHandle<K, C = ResultClassifier> {
    registry: Arc<Registry<K, C>>,
}

impl<K, C> Clone for KeyedCircuitBreakerHandle<K, C> {
    fn clone(&self) -> Self {
        Self {
            registry: self.registry.clone(),
        }
    }
}

impl<K: fmt::Debug, C> fmt::Debug for KeyedCircuitBreakerHandle<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerHandle")
            .field("registry", &self.registry)
            .finish()
    }
}

impl<K, C> KeyedCircuitBreakerHandle<K, C>
where
    K: Hash + Eq + Clone + fmt::Debug,
    C: Clone,
{
    /// Every breaker of the registry (the keyless one included) while it lives, for shared
    /// state: held weakly, so sharing does not keep a dropped layer alive.
    pub(crate) fn cores(&self) -> impl Fn() -> Vec<Arc<crate::policy::Core>> + Send + Sync + 'static
    where
        K: Send + Sync + 'static,
        C: Send + Sync + 'static,
    {
        let registry = Arc::downgrade(&self.registry);
        move || {
            let Some(registry) = registry.upgrade() else {
                return Vec::new();
            };
            let mut cores: Vec<_> = registry
                .entries()
                .into_iter()
                .map(|(_, h)| h.core)
                .collect();
            cores.push(registry.fallback().core);
            cores
        }
    }

    /// The breaker of `key`, if it exists.
    pub fn get(&self, key: &K) -> Option<CircuitBreakerHandle> {
        self.registry.get(key)
    }

    /// The breaker used for requests without a key.
    pub fn fallback(&self) -> CircuitBreakerHandle {
        self.registry.fallback()
    }

    /// Every key and its breaker.
    pub fn breakers(&self) -> Vec<(K, CircuitBreakerHandle)> {
        self.registry.entries()
    }

    /// How many keyed breakers exist now.
    pub fn len(&self) -> usize {
        self.registry.len()
    }

    /// `true` if no keyed breaker exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every *closed* breaker unused for longer than the idle timeout; returns how many.
    /// A breaker that is open or half-open is kept, so a failing host is not forgotten. (The
    /// registry also does this by itself when it is full.)
    pub fn evict_idle(&self) -> usize {
        self.registry.evict_idle()
    }
}
