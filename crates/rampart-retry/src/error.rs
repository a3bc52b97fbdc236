//! [`RetryError`]: the last failure of a request that was given up on.

use std::{error::Error, fmt, time::Duration};

use rampart_core::error::BoxError;

use crate::policy::GiveUp;

/// How the last attempt failed: with the inner service's error, or by running out of its
/// per-attempt time; or how preparing the next one failed.
#[derive(Debug)]
pub enum LastError<E> {
    /// The inner service's error.
    Inner(E),
    /// The attempt took longer than the per-attempt timeout and was cancelled.
    TimedOut(Duration),
    /// The asynchronous hook preparing the next attempt failed
    /// ([`GiveUp::HookFailed`]).
    Hook(BoxError),
}

impl<E: fmt::Display> fmt::Display for LastError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LastError::Inner(e) => e.fmt(f),
            LastError::TimedOut(d) => write!(f, "the attempt timed out after {d:?}"),
            LastError::Hook(e) => write!(f, "preparing the next attempt failed: {e}"),
        }
    }
}

/// The error of a [`Retry`](crate::Retry) service: how the last attempt failed, with how many
/// attempts were made and why no further one was.
///
/// Its `source` is the inner service's last error, so `rampart_core::error::find` sees
/// through it; if the last attempt timed out, its source is a `rampart_core::error::Elapsed`.
#[derive(Debug)]
pub struct RetryError<E> {
    attempts: u32,
    reason: GiveUp,
    last: LastError<E>,
}

impl<E> RetryError<E> {
    /// The error of a request given up on after `attempts` attempts, for `reason`, the last
    /// one having failed with `last`. Made by the retry service, and by adapters that drive a
    /// [`RetryPolicy`](crate::policy::RetryPolicy) themselves (rampart-reqwest), so that every
    /// rampart retry fails with the same type.
    pub fn new(attempts: u32, reason: GiveUp, last: LastError<E>) -> Self {
        Self {
            attempts,
            reason,
            last,
        }
    }

    /// How many attempts were made (0 if the inner service failed before any).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Why no further attempt was made.
    pub fn reason(&self) -> GiveUp {
        self.reason
    }

    /// How the last attempt failed.
    pub fn last(&self) -> &LastError<E> {
        &self.last
    }

    /// The inner service's last error, unless the last attempt timed out or its hook failed.
    pub fn into_inner(self) -> Option<E> {
        match self.last {
            LastError::Inner(e) => Some(e),
            LastError::TimedOut(_) | LastError::Hook(_) => None,
        }
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
        match &self.last {
            LastError::Inner(e) => Some(e),
            LastError::TimedOut(_) => Some(&TIMED_OUT),
            LastError::Hook(e) => Some(&**e),
        }
    }
}

/// The source of a retry whose last attempt timed out, so that
/// `find::<rampart_core::error::Elapsed>` finds every timeout.
static TIMED_OUT: rampart_core::error::Elapsed = rampart_core::error::Elapsed::new();
