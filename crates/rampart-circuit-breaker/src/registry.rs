//! The bounded per-key breaker registry.

use std::{
    collections::HashMap,
    fmt,
    hash::Hash,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use rampart_core::clock::Instant;

use crate::{
    config::CircuitBreakerConfig,
    events::State,
    handle::CircuitBreakerHandle,
    policy::{Core, Lane, Lanes, Padded, lanes},
};

struct Entry<C> {
    core: Arc<Core>,
    lanes: Lanes<C>,
    last_used: AtomicU64,
}

/// One breaker per key, at most `max_keys` of them; a key unused for `idle_timeout` may be
/// evicted, and when the registry is full the least recently used *closed* breaker goes first
/// (an open breaker is evicted only if every breaker is open, so a failing host is not
/// forgotten while healthy ones are kept).
pub(crate) struct Registry<K, C> {
    config: CircuitBreakerConfig,
    classifier: C,
    epoch: Instant,
    map: RwLock<HashMap<K, Arc<Entry<C>>>>,
    /// The breaker for requests that have no key.
    fallback: Arc<Entry<C>>,
}

impl<K: fmt::Debug, C> fmt::Debug for Registry<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("name", &self.config.name)
            .field("keys", &self.map.read().map(|m| m.len()).unwrap_or(0))
            .finish()
    }
}

impl<K, C> Registry<K, C>
where
    K: Hash + Eq + Clone + fmt::Debug,
    C: Clone,
{
    pub(crate) fn new(config: CircuitBreakerConfig, classifier: C) -> Self {
        let epoch = config.clock.now();
        let core = Core::new(config.clone(), format!("{}/_", config.name).into());
        let fallback = Arc::new(Entry {
            lanes: lanes(&core, &classifier),
            core,
            last_used: AtomicU64::new(0),
        });
        Self {
            config,
            classifier,
            epoch,
            map: RwLock::new(HashMap::new()),
            fallback,
        }
    }

    pub(crate) fn config_ref(&self) -> &CircuitBreakerConfig {
        &self.config
    }

    fn now_secs(&self) -> u64 {
        self.config
            .clock
            .now()
            .saturating_duration_since(self.epoch)
            .as_secs()
    }

    /// The lane of `key`'s breaker for `shard`, creating the breaker if needed.
    pub(crate) fn lane(&self, key: Option<K>, shard: usize) -> Arc<Padded<Lane<C>>> {
        let Some(key) = key else {
            return self.fallback.lanes[shard].clone();
        };
        let now = self.now_secs();
        if let Ok(map) = self.map.read() {
            if let Some(e) = map.get(&key) {
                if e.last_used.load(Ordering::Relaxed) != now {
                    e.last_used.store(now, Ordering::Relaxed);
                }
                return e.lanes[shard].clone();
            }
        }
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get(&key) {
            return e.lanes[shard].clone();
        }
        if map.len() >= self.config.max_keys {
            self.evict(&mut map, now);
        }
        let core = Core::new(
            self.config.clone(),
            format!("{}/{:?}", self.config.name, key).into(),
        );
        let entry = Arc::new(Entry {
            lanes: lanes(&core, &self.classifier),
            core,
            last_used: AtomicU64::new(now),
        });
        let lane = entry.lanes[shard].clone();
        map.insert(key, entry);
        lane
    }

    fn evict(&self, map: &mut HashMap<K, Arc<Entry<C>>>, now: u64) {
        let idle = self.config.idle_timeout.as_secs();
        map.retain(|_, e| now.saturating_sub(e.last_used.load(Ordering::Relaxed)) < idle.max(1));
        if map.len() < self.config.max_keys {
            return;
        }
        let victim = map
            .iter()
            .min_by_key(|(_, e)| {
                (
                    e.core.state() != State::Closed,
                    e.last_used.load(Ordering::Relaxed),
                )
            })
            .map(|(k, _)| k.clone());
        if let Some(k) = victim {
            tracing::debug!(target: "rampart::circuit_breaker", key = ?k, "per-key breaker registry full: evicting the least recently used breaker");
            map.remove(&k);
        }
    }

    /// Drops every breaker idle for longer than the idle timeout; returns how many.
    pub(crate) fn evict_idle(&self) -> usize {
        let now = self.now_secs();
        let idle = self.config.idle_timeout.as_secs().max(1);
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        let before = map.len();
        map.retain(|_, e| now.saturating_sub(e.last_used.load(Ordering::Relaxed)) < idle);
        before - map.len()
    }

    pub(crate) fn get(&self, key: &K) -> Option<CircuitBreakerHandle> {
        let map = self.map.read().ok()?;
        map.get(key).map(|e| CircuitBreakerHandle {
            core: e.core.clone(),
        })
    }

    pub(crate) fn fallback(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle {
            core: self.fallback.core.clone(),
        }
    }

    pub(crate) fn entries(&self) -> Vec<(K, CircuitBreakerHandle)> {
        self.map
            .read()
            .map(|m| {
                m.iter()
                    .map(|(k, e)| {
                        (
                            k.clone(),
                            CircuitBreakerHandle {
                                core: e.core.clone(),
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.read().map(|m| m.len()).unwrap_or(0)
    }
}
