//! [`StoreError`]: the error of any rampart store (dead letters, idempotency records): which
//! store failed, what kind of failure it was, and the cause.
//!
//! Each kind of store names its failures with its own kind enum (implementing [`ErrorKind`]);
//! the error around it is written once, here.

use std::{error::Error, fmt, sync::Arc};

use crate::error::BoxError;

/// The kinds of failure of one kind of store.
pub trait ErrorKind: Copy + fmt::Debug + Send + Sync + 'static {
    /// What the store keeps, for messages: `"dead-letter"`, `"idempotency"`.
    const STORE: &'static str;

    /// A short lowercase description of the kind, e.g. `unavailable`.
    fn describe(self) -> &'static str;
}

/// A store failed: which store, what kind of failure, and the cause.
///
/// Cheap to clone (the cause is shared). Its `Display` reads
/// `<STORE> store <store>: <kind>[: <cause>]`, e.g.
/// `dead-letter store sqlite:/var/dlq.db: unavailable: disk I/O error`.
#[derive(Debug, Clone)]
pub struct StoreError<K> {
    store: String,
    kind: K,
    source: Option<Arc<dyn Error + Send + Sync>>,
}

impl<K: ErrorKind> StoreError<K> {
    /// An error of `kind` in the store `store` (its description, never holding a password).
    pub fn new(store: impl Into<String>, kind: K) -> Self {
        Self {
            store: store.into(),
            kind,
            source: None,
        }
    }

    /// The same error, caused by `source`.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(Arc::from(source.into()));
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> K {
        self.kind
    }

    /// The store that failed.
    pub fn store(&self) -> &str {
        &self.store
    }
}

impl<K: ErrorKind> fmt::Display for StoreError<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} store {}: {}",
            K::STORE,
            self.store,
            self.kind.describe()
        )?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl<K: ErrorKind> Error for StoreError<K> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy)]
    struct Down;

    impl ErrorKind for Down {
        const STORE: &'static str = "test";
        fn describe(self) -> &'static str {
            "unavailable"
        }
    }

    #[test]
    fn says_which_store_what_and_why() {
        let e = StoreError::new("redis://127.0.0.1:1", Down)
            .with_source(std::io::Error::other("connection refused"));
        assert_eq!(
            e.to_string(),
            "test store redis://127.0.0.1:1: unavailable: connection refused"
        );
        assert!(Error::source(&e).is_some());
        assert_eq!(e.store(), "redis://127.0.0.1:1");
    }
}
