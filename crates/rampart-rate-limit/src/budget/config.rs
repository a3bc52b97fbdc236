//! [`Budget`]: a budget's configuration.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use rampart_core::error::ConfigError;

use super::{
    core::{AlertHook, BudgetAlert, BudgetCore},
    period::Period,
    store::BudgetStore,
};

/// A budget: `total` units per [`Period`], with alert thresholds.
#[derive(Clone)]
pub struct Budget {
    name: Arc<str>,
    total: u64,
    period: Period,
    thresholds: Vec<u8>,
    on_alert: Option<AlertHook>,
    wall_clock: Option<SystemTime>,
    pub(crate) store: Option<Arc<dyn BudgetStore>>,
    pub(crate) save_every: Duration,
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budget")
            .field("name", &self.name)
            .field("total", &self.total)
            .field("period", &self.period)
            .field("thresholds", &self.thresholds)
            .field("store", &self.store.as_ref().map(|s| s.describe()))
            .field("save_every", &self.save_every)
            .finish_non_exhaustive()
    }
}

impl Budget {
    /// `total` units per `period`; alerts at 80 % and 100 %.
    pub fn new(total: u64, period: Period) -> Self {
        Self {
            name: Arc::from("default"),
            total,
            period,
            thresholds: vec![80, 100],
            on_alert: None,
            wall_clock: None,
            store: None,
            save_every: Duration::from_secs(1),
        }
    }

    /// The `name` label of its metrics and events (default `"default"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The thresholds, in percent (1–100), each of which fires the alert once per period.
    pub fn thresholds(mut self, percents: impl IntoIterator<Item = u8>) -> Self {
        self.thresholds = percents.into_iter().collect();
        self
    }

    /// Called (outside any lock) when a threshold is reached.
    pub fn on_alert(mut self, hook: impl Fn(&BudgetAlert) + Send + Sync + 'static) -> Self {
        self.on_alert = Some(Arc::new(hook));
        self
    }

    /// The wall time the budget starts at (default: the system's now); for tests and replays.
    pub fn starting_at(mut self, wall: SystemTime) -> Self {
        self.wall_clock = Some(wall);
        self
    }

    /// Keeps the spending in `store`, so that it survives a restart: the layer is then made by
    /// [`BudgetLayer::connect`](super::BudgetLayer::connect), which takes up what the store
    /// kept for this budget's [`name`](Self::name) in the current period. Saved from the
    /// background, at most every [`save_every`](Self::save_every) (no call waits on the store):
    /// a crash forgets at most what was spent in the last interval. See
    /// [`BudgetStore`](super::BudgetStore).
    pub fn store(mut self, store: impl BudgetStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// How often at most the spending is saved to the [`store`](Self::store) when it changed
    /// (default 1 s; at least 10 ms).
    pub fn save_every(mut self, every: Duration) -> Self {
        self.save_every = every;
        self
    }

    pub(crate) fn core(self) -> Result<BudgetCore, ConfigError> {
        const C: &str = "budget";
        if self.total == 0 {
            return Err(ConfigError::new(C, "total", "must be at least 1, got 0"));
        }
        self.period
            .check()
            .map_err(|why| ConfigError::new(C, "period", why))?;
        if self.save_every < Duration::from_millis(10) {
            return Err(ConfigError::new(
                C,
                "save_every",
                format!("must be at least 10 ms, got {:?}", self.save_every),
            ));
        }
        if self.thresholds.len() > 32 {
            return Err(ConfigError::new(C, "thresholds", "at most 32"));
        }
        if let Some(t) = self.thresholds.iter().find(|t| !(1..=100).contains(*t)) {
            return Err(ConfigError::new(
                C,
                "thresholds",
                format!("each must be 1 to 100 (percent), got {t}"),
            ));
        }
        Ok(BudgetCore::new(
            self.name,
            self.total,
            self.period,
            self.thresholds,
            self.on_alert,
            self.wall_clock.unwrap_or_else(SystemTime::now),
            self.store,
        ))
    }
}
