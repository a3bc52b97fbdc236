//! [`RetryError`]: the last failure of a request that was given up on.

use std::{error::Error, fmt};

use crate::policy::GiveUp;

/// The error of a [`Retry`](crate::Retry) service: the last attempt's error, with how many
/// attempts were made and why no further one was.
///
/// Its `source` is the last error, so `rampart_core::error::find` sees through it.
#[derive(Debug)]
pub struct RetryError<E> {
    attempts: u32,
    reason: GiveUp,
    last: E,
}

impl<E> RetryError<E> {
    pub(crate) fn new(attempts: u32, reason: GiveUp, last: E) -> Self {
        Self {
            attempts,
            reason,
            last,
        }
    }

    /// How many attempts were made (at least 1).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Why no further attempt was made.
    pub fn reason(&self) -> GiveUp {
        self.reason
    }

    /// The last attempt's error.
    pub fn last(&self) -> &E {
        &self.last
    }

    /// The last attempt's error, by value.
    pub fn into_inner(self) -> E {
        self.last
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gave up after {} attempt{} ({}): {}",
            self.attempts,
            if self.attempts == 1 { "" } else { "s" },
            self.reason,
            self.last
        )
    }
}

impl<E: Error + 'static> Error for RetryError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.last)
    }
}
