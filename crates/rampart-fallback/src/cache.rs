//! [`LastGood`]: the last good response per key, bounded, with a time to live, and how stale an
//! entry is ([`Staleness`]).

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use rampart_core::error::ConfigError;
use tokio::time::Instant;

/// How old a cached answer is, as its configuration judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Staleness {
    /// Younger than [`fresh_for`](LastGoodBuilder::fresh_for).
    Fresh,
    /// Younger than [`stale_for`](LastGoodBuilder::stale_for).
    Stale,
    /// Older, but within [`max_age`](LastGoodBuilder::max_age).
    VeryStale,
}

impl Staleness {
    /// `fresh`, `stale` or `very-stale`: the header's token.
    pub const fn as_str(self) -> &'static str {
        match self {
            Staleness::Fresh => "fresh",
            Staleness::Stale => "stale",
            Staleness::VeryStale => "very-stale",
        }
    }
}

impl fmt::Display for Staleness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored response.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    at: Instant,
    seq: u64,
}

struct Entries {
    map: HashMap<String, Stored>,
    /// Insertion order, for evicting the oldest when full.
    order: BTreeMap<u64, String>,
    next: u64,
}

/// The last good response per key: at most [`max_entries`](LastGoodBuilder::max_entries), each
/// kept at most [`max_age`](LastGoodBuilder::max_age), bodies up to
/// [`max_body`](LastGoodBuilder::max_body).
///
/// Cloning shares the cache. When full, storing a new key evicts the oldest entry.
#[derive(Clone)]
pub struct LastGood {
    inner: Arc<Inner>,
}

struct Inner {
    entries: Mutex<Entries>,
    max_entries: usize,
    max_body: usize,
    fresh_for: Duration,
    stale_for: Duration,
    max_age: Duration,
}

impl fmt::Debug for LastGood {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LastGood")
            .field("entries", &self.len())
            .field("max_entries", &self.inner.max_entries)
            .field("max_age", &self.inner.max_age)
            .finish_non_exhaustive()
    }
}

impl LastGood {
    /// A builder: 10 000 entries, bodies up to 256 KiB, fresh for 30 s, stale up to 5 min,
    /// kept up to 1 h.
    pub fn builder() -> LastGoodBuilder {
        LastGoodBuilder {
            max_entries: 10_000,
            max_body: 256 * 1024,
            fresh_for: Duration::from_secs(30),
            stale_for: Duration::from_secs(300),
            max_age: Duration::from_secs(3600),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Each change is one insert or remove on both maps together: never left half-done.
        rampart_core::sync::lock(&self.inner.entries)
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// `true` if nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn max_body(&self) -> usize {
        self.inner.max_body
    }

    /// Stores the good response for `key`, replacing what was there.
    pub(crate) fn put(&self, key: String, status: StatusCode, headers: HeaderMap, body: Bytes) {
        let now = Instant::now();
        let mut e = self.lock();
        let seq = e.next;
        e.next += 1;
        if let Some(old) = e.map.remove(&key) {
            e.order.remove(&old.seq);
        }
        while e.map.len() >= self.inner.max_entries {
            let Some((_, oldest)) = e.order.pop_first() else {
                break;
            };
            e.map.remove(&oldest);
        }
        e.order.insert(seq, key.clone());
        e.map.insert(
            key,
            Stored {
                status,
                headers,
                body,
                at: now,
                seq,
            },
        );
    }

    /// The entry for `key` and how stale it is, unless there is none or it is past `max_age`
    /// (then it is dropped).
    pub(crate) fn get(&self, key: &str) -> Option<(Stored, Staleness, Duration)> {
        let mut e = self.lock();
        let age = e.map.get(key)?.at.elapsed();
        if age > self.inner.max_age {
            if let Some(old) = e.map.remove(key) {
                e.order.remove(&old.seq);
            }
            return None;
        }
        let staleness = if age <= self.inner.fresh_for {
            Staleness::Fresh
        } else if age <= self.inner.stale_for {
            Staleness::Stale
        } else {
            Staleness::VeryStale
        };
        e.map.get(key).map(|s| (s.clone(), staleness, age))
    }
}

/// Configures a [`LastGood`] cache.
#[derive(Debug, Clone)]
pub struct LastGoodBuilder {
    max_entries: usize,
    max_body: usize,
    fresh_for: Duration,
    stale_for: Duration,
    max_age: Duration,
}

impl LastGoodBuilder {
    /// At most `n` keys (the oldest entry goes first when full).
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }

