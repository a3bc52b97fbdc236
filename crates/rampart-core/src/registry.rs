//! [`KeyedRegistry`]: one policy instance per key (per host, tenant, route), bounded.
//!
//! Every per-key pattern (a breaker per host, a bulkhead partition per tenant) needs the same
//! map: find the instance of a key, make it on first use, and never let the map grow without
//! limit. This one is bounded two ways:
//!
//! - **`max_keys`**: when a new key arrives and the map is full, idle entries are dropped first,
//!   then the least recently used *unpinned* ones, an eighth of `max_keys` at once (so one pass
//!   over the map makes room for many new keys: O(1) per new key, amortised). A pinned entry is
//!   never evicted: when every entry is pinned, the new key gets no entry of its own
//!   ([`with`](KeyedRegistry::with) returns `None`, and the pattern falls back to its shared
//!   instance), counted in [`overflows`](KeyedRegistry::overflows).
//! - **`idle_timeout`**: an entry unused that long is dropped at the next eviction pass (when the
//!   map is full, or on [`evict_idle`](KeyedRegistry::evict_idle)), unless it is pinned.
//!
//! An entry is *pinned* when the pattern says it still matters: an open breaker (forgetting
//! it would send traffic to a failing host), a partition with calls in flight (dropping it would
//! let a fresh partition admit past the limit). The pattern passes that test as a function.
//!
//! Lookups of an existing key take a read lock and, at most once a second per key, a relaxed
//! store of the last-use time. Only a new key takes the write lock.

use std::{
    collections::HashMap,
    fmt,
    hash::Hash,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use crate::{
    clock::{Instant, SharedClock},
    error::ConfigError,
};

/// The bounds of a [`KeyedRegistry`], as every per-key pattern's builder takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryLimits {
    /// At most this many keys are kept (at least 1; default 1024).
    pub max_keys: usize,
    /// An entry unused this long may be evicted, unless pinned (more than zero; default
    /// 10 min; counted in whole seconds).
    pub idle_timeout: Duration,
}

impl Default for RegistryLimits {
    fn default() -> Self {
        Self {
            max_keys: 1024,
            idle_timeout: Duration::from_secs(600),
        }
    }
}

impl RegistryLimits {
    /// Checks both bounds; the error names the field (`max_keys`, `idle_timeout`) and
    /// `component`.
    pub fn validate(&self, component: &'static str) -> Result<(), ConfigError> {
        if self.max_keys == 0 {
            return Err(ConfigError::new(
                component,
                "max_keys",
                "must be at least 1, got 0",
            ));
        }
        if self.idle_timeout.is_zero() {
            return Err(ConfigError::new(
                component,
                "idle_timeout",
                "must be greater than zero, got 0s",
            ));
        }
        Ok(())
    }
}

struct Entry<V> {
    value: V,
    /// Seconds since the registry's epoch.
    last_used: AtomicU64,
}

/// A bounded map from key to a per-key policy instance. See the [module docs](self).
pub struct KeyedRegistry<K, V> {
    max_keys: usize,
    idle_secs: u64,
    clock: SharedClock,
    epoch: Instant,
    pinned: fn(&V) -> bool,
    map: RwLock<HashMap<K, Arc<Entry<V>>>>,
    overflows: AtomicU64,
}

/// The label that names the instance on every rampart metric series: `name`, the value of each
/// layer's `.name(…)` (as Resilience4j tags every meter with `name`). One key for every
/// pattern, so one dashboard query (`{name="payments"}`) finds a dependency's breaker,
/// bulkhead, retries and timeouts alike.
pub const INSTANCE_LABEL: &str = "name";

/// The `key` label of a keyed instance's metric series, with the number of series bounded:
/// the first `cap` keys get their own (their key's text), later ones share
/// [`OTHER_KEYS`]. A key keeps its label for the life of its instance; a key evicted and seen
/// again may get `_other`. With a cap of 0 (the patterns' default) every key shares one series.
#[derive(Debug)]
pub struct MetricKeys {
    cap: usize,
    given: AtomicUsize,
}

/// The `key` label shared by keyed instances beyond the per-key cap.
pub const OTHER_KEYS: &str = "_other";

impl MetricKeys {
    /// At most `cap` keys get a series of their own.
    pub const fn new(cap: usize) -> Self {
        Self {
            cap,
            given: AtomicUsize::new(0),
        }
    }

    /// The `key` label for a new instance of `key`.
    pub fn label(&self, key: &dyn fmt::Debug) -> Arc<str> {
        let own = self
            .given
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.cap).then_some(n + 1)
            })
            .is_ok();
        if own {
            Arc::from(format!("{key:?}"))
        } else {
            Arc::from(OTHER_KEYS)
        }
    }
}

