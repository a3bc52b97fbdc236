//! [`DrainBuilder`]: a drain worker's settings, checked.

use std::{sync::Arc, time::Duration};

use rampart_core::{error::ConfigError, readiness::Readiness};

use super::{Drain, handle::Shared};
use crate::Redrive;

/// The default [`poll_interval`](DrainBuilder::poll_interval): 10 seconds.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// Builds a [`Drain`]. Made by [`Drain::builder`].
pub struct DrainBuilder<S> {
    redrive: Redrive<S>,
    readiness: Arc<dyn Readiness>,
    name: String,
    poll_interval: Duration,
}

impl<S> std::fmt::Debug for DrainBuilder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrainBuilder")
            .field("redrive", &self.redrive)
            .field("name", &self.name)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

impl<S> DrainBuilder<S> {
    pub(super) fn new(redrive: Redrive<S>, readiness: Arc<dyn Readiness>) -> Self {
        Self {
            redrive,
            readiness,
            name: "default".into(),
            poll_interval: DEFAULT_POLL_INTERVAL,
        }
    }

    /// The worker's name, in logs and in the `name` label of its metrics (`default` if unset).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// How long the worker waits between two passes while the dependency is ready (records
    /// parked meanwhile are found by the next pass), and at most between two looks at a
    /// readiness that cannot say when it changes ([`ready_fn`](rampart_core::readiness::ready_fn)).
    /// [`DEFAULT_POLL_INTERVAL`] by default; 10 ms to 1 h.
    ///
    /// It is also the pause before a record that failed again is tried again, so with
    /// [`max_redrives`](crate::RedriveBuilder::max_redrives) it bounds how long a record is
    /// retried before it is given up (about `max_redrives × poll_interval`).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// The worker, or an error naming the first setting out of range.
    pub fn build(self) -> Result<Drain<S>, ConfigError> {
        if !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&self.poll_interval) {
            return Err(ConfigError::new(
                "drain",
                "poll_interval",
                format!("must be in 10ms..=1h, got {:?}", self.poll_interval),
            ));
        }
        if self.name.is_empty() {
            return Err(ConfigError::new("drain", "name", "must not be empty"));
        }
        Ok(Drain {
            redrive: self.redrive,
            readiness: self.readiness,
            name: self.name.into(),
            poll_interval: self.poll_interval,
            shared: Arc::new(Shared::default()),
        })
    }
}
