//! [`BulkheadHandle`]: live stats and run-time resizing of one bulkhead; and
//! [`KeyedBulkheadHandle`]: the partitions of a keyed one.

use std::{fmt, hash::Hash, sync::Arc};

use rampart_core::error::ConfigError;

use crate::{
    partitions::Partitions,
    policy::{Core, Stats},
};

/// A handle on one bulkhead (or one partition): live stats, and resizing at run time. Cheap to
/// clone; every clone controls the same bulkhead.
///
/// ```
/// use rampart_bulkhead::BulkheadLayer;
///
/// let layer = BulkheadLayer::builder().name("db").max_concurrent(8).layer().unwrap();
/// let handle = layer.handle();
/// assert_eq!(handle.stats().capacity, 8);
/// handle.set_capacity(16).unwrap(); // e.g. after the database was scaled up
/// assert_eq!(handle.stats().capacity, 16);
/// assert_eq!(handle.set_capacity(0).unwrap_err().field(), "capacity");
/// ```
#[derive(Clone)]
pub struct BulkheadHandle {
    pub(crate) core: Arc<Core>,
}

impl std::fmt::Debug for BulkheadHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkheadHandle")
            .field("name", &self.core.name)
            .finish()
    }
}

impl BulkheadHandle {
    /// The bulkhead's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// Active, queued and rejected calls, the longest wait, and the same per class.
    pub fn stats(&self) -> Stats {
        self.core.stats()
    }

    /// Sets the total capacity (at least the sum of the reservations). Calls in flight keep
    /// their permits: a smaller capacity applies to calls admitted from now on, a larger one
    /// admits waiting calls at once.
    pub fn set_capacity(&self, capacity: u32) -> Result<(), ConfigError> {
        self.core.set_capacity(capacity)
    }

    /// Sets the reservation of the class `class`; the capacity grows or shrinks by the same
    /// amount, so the other classes keep theirs. For a bulkhead without classes this is the
    /// `"default"` class, and the same as [`set_capacity`](Self::set_capacity).
    pub fn set_reserved(&self, class: &str, reserved: u32) -> Result<(), ConfigError> {
        self.core.set_reserved(class, reserved)
    }
}

/// A handle on the partitions of a [`KeyedBulkheadLayer`](crate::KeyedBulkheadLayer): one
/// partition's [`BulkheadHandle`] by key, the fallback partition, all of them. Cheap to clone.
///
/// ```
/// use rampart_bulkhead::BulkheadLayer;
/// use rampart_core::key::key_fn;
///
/// let per_tenant = BulkheadLayer::builder()
///     .max_concurrent(2)
///     .keyed(key_fn(|tenant: &&'static str| Some(*tenant)))
///     .unwrap();
/// let handle = per_tenant.handle();
/// let _permit = per_tenant.acquire(Some("acme"), None);
/// assert_eq!(handle.get(&"acme").unwrap().stats().capacity, 2);
/// assert!(handle.get(&"globex").is_none(), "made on first use");
/// assert_eq!(handle.len(), 1);
/// ```
pub struct KeyedBulkheadHandle<K> {
    pub(crate) partitions: Arc<Partitions<K>>,
}

impl<K> Clone for KeyedBulkheadHandle<K> {
    fn clone(&self) -> Self {
        Self {
            partitions: self.partitions.clone(),
        }
    }
}

impl<K: fmt::Debug> fmt::Debug for KeyedBulkheadHandle<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBulkheadHandle")
            .field("partitions", &self.partitions)
            .finish()
    }
}

impl<K> KeyedBulkheadHandle<K>
where
    K: Hash + Eq + Clone + fmt::Debug,
{
    /// The partition of `key`, if it exists.
    pub fn get(&self, key: &K) -> Option<BulkheadHandle> {
        self.partitions.get(key).map(|core| BulkheadHandle { core })
    }

    /// The partition for requests without a key (and for new keys while every partition is
    /// busy and the registry full).
    pub fn fallback(&self) -> BulkheadHandle {
        BulkheadHandle {
            core: self.partitions.fallback.clone(),
        }
    }

    /// Every key and its partition.
    pub fn partitions(&self) -> Vec<(K, BulkheadHandle)> {
        self.partitions
            .entries()
            .into_iter()
            .map(|(k, core)| (k, BulkheadHandle { core }))
            .collect()
    }

    /// How many keyed partitions exist now.
    pub fn len(&self) -> usize {
        self.partitions.len()
    }

    /// `true` if no keyed partition exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every partition with no call in flight or waiting that was unused for longer than
    /// the idle timeout; returns how many. A busy partition is kept (a fresh one for the same
    /// key would admit past the limit). The registry also does this by itself when it is full.
    pub fn evict_idle(&self) -> usize {
        self.partitions.evict_idle()
    }
}