    /// Only responses whose body is at most `bytes` long are cached; a larger one streams
    /// through and is not kept.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Entries younger than this are [`Staleness::Fresh`].
    pub fn fresh_for(mut self, d: Duration) -> Self {
        self.fresh_for = d;
        self
    }

    /// Entries younger than this (and older than `fresh_for`) are [`Staleness::Stale`].
    pub fn stale_for(mut self, d: Duration) -> Self {
        self.stale_for = d;
        self
    }

    /// Entries older than this are never served, and are dropped.
    pub fn max_age(mut self, d: Duration) -> Self {
        self.max_age = d;
        self
    }

    /// Checks the settings: `max_entries` ≥ 1, and `fresh_for` ≤ `stale_for` ≤ `max_age`.
    pub fn build(self) -> Result<LastGood, ConfigError> {
        const C: &str = "fallback cache";
        if self.max_entries == 0 {
            return Err(ConfigError::new(
                C,
                "max_entries",
                "must be at least 1, got 0",
            ));
        }
        if self.fresh_for > self.stale_for {
            return Err(ConfigError::new(
                C,
                "fresh_for",
                format!(
                    "must be at most stale_for ({:?}), got {:?}",
                    self.stale_for, self.fresh_for
                ),
            ));
        }
        if self.stale_for > self.max_age {
            return Err(ConfigError::new(
                C,
                "stale_for",
                format!(
                    "must be at most max_age ({:?}), got {:?}",
                    self.max_age, self.stale_for
                ),
            ));
        }
        Ok(LastGood {
            inner: Arc::new(Inner {
                entries: Mutex::new(Entries {
                    map: HashMap::new(),
                    order: BTreeMap::new(),
                    next: 0,
                }),
                max_entries: self.max_entries,
                max_body: self.max_body,
                fresh_for: self.fresh_for,
                stale_for: self.stale_for,
                max_age: self.max_age,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> LastGood {
        LastGood::builder()
            .max_entries(2)
            .fresh_for(Duration::from_secs(10))
            .stale_for(Duration::from_secs(60))
            .max_age(Duration::from_secs(600))
            .build()
            .unwrap()
    }

    fn put(c: &LastGood, k: &str) {
        c.put(
            k.into(),
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from(k.to_owned()),
        );
    }

    #[tokio::test(start_paused = true)]
    async fn staleness_grows_with_age_and_old_entries_go() {
        let c = cache();
        put(&c, "a");
        assert_eq!(c.get("a").unwrap().1, Staleness::Fresh);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(c.get("a").unwrap().1, Staleness::Stale);
        tokio::time::advance(Duration::from_secs(60)).await;
        let (stored, staleness, age) = c.get("a").unwrap();
        assert_eq!(staleness, Staleness::VeryStale);
        assert_eq!(age, Duration::from_secs(90));
        assert_eq!(stored.body, "a");
        tokio::time::advance(Duration::from_secs(600)).await;
        assert!(c.get("a").is_none());
        assert!(c.is_empty(), "dropped once past max_age");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_cache_evicts_the_oldest_entry() {
        let c = cache();
        put(&c, "a");
        put(&c, "b");
        put(&c, "a"); // refreshed: now the newest
        put(&c, "c");
        assert_eq!(c.len(), 2);
        assert!(c.get("b").is_none(), "the oldest went");
        assert!(c.get("a").is_some() && c.get("c").is_some());
    }

    #[test]
    fn bad_settings_name_the_field() {
        assert_eq!(
            LastGood::builder()
                .max_entries(0)
                .build()
                .unwrap_err()
                .field(),
            "max_entries"
        );
        let err = LastGood::builder()
            .fresh_for(Duration::from_secs(600))
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "fresh_for");
        let err = LastGood::builder()
            .max_age(Duration::from_secs(1))
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "stale_for");
    }
}
