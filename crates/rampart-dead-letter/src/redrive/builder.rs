//! [`RedriveBuilder`]: a redrive's settings, checked by [`build`](RedriveBuilder::build).

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use http::HeaderName;
use rampart_core::{classify::ClassifyResponse, error::ConfigError};

use super::Redrive;
use crate::{
    kind::DeadLetterClassifier,
    record::{DeadLetter, DeadLetterId},
    store::DeadLetterStore,
};

/// The default [`lease`](RedriveBuilder::lease): 5 minutes.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(300);

type AlertFn = Arc<dyn Fn(&DeadLetter) + Send + Sync>;
type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Configures a [`Redrive`].
pub struct RedriveBuilder<S> {
    pub(super) store: Arc<dyn DeadLetterStore>,
    pub(super) service: S,
    rate: Option<f64>,
    concurrency: usize,
    max_redrives: u32,
    key_header: HeaderName,
    on_give_up: Option<AlertFn>,
    classifier: Arc<dyn ClassifyResponse>,
    lease: Duration,
    wall_clock: WallClock,
    allow_keyless: bool,
    primary: Option<Arc<dyn DeadLetterStore>>,
    name: Arc<str>,
}

impl<S> fmt::Debug for RedriveBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedriveBuilder")
            .field("name", &self.name)
            .field("store", &self.store.describe())
            .field("rate", &self.rate)
            .field("concurrency", &self.concurrency)
            .field("max_redrives", &self.max_redrives)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl<S> RedriveBuilder<S> {
    pub(super) fn new(store: Arc<dyn DeadLetterStore>, service: S) -> Self {
        Self {
            store,
            service,
            rate: None,
            concurrency: 4,
            max_redrives: 5,
            key_header: HeaderName::from_static(rampart_core::header::IDEMPOTENCY_KEY),
            on_give_up: None,
            classifier: Arc::new(DeadLetterClassifier::new()),
            lease: DEFAULT_LEASE,
            wall_clock: Arc::new(SystemTime::now),
            allow_keyless: false,
            primary: None,
            name: Arc::from("default"),
        }
    }

    /// The redrive's name: the `name` label of its `rampart_dead_letter_redriven_total`
    /// counts (`default` by default), as a layer's `name` labels its metrics.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// At most `per_second` sends per second (unlimited by default). Must be finite and > 0.
    pub fn rate(mut self, per_second: f64) -> Self {
        self.rate = Some(per_second);
        self
    }

    /// At most `n` sends at once (4 by default). Must be in 1..=1024.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Gives a record up after `n` failed redrives (5 by default). Must be at least 1.
    pub fn max_redrives(mut self, n: u32) -> Self {
        self.max_redrives = n;
        self
    }

    /// The header the idempotency key goes in (`Idempotency-Key` by default).
    pub fn key_header(mut self, name: HeaderName) -> Self {
        self.key_header = name;
        self
    }

    /// Judges a redriven request's answer with `classifier` (by default a
    /// [`DeadLetterClassifier`], as the layer's): a failure outcome, transient or fatal, is a
    /// failed redrive; an answer whose head defers (a gRPC stream) is read to its trailers and
    /// judged by them.
    pub fn classifier(mut self, classifier: impl ClassifyResponse) -> Self {
        self.classifier = Arc::new(classifier);
        self
    }

    /// How long a claim on a record lasts ([`DEFAULT_LEASE`](crate::DEFAULT_LEASE) by default; 1 s to 24 h).
    ///
    /// While it lasts no other redrive sends the record; once it has run out (the redrive
    /// crashed, was cancelled, or lost its store) the record can be claimed again. Each send
    /// is given at most four fifths of the lease, and fails as a timeout after that, so a
    /// lease does not run out while its request is still on its way; the last fifth is the
    /// margin for recording the outcome and for redrivers whose clocks disagree (keep them
    /// within a fifth of the lease of each other, e.g. with NTP).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Whether a non-idempotent request (`POST`, `PATCH`, `CONNECT`, anything but `GET`,
    /// `HEAD`, `OPTIONS`, `TRACE`, `PUT`, `DELETE`) with no idempotency key is sent again
    /// (`false` by default: it is [skipped](super::Skip::Unkeyed), and stays pending).
    ///
    /// Such a request may have run before it was parked (it timed out, or the connection was
    /// reset after the server committed the work), and a resend would do the work again with
    /// nothing to tell the server so. Opt in only for services you know to deduplicate by
    /// other means.
    pub fn allow_keyless_replays(mut self, allow: bool) -> Self {
        self.allow_keyless = allow;
        self
    }

    /// This redrive's store is a layer's secondary, and `primary` its primary: a record the
    /// secondary took while the primary was failing ([`FALLBACK_FROM`](crate::FALLBACK_FROM)
    /// set) is looked up in `primary` first, and if the primary has it too (an append that
    /// timed out after it landed), this copy is removed instead of sent: the primary's redrive
    /// sends it, once. If `primary` cannot be read, the copy is left for the next run.
    pub fn primary(mut self, primary: Arc<dyn DeadLetterStore>) -> Self {
        self.primary = Some(primary);
        self
    }

    /// The wall clock leases are read and written with (`SystemTime::now` by default): for
    /// tests that move time by hand.
    pub fn wall_clock(mut self, now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.wall_clock = Arc::new(now);
        self
    }

    /// Called with each record as it is given up: the alert hook (page someone, open a
    /// ticket). Runs on the redrive's task: keep it quick.
    pub fn on_give_up(mut self, f: impl Fn(&DeadLetter) + Send + Sync + 'static) -> Self {
        self.on_give_up = Some(Arc::new(f));
        self
    }

    /// Checks the settings, naming the field that is out of range.
    pub fn build(self) -> Result<Redrive<S>, ConfigError> {
        const C: &str = "redrive";
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0)
        {
            return Err(ConfigError::new(
                C,
                "rate",
                format!("must be a finite number of sends per second > 0, got {r}"),
            ));
        }
        let interval = match self.rate.map(|r| Duration::try_from_secs_f64(1.0 / r)) {
            None => None,
            Some(Ok(every)) => Some(every),
            Some(Err(_)) => {
                return Err(ConfigError::new(
                    C,
                    "rate",
                    "is too small: one send per interval longer than a Duration holds",
                ));
            }
        };
        if !(1..=1024).contains(&self.concurrency) {
            return Err(ConfigError::new(
                C,
                "concurrency",
                format!("must be in 1..=1024, got {}", self.concurrency),
            ));
        }
        if self.max_redrives == 0 {
            return Err(ConfigError::new(
                C,
                "max_redrives",
                "must be at least 1, got 0",
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&self.lease) {
            return Err(ConfigError::new(
                C,
                "lease",
                format!("must be in 1s..=24h, got {:?}", self.lease),
            ));
        }
        // A process id and a random part: unique among the redrives sharing a store.
        let random = DeadLetterId::new().as_uuid().simple().to_string();
        let owner = format!("pid {} redrive {}", std::process::id(), &random[20..]);
        Ok(Redrive {
            inner: Arc::new(Inner {
                store: self.store,
                interval,
                concurrency: self.concurrency,
                max_redrives: self.max_redrives,
                key_header: self.key_header,
                on_give_up: self.on_give_up,
                classifier: self.classifier,
                lease: self.lease,
                send_timeout: self.lease / 5 * 4,
                wall_clock: self.wall_clock,
                owner,
                allow_keyless: self.allow_keyless,
                primary: self.primary,
                name: self.name,
            }),
            service: self.service,
        })
    }
}

/// A built redrive's settings, shared by its tasks.
pub(super) struct Inner {
    pub(super) store: Arc<dyn DeadLetterStore>,
    pub(super) interval: Option<Duration>,
    pub(super) concurrency: usize,
    pub(super) max_redrives: u32,
    pub(super) key_header: HeaderName,
    pub(super) on_give_up: Option<AlertFn>,
    pub(super) classifier: Arc<dyn ClassifyResponse>,
    pub(super) lease: Duration,
    pub(super) send_timeout: Duration,
    pub(super) wall_clock: WallClock,
    pub(super) owner: String,
    pub(super) allow_keyless: bool,
    pub(super) primary: Option<Arc<dyn DeadLetterStore>>,
    pub(super) name: Arc<str>,
}

impl Inner {
    /// Counts one record's outcome in `rampart_dead_letter_redriven_total{name, outcome}`.
    pub(super) fn count(&self, outcome: &'static str) {
        metrics::counter!(
            "rampart_dead_letter_redriven_total",
            rampart_core::registry::INSTANCE_LABEL => self.name.clone(),
            "outcome" => outcome
        )
        .increment(1);
    }

    /// The wall clock now, to the millisecond (as records keep times).
    pub(super) fn now(&self) -> SystemTime {
        crate::record::millis::truncate((self.wall_clock)())
    }
}
