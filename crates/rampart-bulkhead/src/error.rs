//! Errors: the [`BulkheadFull`] rejection and the service's [`BulkheadError`].
//!
//! [`BulkheadFull`] and [`FullReason`] are defined in [`rampart_core::rejection`], beside the
//! other patterns' rejections, so that a layer recognising them needs no dependency on this
//! crate; they are re-exported here.

use rampart_core::error::PolicyError;
pub use rampart_core::rejection::{BulkheadFull, FullReason};

/// The error of a [`Bulkhead`](crate::Bulkhead) service: its own rejection ([`BulkheadFull`]),
/// or the inner service's error untouched. See [`PolicyError`] for its methods.
pub type BulkheadError<E> = PolicyError<BulkheadFull, E>;
