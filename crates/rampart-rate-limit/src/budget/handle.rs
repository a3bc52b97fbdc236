//! [`BudgetHandle`]: a budget's state and controls.

use std::sync::Arc;

use rampart_core::error::ConfigError;

use super::{
    core::{BudgetCore, BudgetStats},
    persist,
    store::BudgetStoreError,
};

/// A budget's state and controls.
#[derive(Debug, Clone)]
pub struct BudgetHandle {
    pub(crate) core: Arc<BudgetCore>,
}

impl BudgetHandle {
    /// What is spent and left in the current period.
    pub fn stats(&self) -> BudgetStats {
        self.core.stats()
    }

    /// Changes the budget per period, from the next call on (what is spent stays spent).
    pub fn set_total(&self, total: u64) -> Result<(), ConfigError> {
        if total == 0 {
            return Err(ConfigError::new(
                "budget",
                "total",
                "must be at least 1, got 0",
            ));
        }
        self.core.set_total(total);
        Ok(())
    }

    /// Saves the spending to the budget's [`store`](super::Budget::store) now (nothing to do
    /// without one): at shutdown, so that a restart finds the last interval's spending too.
    pub async fn flush(&self) -> Result<(), BudgetStoreError> {
        persist::flush(&self.core).await
    }
}
