//! [`RateLimitHandle`]: a limit's stats and controls.

use std::{fmt, sync::Arc};

use rampart_core::error::ConfigError;

use crate::{
    quota::Quota,
    state::{Core, RateLimitStats},
};

/// A handle on one rate limit: what it decided, and its quota and shadow mode changed at run
/// time (a new quota applies to the next decision; what each key has spent is kept, as time
/// owed, so a lower quota does not forgive a debt and a higher one does not grant a burst).
#[derive(Clone)]
pub struct RateLimitHandle {
    core: Arc<Core>,
}

impl fmt::Debug for RateLimitHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitHandle")
            .field("name", &self.core.name)
            .field("stats", &self.stats())
            .finish()
    }
}

impl RateLimitHandle {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// The limit's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// What the limit has decided so far.
    pub fn stats(&self) -> RateLimitStats {
        self.core.stats()
    }

    /// The quota in force.
    pub fn quota(&self) -> Quota {
        let p = self.core.params();
        Quota::new(p.units, p.period).burst(p.burst)
    }

    /// Replaces the quota, checked as the builder checks it.
    pub fn set_quota(&self, quota: Quota) -> Result<(), ConfigError> {
        let params = quota.params("rate_limit")?;
        self.core.set_quota(&params);
        Ok(())
    }

    /// Turns shadow mode on or off (see
    /// [`RateLimitBuilder::shadow`](crate::RateLimitBuilder::shadow)).
    pub fn set_shadow(&self, on: bool) {
        self.core.set_shadow(on);
    }

    /// `true` in shadow mode.
    pub fn is_shadow(&self) -> bool {
        self.core.is_shadow()
    }
}
