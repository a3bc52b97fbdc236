//! Errors: the [`BulkheadFull`] rejection and the service's [`BulkheadError`].

use std::{error::Error, fmt, sync::Arc, time::Duration};

use rampart_core::error::{PolicyError, Rejection};

/// Why a call found no permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FullReason {
    /// Every permit was taken and the bulkhead does not let calls wait (`max_wait` is zero).
    NoCapacity,
    /// Every permit was taken and the wait queue was full too.
    QueueFull,
    /// The call waited `max_wait` without getting a permit.
    WaitElapsed,
}

impl FullReason {
    /// A lowercase name: `no_capacity`, `queue_full`, `wait_elapsed`.
    pub const fn as_str(self) -> &'static str {
        match self {
            FullReason::NoCapacity => "no_capacity",
            FullReason::QueueFull => "queue_full",
            FullReason::WaitElapsed => "wait_elapsed",
        }
    }
}

/// A call rejected by a full bulkhead. The inner service was not called.
///
/// Making one never allocates (the class name is a shared `Arc<str>`).
///
/// # Mapping to protocols
///
/// - HTTP: `503 Service Unavailable` (the dependency is saturated, not the caller over quota;
///   use `429` instead when the bulkhead is per tenant and the tenant is over its share).
/// - gRPC: `Status::resource_exhausted`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkheadFull {
    reason: FullReason,
    class: Arc<str>,
    /// Nanoseconds (a `u64` rather than a `Duration`, to keep every call's future small).
    waited: u64,
}

impl BulkheadFull {
    /// A rejection of a call of class `class` for `reason`, after waiting `waited`.
    pub const fn new(reason: FullReason, class: Arc<str>, waited: Duration) -> Self {
        Self {
            reason,
            class,
            waited: {
                let nanos = waited.as_nanos();
                if nanos > u64::MAX as u128 {
                    u64::MAX
                } else {
                    nanos as u64
                }
            },
        }
    }

    /// Why there was no permit.
    pub fn reason(&self) -> FullReason {
        self.reason
    }

    /// The priority class of the rejected call.
    pub fn class(&self) -> &str {
        &self.class
    }

    /// How long the call waited before it was rejected (zero unless the wait elapsed).
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.waited)
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            FullReason::NoCapacity => write!(f, "bulkhead full for class `{}`", self.class),
            FullReason::QueueFull => write!(
                f,
                "bulkhead full for class `{}` and its wait queue is full",
                self.class
            ),
            FullReason::WaitElapsed => write!(
                f,
                "bulkhead full for class `{}`: no permit after waiting {:?}",
                self.class,
                self.waited()
            ),
        }
    }
}

impl Error for BulkheadFull {}

impl Rejection for BulkheadFull {
    /// A bulkhead cannot know when a permit frees up.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// The error of a [`Bulkhead`](crate::Bulkhead) service: its own rejection ([`BulkheadFull`]),
/// or the inner service's error untouched. See [`PolicyError`] for its methods.
pub type BulkheadError<E> = PolicyError<BulkheadFull, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_core::error::{BoxError, find_in};

    #[test]
    fn rejection_says_why_and_is_found_through_a_box() {
        let e = BulkheadFull::new(FullReason::QueueFull, Arc::from("bulk"), Duration::ZERO);
        assert_eq!(
            e.to_string(),
            "bulkhead full for class `bulk` and its wait queue is full"
        );
        let boxed: BoxError = Box::new(BulkheadError::<std::io::Error>::Rejected(e));
        let found = find_in::<BulkheadFull>(&*boxed).expect("in the chain");
        assert_eq!(
            (found.reason(), found.class()),
            (FullReason::QueueFull, "bulk")
        );
    }
}
