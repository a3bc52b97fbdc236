//! [`AttemptCounter`]: how many attempts a request has had, shared between layers through the
//! request's extensions.
//!
//! An outer layer that must know how many attempts an inner retry made (the dead-letter layer
//! records it) puts a counter in the request's extensions; a retry layer that finds one notes
//! each attempt in it. Replayed requests clone their extensions, so every attempt sees the
//! same counter.

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

/// A count of attempts, shared by every clone.
///
/// ```
/// use rampart_core::attempt::AttemptCounter;
///
/// let counter = AttemptCounter::new();
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(counter.clone());
///
/// // A retry layer, on its second attempt:
/// if let Some(c) = req.extensions().get::<AttemptCounter>() {
///     c.note(2);
/// }
/// assert_eq!(counter.get(), 2);
/// ```
#[derive(Debug, Clone, Default)]
pub struct AttemptCounter(Arc<AtomicU32>);

impl AttemptCounter {
    /// A counter at 0: no attempt yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes that attempt number `n` (1 for the first) has started. The count never goes down.
    #[inline]
    pub fn note(&self, n: u32) {
        self.0.fetch_max(n, Ordering::Relaxed);
    }

    /// The highest attempt number noted.
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}
