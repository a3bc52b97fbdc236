//! [`FailingStore`]: a store that is down, for testing what a layer does then.

use super::*;

/// A store that fails everything with [`StoreErrorKind::Unavailable`] (or the kind it is
/// made with) and counts the calls: for testing what a layer does when its store is down.
#[derive(Debug)]
pub struct FailingStore {
    kind: StoreErrorKind,
    calls: std::sync::atomic::AtomicU64,
}

impl Default for FailingStore {
    fn default() -> Self {
        Self::new()
    }
}

impl FailingStore {
    /// A store that is always unavailable.
    pub fn new() -> Self {
        Self::with_kind(StoreErrorKind::Unavailable)
    }

    /// A store that always fails with `kind` (e.g. [`StoreErrorKind::Full`]).
    pub fn with_kind(kind: StoreErrorKind) -> Self {
        Self {
            kind,
            calls: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many times it was asked for anything.
    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn fail<T>(&self) -> impl Future<Output = Result<T, StoreError>> + Send + 'static {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let err = StoreError::new(self.describe(), self.kind).with_source("connection refused");
        async move { Err(err) }
    }
}

impl IdempotencyStore for FailingStore {
    fn describe(&self) -> String {
        "failing".into()
    }

    fn begin<'a>(
        &'a self,
        _: &'a StoreKey,
        _: &'a Fingerprint,
        _: Lease,
    ) -> BoxFuture<'a, Result<Begin, StoreError>> {
        Box::pin(self.fail())
    }

    fn complete<'a>(
        &'a self,
        _: &'a StoreKey,
        _: LeaseToken,
        _: &'a StoredResponse,
        _: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.fail())
    }

    fn release<'a>(
        &'a self,
        _: &'a StoreKey,
        _: LeaseToken,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.fail())
    }
}
