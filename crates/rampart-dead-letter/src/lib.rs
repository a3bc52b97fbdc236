//! Dead letters for tower: a request that finally fails is parked in a durable store, where
//! it can be inspected and redriven. Nothing is lost.
//!
//! - [`DeadLetter`]: the record, in a versioned JSON format (see [`record`]).
//! - [`DeadLetterStore`]: where records are kept; [`MemoryStore`] here, the embedded SQLite
//!   store (the default), Redis Streams in `rampart-redis` and NATS JetStream in
//!   `rampart-nats`.

pub mod memory;
pub mod record;
pub mod store;

#[cfg(any(test, feature = "test-util"))]
pub mod conformance;

pub use memory::MemoryStore;
pub use record::{DeadLetter, DeadLetterId, Failure, FailureKind, State};
pub use store::{DeadLetterStore, Filter, Query, Stats, StoreError, StoreErrorKind};