impl<K: fmt::Debug, V> fmt::Debug for KeyedRegistry<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRegistry")
            .field("max_keys", &self.max_keys)
            .field("idle_secs", &self.idle_secs)
            .field("keys", &crate::sync::read(&self.map).len())
            .finish_non_exhaustive()
    }
}

impl<K, V> KeyedRegistry<K, V>
where
    K: Hash + Eq + Clone,
{
    /// A registry within `limits` (`max_keys` at least 1; `idle_timeout` rounded to whole
    /// seconds, at least 1 s), where an idle entry may be dropped unless `pinned` says it must
    /// be kept.
    pub fn new(limits: RegistryLimits, clock: SharedClock, pinned: fn(&V) -> bool) -> Self {
        let epoch = clock.now();
        Self {
            max_keys: limits.max_keys.max(1),
            idle_secs: limits.idle_timeout.as_secs().max(1),
            clock,
            epoch,
            pinned,
            map: RwLock::new(HashMap::new()),
            overflows: AtomicU64::new(0),
        }
    }

    fn now_secs(&self) -> u64 {
        self.clock
            .now()
            .saturating_duration_since(self.epoch)
            .as_secs()
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<K, Arc<Entry<V>>>> {
        crate::sync::read(&self.map)
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<K, Arc<Entry<V>>>> {
        crate::sync::write(&self.map)
    }

    /// Runs `read` on the entry of `key`, making the entry with `make` if there is none.
    ///
    /// `None` if `key` has no entry and none can be made: the registry is full and every
    /// entry in it is pinned (counted in [`overflows`](Self::overflows)).
    pub fn with<R>(
        &self,
        key: K,
        make: impl FnOnce(&K) -> V,
        read: impl FnOnce(&V) -> R,
    ) -> Option<R> {
        let now = self.now_secs();
        {
            let map = self.read_map();
            if let Some(e) = map.get(&key) {
                if e.last_used.load(Ordering::Relaxed) != now {
                    e.last_used.store(now, Ordering::Relaxed);
                }
                return Some(read(&e.value));
            }
        }
        let mut map = self.write_map();
        if let Some(e) = map.get(&key) {
            return Some(read(&e.value));
        }
        if map.len() >= self.max_keys && !self.make_room(&mut map, now) {
            let n = self.overflows.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    target: "rampart::registry",
                    max_keys = self.max_keys, overflows = n,
                    "per-key registry full of entries that must be kept (open breakers, busy \
                     partitions): a new key shares the fallback instance"
                );
            }
            return None;
        }
        let entry = Arc::new(Entry {
            value: make(&key),
            last_used: AtomicU64::new(now),
        });
        let out = read(&entry.value);
        map.insert(key, entry);
        Some(out)
    }

    /// Makes room for new keys: drops idle unpinned entries, then the least recently used
    /// unpinned ones, down to seven eighths of `max_keys`. `false` if no room could be made
    /// (every entry is pinned).
    fn make_room(&self, map: &mut HashMap<K, Arc<Entry<V>>>, now: u64) -> bool {
        let idle = self.idle_secs;
        let pinned = self.pinned;
        map.retain(|_, e| {
            pinned(&e.value) || now.saturating_sub(e.last_used.load(Ordering::Relaxed)) < idle
        });
        let target = self.max_keys - (self.max_keys / 8).max(1);
        if map.len() <= target {
            return true;
        }
        let mut unpinned: Vec<(u64, K)> = map
            .iter()
            .filter(|(_, e)| !pinned(&e.value))
            .map(|(k, e)| (e.last_used.load(Ordering::Relaxed), k.clone()))
            .collect();
        let evict = (map.len() - target).min(unpinned.len());
        if evict > 0 {
            unpinned.select_nth_unstable_by_key(evict - 1, |(t, _)| *t);
            tracing::debug!(
                target: "rampart::registry",
                max_keys = self.max_keys, evicted = evict,
                "per-key registry full: evicting the least recently used entries"
            );
            for (_, k) in &unpinned[..evict] {
                map.remove(k);
            }
        }
        map.len() < self.max_keys
    }

    /// How many new keys found the registry full of pinned entries and got no entry of
    /// their own (see [`with`](Self::with)).
    pub fn overflows(&self) -> u64 {
        self.overflows.load(Ordering::Relaxed)
    }

    /// Runs `read` on the entry of `key`, if there is one.
    pub fn get<R>(&self, key: &K, read: impl FnOnce(&V) -> R) -> Option<R> {
        self.read_map().get(key).map(|e| read(&e.value))
    }

    /// Maps every entry with `f`.
    pub fn map_entries<R>(&self, mut f: impl FnMut(&K, &V) -> R) -> Vec<R> {
        self.read_map()
            .iter()
            .map(|(k, e)| f(k, &e.value))
            .collect()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.read_map().len()
    }

    /// `true` if there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every unpinned entry unused for longer than the idle timeout; returns how many.
    pub fn evict_idle(&self) -> usize {
        let now = self.now_secs();
        let pinned = self.pinned;
        let idle = self.idle_secs;
        let mut map = self.write_map();
        let before = map.len();
        map.retain(|_, e| {
            pinned(&e.value) || now.saturating_sub(e.last_used.load(Ordering::Relaxed)) < idle
        });
        before - map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::atomic::AtomicBool;

    struct V {
        id: u32,
        pinned: AtomicBool,
    }

    fn v(id: u32) -> V {
        V {
            id,
            pinned: AtomicBool::new(false),
        }
    }

    fn registry(clock: &ManualClock, max: usize) -> KeyedRegistry<&'static str, V> {
        let limits = RegistryLimits {
            max_keys: max,
            idle_timeout: Duration::from_secs(60),
        };
        KeyedRegistry::new(limits, clock.shared(), |v| v.pinned.load(Ordering::Relaxed))
    }

    #[test]
    fn makes_an_entry_once_per_key() {
        let clock = ManualClock::new();
        let r = registry(&clock, 8);
        let mut made = 0;
        for _ in 0..3 {
            let id = r.with(
                "a",
                |_| {
                    made += 1;
                    v(7)
                },
                |v| v.id,
            );
            assert_eq!(id, Some(7));
        }
        assert_eq!((made, r.len()), (1, 1));
        assert_eq!(r.get(&"a", |v| v.id), Some(7));
        assert_eq!(r.get(&"b", |v| v.id), None);
    }

    #[test]
    fn full_registry_evicts_the_least_recently_used_unpinned_entry() {
        let clock = ManualClock::new();
        let r = registry(&clock, 2);
        r.with(
            "old-pinned",
            |_| v(1),
            |v| v.pinned.store(true, Ordering::Relaxed),
        );
        clock.advance(Duration::from_secs(2));
        r.with("newer", |_| v(2), |_| ());
        clock.advance(Duration::from_secs(2));
        r.with("newest", |_| v(3), |_| ());
        let mut keys = r.map_entries(|k, _| *k);
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["newest", "old-pinned"],
            "the pinned entry outlives a newer one"
        );

        // Every entry pinned: none is evicted, the bound holds, and the new key gets no entry
        // (the pattern's fallback instance serves it), counted.
        r.with(
            "newest",
            |_| v(3),
            |v| v.pinned.store(true, Ordering::Relaxed),
        );
        assert_eq!(r.with("another", |_| v(4), |_| ()), None);
        assert_eq!(r.len(), 2);
        assert!(
            r.get(&"old-pinned", |_| ()).is_some(),
            "a pinned entry stays"
        );
        assert_eq!(r.overflows(), 1);
    }

    #[test]
    fn a_full_registry_makes_room_for_many_keys_at_once() {
        let clock = ManualClock::new();
        let r = registry(&clock, 64);
        let made = AtomicUsize::new(0);
        for i in 0..64u32 {
            clock.advance(Duration::from_secs(1));
            let key: &'static str = Box::leak(i.to_string().into_boxed_str());
            r.with(key, |_| v(i), |_| ());
        }
        // One eviction pass drops an eighth: the next 8 new keys need no pass of their own.
        let passes = |r: &KeyedRegistry<&'static str, V>| r.len();
        r.with("new-0", |_| v(100), |_| ());
        let after_pass = passes(&r);
        assert_eq!(after_pass, 64 - 8 + 1);
        for i in 1..8u32 {
            let key: &'static str = Box::leak(format!("new-{i}").into_boxed_str());
            r.with(
                key,
                |_| {
                    made.fetch_add(1, Ordering::Relaxed);
                    v(100 + i)
                },
                |_| (),
            );
        }
        assert_eq!(r.len(), 64, "filled back up without evicting");
        assert_eq!(made.load(Ordering::Relaxed), 7);
        // The oldest went first.
        assert!(r.get(&"0", |_| ()).is_none() && r.get(&"7", |_| ()).is_none());
        assert!(r.get(&"8", |_| ()).is_some());
    }

    #[test]
    fn idle_entries_go_unless_pinned() {
        let clock = ManualClock::new();
        let r = registry(&clock, 8);
        r.with("idle", |_| v(1), |_| ());
        r.with(
            "busy",
            |_| v(2),
            |v| v.pinned.store(true, Ordering::Relaxed),
        );
        r.with("used", |_| v(3), |_| ());
        clock.advance(Duration::from_secs(59));
        r.with("used", |_| v(3), |_| ());
        clock.advance(Duration::from_secs(1));
        assert_eq!(r.evict_idle(), 1);
        let mut keys = r.map_entries(|k, _| *k);
        keys.sort_unstable();
        assert_eq!(keys, ["busy", "used"]);
    }
}
