//! The bounded per-key breaker registry, over [`KeyedRegistry`].

use std::{fmt, hash::Hash, sync::Arc};

use rampart_core::registry::{KeyedRegistry, MetricKeys};

use crate::{
    config::CircuitBreakerConfig,
    events::State,
    handle::CircuitBreakerHandle,
    policy::{Core, Lane, Lanes, MetricLabels, Padded, lanes},
};

pub(crate) struct Entry<C> {
    core: Arc<Core>,
    lanes: Lanes<C>,
}

impl<C> Entry<C> {
    fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle {
            core: self.core.clone(),
        }
    }

    /// A breaker that is not closed is kept: forgetting it would send traffic to a failing host.
    fn pinned(&self) -> bool {
        self.core.state() != State::Closed
    }
}

/// One breaker per key, bounded by `max_keys` and `idle_timeout`; requests without a key share
/// a fallback breaker.
pub(crate) struct Registry<K, C> {
    config: CircuitBreakerConfig,
    classifier: C,
    keyed: KeyedRegistry<K, Entry<C>>,
    fallback: Entry<C>,
    metric_keys: MetricKeys,
}

impl<K: fmt::Debug, C> fmt::Debug for Registry<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("name", &self.config.name)
            .field("keys", &self.keyed)
            .finish()
    }
}

impl<K, C> Registry<K, C>
where
    K: Hash + Eq + Clone + fmt::Debug,
    C: Clone,
{
    pub(crate) fn new(config: CircuitBreakerConfig, classifier: C) -> Self {
        let core = Core::new(
            config.clone(),
            format!("{}/_", config.name).into(),
            MetricLabels {
                breaker: Arc::from(&*config.name),
                key: Some(Arc::from("_none")),
            },
        );
        let fallback = Entry {
            lanes: lanes(&core, &classifier),
            core,
        };
        Self {
            keyed: KeyedRegistry::new(config.registry, config.clock.clone(), Entry::pinned),
            metric_keys: MetricKeys::new(config.metrics_per_key),
            config,
            classifier,
            fallback,
        }
    }

    pub(crate) fn config_ref(&self) -> &CircuitBreakerConfig {
        &self.config
    }

    pub(crate) fn classifier_ref(&self) -> &C {
        &self.classifier
    }

    /// The lane of `key`'s breaker for `shard`, creating the breaker if needed.
    pub(crate) fn lane(&self, key: Option<K>, shard: usize) -> Arc<Padded<Lane<C>>> {
        let Some(key) = key else {
            return self.fallback.lanes[shard].clone();
        };
        self.keyed
            .with(
                key,
                |key| {
                    let core = Core::new(
                        self.config.clone(),
                        format!("{}/{:?}", self.config.name, key).into(),
                        MetricLabels {
                            breaker: Arc::from(&*self.config.name),
                            key: Some(self.metric_keys.label(key)),
                        },
                    );
                    Entry {
                        lanes: lanes(&core, &self.classifier),
                        core,
                    }
                },
                |e| e.lanes[shard].clone(),
            )
            // Full of open breakers: a new host shares the breaker of keyless requests rather
            // than evict one that protects a failing host.
            .unwrap_or_else(|| self.fallback.lanes[shard].clone())
    }

    pub(crate) fn evict_idle(&self) -> usize {
        self.keyed.evict_idle()
    }

    pub(crate) fn get(&self, key: &K) -> Option<CircuitBreakerHandle> {
        self.keyed.get(key, Entry::handle)
    }

    pub(crate) fn fallback(&self) -> CircuitBreakerHandle {
        self.fallback.handle()
    }

    pub(crate) fn entries(&self) -> Vec<(K, CircuitBreakerHandle)> {
        self.keyed.map_entries(|k, e| (k.clone(), e.handle()))
    }

    pub(crate) fn len(&self) -> usize {
        self.keyed.len()
    }
}
