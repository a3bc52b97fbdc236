//! [`DeadlineExceeded`]: a call that ran out of time.

use std::{error::Error, fmt, time::Duration};

use rampart_core::error::{Elapsed, PolicyError, Rejection};

/// The error of a [`Timeout`](crate::Timeout) service: the deadline passed, or the inner
/// service's error.
pub type TimeoutError<E> = PolicyError<DeadlineExceeded, E>;

/// The call's deadline passed before the response came; the inner call was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadlineExceeded {
    name: &'static str,
    class: &'static str,
    timeout: Duration,
    inherited: bool,
}

impl DeadlineExceeded {
    pub(crate) const fn new(
        name: &'static str,
        class: &'static str,
        timeout: Duration,
        inherited: bool,
    ) -> Self {
        Self {
            name,
            class,
            timeout,
            inherited,
        }
    }

    /// The name of the layer that timed the call out ([`TimeoutConfigBuilder::name`](crate::TimeoutConfigBuilder::name)).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The request's operation class.
    pub fn class(&self) -> &'static str {
        self.class
    }

    /// The class's timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `true` if an earlier deadline, set outside this layer (or by a `grpc-timeout` header),
    /// was the one that passed.
    pub fn inherited(&self) -> bool {
        self.inherited
    }
}

static ELAPSED: Elapsed = Elapsed::new();

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.inherited {
            write!(
                f,
                "request (class `{}`) passed an outer deadline, before its own {:?}",
                self.class, self.timeout
            )
        } else {
            write!(
                f,
                "request (class `{}`) timed out after {:?}",
                self.class, self.timeout
            )
        }
    }
}

impl Error for DeadlineExceeded {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&ELAPSED)
    }
}

/// A timed-out call may be tried again at once: no wait is implied.
impl Rejection for DeadlineExceeded {
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}
