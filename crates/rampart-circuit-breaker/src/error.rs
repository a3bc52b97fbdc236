//! Errors: the [`CircuitOpen`] rejection and the service's [`BreakerError`].
//!
//! [`CircuitOpen`] and [`RejectedBy`] are defined in [`rampart_core::rejection`], beside the
//! other patterns' rejections, so that a layer recognising them needs no dependency on this
//! crate; they are re-exported here.

use rampart_core::error::PolicyError;
pub use rampart_core::rejection::{CircuitOpen, RejectedBy};

/// The error of a [`CircuitBreaker`](crate::CircuitBreaker) service: its own rejection
/// ([`CircuitOpen`]), or the inner service's error untouched.
///
/// See [`PolicyError`] for its methods: `rejection()`, `into_inner()`, `into_box()`. A rejection
/// never allocates, and [`rampart_core::error::find`] finds the [`CircuitOpen`] through any
/// number of boxes.
pub type BreakerError<E> = PolicyError<CircuitOpen, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_error_is_transparent() {
        let e = BreakerError::Inner(std::io::Error::other("boom"));
        assert_eq!(e.to_string(), "boom");
        let boxed = e.into_box();
        assert!(boxed.downcast_ref::<std::io::Error>().is_some());
    }
}
