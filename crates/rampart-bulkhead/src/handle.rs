//! [`BulkheadHandle`]: live stats and run-time resizing of one bulkhead.

use std::sync::Arc;

use rampart_core::error::ConfigError;

use crate::policy::{Core, Stats};

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
