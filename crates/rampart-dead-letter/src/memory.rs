//! [`MemoryStore`]: a bounded in-memory store, for tests and as a last-resort secondary.

use std::{collections::BTreeMap, sync::Mutex};

use rampart_core::{BoxFuture, error::ConfigError};

use crate::{
    record::{DeadLetter, DeadLetterId},
    store::{DeadLetterStore, Filter, Query, Stats, StoreError, StoreErrorKind},
};

/// Dead letters in memory, at most `capacity` of them.
///
/// Not durable: a restart loses them. When full, `append` fails with
/// [`StoreErrorKind::Full`] (the layer then tries its secondary store, or returns the error
/// with the original failure): a record is never dropped to make room.
///
/// ```
/// use rampart_dead_letter::{MemoryStore, DeadLetterStore};
///
/// let store = MemoryStore::bounded(1000).unwrap();
/// assert!(MemoryStore::bounded(0).unwrap_err().to_string().contains("capacity"));
/// # let _ = store;
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    records: Mutex<BTreeMap<DeadLetterId, DeadLetter>>,
    capacity: usize,
}

impl MemoryStore {
    /// A store that holds at most `capacity` records; `capacity` must be at least 1.
    pub fn bounded(capacity: usize) -> Result<Self, ConfigError> {
        if capacity == 0 {
            return Err(ConfigError::new(
                "memory dead-letter store",
                "capacity",
                "must be at least 1, got 0",
            ));
        }
        Ok(Self {
            records: Mutex::new(BTreeMap::new()),
            capacity,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<DeadLetterId, DeadLetter>> {
        // A panic while holding the lock cannot leave the map half-changed: every change is
        // one insert or remove.
        rampart_core::sync::lock(&self.records)
    }

    fn error(&self, kind: StoreErrorKind) -> StoreError {
        StoreError::new(self.describe(), kind)
    }

    fn insert(&self, records: &[DeadLetter]) -> Result<(), StoreError> {
        let mut map = self.lock();
        if map.len() + records.len() > self.capacity {
            return Err(self.error(StoreErrorKind::Full).with_source(format!(
                "holds {} of {} records",
                map.len(),
                self.capacity
            )));
        }
        if records.iter().any(|r| map.contains_key(&r.id)) {
            return Err(self.error(StoreErrorKind::Conflict));
        }
        for r in records {
            map.insert(r.id, r.clone());
        }
        Ok(())
    }
}

impl DeadLetterStore for MemoryStore {
    fn describe(&self) -> String {
        format!("memory(capacity {})", self.capacity)
    }

    /// Kept in memory: gone with the process.
    fn is_durable(&self) -> bool {
        false
    }

    fn append<'a>(&'a self, record: &'a DeadLetter) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { self.insert(std::slice::from_ref(record)) })
    }

    fn append_batch<'a>(
        &'a self,
        records: &'a [DeadLetter],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { self.insert(records) })
    }

    fn get(&self, id: DeadLetterId) -> BoxFuture<'_, Result<Option<DeadLetter>, StoreError>> {
        Box::pin(async move { Ok(self.lock().get(&id).cloned()) })
    }

    fn list<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<DeadLetter>, StoreError>> {
        Box::pin(async move {
            let map = self.lock();
            let start = match query.after {
                Some(after) => std::ops::Bound::Excluded(after),
                None => std::ops::Bound::Unbounded,
            };
            Ok(map
                .range((start, std::ops::Bound::Unbounded))
                .map(|(_, r)| r)
                .filter(|r| query.filter.matches(r))
                .take(query.limit)
                .cloned()
                .collect())
        })
    }

    fn update<'a>(&'a self, record: &'a DeadLetter) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            match self.lock().get_mut(&record.id) {
                Some(slot) if slot.revision == record.revision => {
                    *slot = record.clone();
                    slot.revision += 1;
                    Ok(())
                }
                Some(slot) => Err(self.error(StoreErrorKind::Stale).with_source(format!(
                    "record {} is at revision {}, not {}",
                    record.id, slot.revision, record.revision
                ))),
                None => Err(self.error(StoreErrorKind::NotFound)),
            }
        })
    }

    fn delete(&self, id: DeadLetterId) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move { Ok(self.lock().remove(&id).is_some()) })
    }

    fn purge<'a>(&'a self, filter: &'a Filter) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut map = self.lock();
            let before = map.len();
            map.retain(|_, r| !filter.matches(r));
            Ok((before - map.len()) as u64)
        })
    }

    fn stats(&self) -> BoxFuture<'_, Result<Stats, StoreError>> {
        Box::pin(async move { Ok(Stats::count(self.lock().values())) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        crate::conformance::run(&MemoryStore::bounded(10_000).unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_updates_and_redrives_send_each_record_once() {
        let store = std::sync::Arc::new(MemoryStore::bounded(100).unwrap());
        crate::conformance::concurrent_redrives(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_drain_workers_send_each_record_once() {
        let store = std::sync::Arc::new(MemoryStore::bounded(100).unwrap());
        crate::conformance::concurrent_drains(store).await;
    }

    #[tokio::test]
    async fn a_full_store_refuses_with_an_error_and_keeps_what_it_has() {
        let store = MemoryStore::bounded(2).unwrap();
        let records: Vec<_> = (0..3).map(crate::conformance::record).collect();
        store.append(&records[0]).await.unwrap();
        store.append(&records[1]).await.unwrap();
        let err = store.append(&records[2]).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Full);
        assert!(err.to_string().contains("full: holds 2 of 2"), "{err}");
        assert_eq!(store.stats().await.unwrap().total, 2);
    }
}
