//! [`WriteFailures`]: the parks that failed lately, for a health check to report.
//!
//! A store's reads can work while its writes fail (a full disk, a SQLite writer thread that
//! died, a Redis at `maxmemory`): a check that only reads would call it healthy while every
//! failure is being refused. The layer notes each failed append here.

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::SystemTime,
};

/// The last failed append of a [`DeadLetterLayer`](crate::DeadLetterLayer) (or its
/// [`Parker`](crate::Parker)), and how many there were. Cheap to clone: clones share one
/// record. Get it with [`DeadLetterLayer::write_failures`](crate::DeadLetterLayer::write_failures).
#[derive(Clone, Default)]
pub struct WriteFailures {
    inner: Arc<Mutex<Record>>,
}

#[derive(Default)]
struct Record {
    count: u64,
    last: Option<WriteFailure>,
}

/// One failed append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFailure {
    /// When.
    pub at: SystemTime,
    /// The store that refused it.
    pub store: String,
    /// Its error.
    pub error: String,
    /// `true` if another store (the secondary) kept the record.
    pub kept_elsewhere: bool,
}

impl fmt::Debug for WriteFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteFailures")
            .field("count", &self.count())
            .finish_non_exhaustive()
    }
}

impl WriteFailures {
    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        rampart_core::sync::lock(&self.inner)
    }

    pub(crate) fn note(&self, failure: WriteFailure) {
        let mut r = self.lock();
        r.count += 1;
        r.last = Some(failure);
    }

    /// Appends that failed since the layer was built.
    pub fn count(&self) -> u64 {
        self.lock().count
    }

    /// The last one, if any.
    pub fn last(&self) -> Option<WriteFailure> {
        self.lock().last.clone()
    }
}
