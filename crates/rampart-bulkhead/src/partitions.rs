//! [`Partitions`]: the bounded registry of a keyed bulkhead's partitions, shared by its layer,
//! its services and its handle.

use std::{fmt, hash::Hash, sync::Arc};

use rampart_core::registry::{KeyedRegistry, MetricKeys};

use crate::{config::BulkheadConfig, policy::Core};

/// The partitions of a keyed bulkhead.
pub(crate) struct Partitions<K> {
    config: BulkheadConfig,
    keyed: KeyedRegistry<K, Arc<Core>>,
    pub(crate) fallback: Arc<Core>,
    metric_keys: MetricKeys,
}

impl<K: fmt::Debug> fmt::Debug for Partitions<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partitions")
            .field("name", &self.config.name())
            .field("keys", &self.keyed)
            .finish()
    }
}

impl<K> Partitions<K>
where
    K: Hash + Eq + Clone + fmt::Debug,
{
    pub(crate) fn new(config: BulkheadConfig) -> Self {
        let fallback = Core::new(
            &config,
            format!("{}/_", config.name()).into(),
            Some(Arc::from("_none")),
        );
        // A partition with calls in flight or waiting is never evicted: a fresh partition for
        // the same key would admit past the limit.
        let keyed =
            KeyedRegistry::new(config.registry, config.clock.clone(), |core: &Arc<Core>| {
                !core.is_idle()
            });
        Self {
            metric_keys: MetricKeys::new(config.metrics_per_key),
            config,
            keyed,
            fallback,
        }
    }

    /// The partition of `key` (made on first use); requests without a key share the fallback.
    pub(crate) fn core(&self, key: Option<K>) -> Arc<Core> {
        match key {
            None => self.fallback.clone(),
            Some(key) => self
                .keyed
                .with(
                    key,
                    |key| {
                        Core::new(
                            &self.config,
                            format!("{}/{key:?}", self.config.name()).into(),
                            Some(self.metric_keys.label(key)),
                        )
                    },
                    Arc::clone,
                )
                // Every partition busy: a new key shares the fallback partition rather than
                // evict one with calls in flight (which would admit past its limit).
                .unwrap_or_else(|| self.fallback.clone()),
        }
    }

    /// `key`'s partition, if it exists.
    pub(crate) fn get(&self, key: &K) -> Option<Arc<Core>> {
        self.keyed.get(key, Arc::clone)
    }

    /// Every key and its partition.
    pub(crate) fn entries(&self) -> Vec<(K, Arc<Core>)> {
        self.keyed.map_entries(|k, core| (k.clone(), core.clone()))
    }

    /// How many keyed partitions exist.
    pub(crate) fn len(&self) -> usize {
        self.keyed.len()
    }

    /// Drops the idle partitions unused for longer than the idle timeout; how many.
    pub(crate) fn evict_idle(&self) -> usize {
        self.keyed.evict_idle()
    }
}
