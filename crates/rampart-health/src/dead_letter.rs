//! Dead-letter stores as components: [`DeadLetterCheck`].

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use rampart_dead_letter::{DeadLetterStore, State, WriteFailures};

use crate::{
    component::{BoxFuture, Component},
    status::ComponentHealth,
};

/// A dead-letter store's backlog, from its [`stats`](DeadLetterStore::stats):
///
/// | store | status |
/// |---|---|
/// | backlog (pending + redriving) at most the threshold | healthy |
/// | backlog over the threshold (default 100) | degraded |
/// | `stats` failed, or took longer than the timeout (default 2 s) | degraded, with the error |
/// | an append failed within the last 5 min ([`write_failures`](Self::write_failures), from the layer) | degraded, with the error |
///
/// Both are *degraded*, never unhealthy. A backlog means calls failed and were kept for a
/// redrive, which is the system working as designed; it needs attention, not a restart. A store
/// that cannot answer is off the request path (only requests that already failed reach it), and
/// it is usually shared by every instance: pulling them all out of rotation because the store
/// is down would turn a degraded service into an outage. If your service cannot work without
/// its store, add a [`Probe`](crate::Probe) for it as well.
///
/// Details: `store` (its description), `backlog`, `pending`, `redriving`, `given_up`, `total`,
/// `threshold`, `oldest_age_secs` (the age of the oldest record still waiting); or `error`.
/// With write failures watched: `write_failures` (the count), and for a recent one
/// `last_write_error`, `last_write_store`, `last_write_secs_ago`, `kept_elsewhere`.
///
/// A store can read while it cannot write (a full disk, a dead SQLite writer, a Redis at
/// `maxmemory`), and a check that only reads would then call it healthy: give the check the
/// layer's [`WriteFailures`] too.
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use rampart_dead_letter::MemoryStore;
/// use rampart_health::{DeadLetterCheck, HealthRegistry};
///
/// let store = Arc::new(MemoryStore::bounded(10_000).unwrap());
/// let registry = HealthRegistry::new();
/// registry.component(
///     "webhooks-dlq",
///     DeadLetterCheck::new(store).backlog_threshold(500).timeout(Duration::from_secs(1)),
/// );
/// ```
#[derive(Debug, Clone)]
pub struct DeadLetterCheck {
    store: Arc<dyn DeadLetterStore>,
    threshold: u64,
    timeout: Duration,
    writes: Option<WriteFailures>,
    write_window: Duration,
}

impl DeadLetterCheck {
    /// The default backlog threshold: 100 records.
    pub const DEFAULT_THRESHOLD: u64 = 100;
    /// The default time the store has to answer: 2 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
    /// How long a failed append keeps the check degraded, by default: 5 min.
    pub const DEFAULT_WRITE_WINDOW: Duration = Duration::from_secs(300);

    /// A check of `store` with the default threshold and timeout.
    pub fn new(store: Arc<dyn DeadLetterStore>) -> Self {
        Self {
            store,
            threshold: Self::DEFAULT_THRESHOLD,
            timeout: Self::DEFAULT_TIMEOUT,
            writes: None,
            write_window: Self::DEFAULT_WRITE_WINDOW,
        }
    }

    /// Degraded when more than `threshold` records are pending or being redriven (0: any
    /// record at all).
    pub fn backlog_threshold(mut self, threshold: u64) -> Self {
        self.threshold = threshold;
        self
    }

    /// Also degraded for [`DEFAULT_WRITE_WINDOW`](Self::DEFAULT_WRITE_WINDOW) after an append
    /// failed, as the layer saw it:
    /// `DeadLetterLayer::write_failures`.
    pub fn write_failures(mut self, failures: WriteFailures) -> Self {
        self.writes = Some(failures);
        self
    }

    /// How long a failed append keeps the check degraded.
    pub fn write_window(mut self, window: Duration) -> Self {
        self.write_window = window;
        self
    }

    /// How long the store has to answer before the check gives up (degraded).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Component for DeadLetterCheck {
    fn kind(&self) -> &'static str {
        "dead_letters"
    }

    fn check(&self) -> BoxFuture<'_, ComponentHealth> {
        Box::pin(async move {
            let store = self.store.describe();
            let stats = match tokio::time::timeout(self.timeout, self.store.stats()).await {
                Ok(Ok(stats)) => stats,
                Ok(Err(e)) => {
                    return ComponentHealth::degraded(format!("store did not answer: {e}"))
                        .detail("store", store)
                        .detail("threshold", self.threshold)
                        .detail("error", e.to_string());
                }
                Err(_) => {
                    let e = format!("no answer within {} ms", self.timeout.as_millis());
                    return ComponentHealth::degraded(format!("store did not answer: {e}"))
                        .detail("store", store)
                        .detail("threshold", self.threshold)
                        .detail("error", e);
                }
            };
            let backlog = stats.backlog();
            let recent_write_failure = self.writes.as_ref().and_then(|w| {
                let last = w.last()?;
                let ago = SystemTime::now()
                    .duration_since(last.at)
                    .unwrap_or_default();
                (ago < self.write_window).then_some((last, ago))
            });
            let health = if let Some((last, ago)) = &recent_write_failure {
                ComponentHealth::degraded(format!(
                    "an append to {} failed {} s ago{}: {}",
                    last.store,
                    ago.as_secs(),
                    if last.kept_elsewhere {
                        " (the secondary kept it)"
                    } else {
                        ""
                    },
                    last.error
                ))
            } else if backlog > self.threshold {
                ComponentHealth::degraded(format!(
                    "{backlog} dead letters waiting, over the threshold of {}",
                    self.threshold
                ))
            } else {
                ComponentHealth::healthy()
            };
            let oldest_age = stats.oldest_pending.map(|t| {
                SystemTime::now()
                    .duration_since(t)
                    .unwrap_or_default()
                    .as_secs()
            });
            let health = match &self.writes {
                Some(w) => health.detail("write_failures", w.count()),
                None => health,
            };
            let health = match recent_write_failure {
                Some((last, ago)) => health
                    .detail("last_write_error", last.error)
                    .detail("last_write_store", last.store)
                    .detail("last_write_secs_ago", ago.as_secs())
                    .detail("kept_elsewhere", last.kept_elsewhere),
                None => health,
            };
            health
                .detail("store", store)
                .detail("backlog", backlog)
                .detail("pending", stats.in_state(State::Pending))
                .detail("redriving", stats.in_state(State::Redriving))
                .detail("given_up", stats.in_state(State::GivenUp))
                .detail("total", stats.total)
                .detail("threshold", self.threshold)
                .detail("oldest_age_secs", oldest_age)
        })
    }
}
