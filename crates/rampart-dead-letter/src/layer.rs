//! [`DeadLetterLayer`] and its [`DeadLetterBuilder`]: the stores, which failures are parked, what a
//! record keeps, and what the caller gets ([`ReturnFailure`] or [`AcceptForLater`]).

use std::{fmt, sync::Arc};

use http::HeaderName;
use rampart_core::{classify::ClassifyResponse, error::ConfigError, redact::QueryPolicy};
use tower_layer::Layer;

use crate::{
    answer::{AcceptForLater, ReturnFailure},
    kind::{DeadLetterClassifier, ParkOn},
    record::DeadLetter,
    service::DeadLetterService,
    shared::Shared,
    store::{DeadLetterStore, StoreError},
};

/// Parks every request that finally fails in a [`DeadLetterStore`].
///
/// Put it outermost in a client stack, outside the retries, so that only a request that every
/// attempt failed is parked (see the crate docs for the whole stack). Made with
/// [`DeadLetterLayer::builder`]; every clone and every `layer()` call shares one
/// configuration and the same stores.
///
/// By default ([`ReturnFailure`]) the caller still gets the failure, annotated with the dead
/// letter's id; [`accept_for_later`](Self::accept_for_later) answers `202 Accepted` instead,
/// for fire-and-forget callers.
#[derive(Clone)]
pub struct DeadLetterLayer<M = ReturnFailure> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) mode: M,
}

impl<M: fmt::Debug> fmt::Debug for DeadLetterLayer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetterLayer")
            .field("service", &self.shared.service)
            .field("store", &self.shared.primary.describe())
            .field(
                "secondary",
                &self.shared.secondary.as_ref().map(|s| s.describe()),
            )
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl DeadLetterLayer {
    /// A builder for the service named `service` (the name every record carries), parking in
    /// `store`.
    pub fn builder(
        service: impl Into<String>,
        store: Arc<dyn DeadLetterStore>,
    ) -> DeadLetterBuilder {
        DeadLetterBuilder {
            service: service.into(),
            primary: store,
            secondary: None,
            park_on: ParkOn::default(),
            redact: Vec::new(),
            keep_headers: Vec::new(),
            query: QueryPolicy::mask_all(),
            max_body: 64 * 1024,
            key_header: HeaderName::from_static(rampart_core::header::IDEMPOTENCY_KEY),
            classifier: Arc::new(DeadLetterClassifier::new()),
            base_uri: None,
            on_park: None,
            on_park_failed: None,
        }
    }

    /// Answers a parked failure with `202 Accepted` (and the [`DEAD_LETTER_ID`](crate::DEAD_LETTER_ID) header), for
    /// callers that fire and forget: the request will be delivered by a redrive.
    pub fn accept_for_later(self) -> DeadLetterLayer<AcceptForLater> {
        DeadLetterLayer {
            shared: self.shared,
            mode: AcceptForLater::default(),
        }
    }
}

impl DeadLetterLayer<AcceptForLater> {
    /// Answers `202 Accepted` even for a record only a store that does not survive a restart
    /// kept (a memory store): for tests and demos, where losing it is acceptable.
    pub fn accept_non_durable(mut self) -> Self {
        self.mode.non_durable = true;
        self
    }
}

impl<M> DeadLetterLayer<M> {
    /// The appends this layer (and its [`Parker`](crate::Parker)) saw fail, for a health
    /// check: [`rampart_health::DeadLetterCheck::write_failures`] reports them.
    ///
    /// [`rampart_health::DeadLetterCheck::write_failures`]: https://docs.rs/rampart-health
    pub fn write_failures(&self) -> crate::WriteFailures {
        self.shared.write_failures.clone()
    }

    /// The primary store.
    pub fn store(&self) -> &Arc<dyn DeadLetterStore> {
        &self.shared.primary
    }
}

impl<S, M: Clone> Layer<S> for DeadLetterLayer<M> {
    type Service = DeadLetterService<S, M>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadLetterService::new(inner, self.shared.clone(), self.mode.clone())
    }
}

/// Configures a [`DeadLetterLayer`].
pub struct DeadLetterBuilder {
    service: String,
    primary: Arc<dyn DeadLetterStore>,
    secondary: Option<Arc<dyn DeadLetterStore>>,
    park_on: ParkOn,
    redact: Vec<HeaderName>,
    keep_headers: Vec<HeaderName>,
    query: QueryPolicy,
    max_body: usize,
    key_header: HeaderName,
    classifier: Arc<dyn ClassifyResponse>,
    base_uri: Option<http::Uri>,
    on_park: Option<crate::shared::ParkHook>,
    on_park_failed: Option<crate::shared::ParkFailedHook>,
}

impl fmt::Debug for DeadLetterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetterBuilder")
            .field("service", &self.service)
            .field("park_on", &self.park_on)
            .field("redact", &self.redact)
            .field("keep_headers", &self.keep_headers)
            .field("query", &self.query)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

/// The largest body [`DeadLetterBuilder::max_body`] allows: 16 MiB.
pub const MAX_BODY_LIMIT: usize = 16 * 1024 * 1024;

impl DeadLetterBuilder {
    /// A store to park in when the primary fails (e.g. the embedded store behind Redis). Its
    /// use is logged at `warn`.
    pub fn secondary(mut self, store: Arc<dyn DeadLetterStore>) -> Self {
        self.secondary = Some(store);
        self
    }

    /// Which kinds of failure are parked; [`ParkOn::default`] is every kind but fatal.
    pub fn park_on(mut self, kinds: ParkOn) -> Self {
        self.park_on = kinds;
        self
    }

    /// Also withholds the value of header `name`, besides the credential headers withheld by
    /// default ([`is_credential_header`](rampart_core::redact::is_credential_header):
    /// `Authorization`, `Cookie`, `X-Api-Key`, `X-Auth-Token`, `X-Amz-Security-Token`, any
    /// name with `token`, `secret`, `password`, `session`, `signature` in it, …). See
    /// [Secrets](crate#secrets).
    pub fn redact(mut self, name: HeaderName) -> Self {
        if !self.redact.contains(&name) {
            self.redact.push(name);
        }
        self
    }

    /// Records the value of header `name` although its name marks it as a credential (say, a
    /// webhook's `X-Hub-Signature-256` that a redrive must resend). The record then holds
    /// it at rest, in the store.
    pub fn keep_header(mut self, name: HeaderName) -> Self {
        if !self.keep_headers.contains(&name) {
            self.keep_headers.push(name);
        }
        self
    }

    /// Records the value of the query key `name` (compared without regard to case); every
    /// other query value is masked by default (`?token=[redacted]&page=2`), since URLs carry
    /// API keys, tokens and presigned signatures. A record whose query was masked cannot be
    /// redriven (its URI is not the one sent): keep the keys its requests need.
    pub fn keep_query(mut self, name: impl Into<String>) -> Self {
        self.query = std::mem::take(&mut self.query).keep(name);
        self
    }

    /// Records every query value as it was sent: for services whose URLs never carry
    /// secrets.
    pub fn keep_query_values(mut self) -> Self {
        self.query = QueryPolicy::keep_all();
        self
    }

    /// Records bodies up to `limit` bytes (64 KiB by default, at most [`MAX_BODY_LIMIT`]).
    ///
    /// The layer holds each request's body in memory up to this limit while the request is
    /// in flight, which is what lets it record, and a redrive resend, the body. A larger body
    /// streams through and is recorded truncated (its first `limit` bytes): such a record
    /// cannot be redriven.
    pub fn max_body(mut self, limit: usize) -> Self {
        self.max_body = limit;
        self
    }

    /// Reads the idempotency key from header `name` (`Idempotency-Key` by default).
    pub fn key_header(mut self, name: HeaderName) -> Self {
        self.key_header = name;
        self
    }

    /// Judges final answers with `classifier` (by default a [`DeadLetterClassifier`]: HTTP
    /// and gRPC rules for final failures), as the circuit breaker and the retry take theirs:
    /// a failure [`Outcome`](rampart_core::classify::Outcome) is parked as
    /// [`Transient`](crate::ParkReason::Transient) or [`Fatal`](crate::ParkReason::Fatal) (the latter not
    /// by default: [`park_on`](Self::park_on)); a success or an ignored answer is passed on. An
    /// answer whose head defers (a gRPC stream, whose status comes in the trailers) is
    /// watched by its body ([`DeadLetterBody`](crate::DeadLetterBody)) and parked in the
    /// background if its trailers report a failure.
    ///
    /// Errors are not the classifier's: a final error is parked by what it is
    /// ([`error_kind`](crate::error_kind): an open circuit, a full bulkhead, a timeout,
    /// anything else transient), filtered by [`park_on`](Self::park_on).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rampart_core::classify::GrpcClassifier;
    /// use rampart_dead_letter::{DeadLetterLayer, MemoryStore, ParkOn};
    ///
    /// // rampart-core's retry-oriented gRPC rules, where INTERNAL is fatal: park fatal ones too.
    /// let layer = DeadLetterLayer::builder("orders-grpc", Arc::new(MemoryStore::bounded(100).unwrap()))
    ///     .classifier(GrpcClassifier::new())
    ///     .park_on(ParkOn::ALL)
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn classifier(mut self, classifier: impl ClassifyResponse) -> Self {
        self.classifier = Arc::new(classifier);
        self
    }

    /// Records a request whose URI has no scheme and authority (a tonic client's: the
    /// `Channel` adds its origin below this layer) as sent to `base` (e.g.
    /// `http://orders.internal:50051`), so a redrive (or the CLI) can send it again.
    pub fn base_uri(mut self, base: http::Uri) -> Self {
        self.base_uri = Some(base);
        self
    }

    /// An alert for every request parked: `f` gets the record as stored and whether the store
    /// that kept it is durable (`false`: a memory store, or the secondary after the primary
    /// failed, may lose it with the process). It runs on the request's task after the store
    /// has acknowledged the record, before the caller is answered: keep it quick (count, log,
    /// or hand the record to a channel; send a webhook from another task).
    pub fn on_park(mut self, f: impl Fn(&DeadLetter, bool) + Send + Sync + 'static) -> Self {
        self.on_park = Some(Arc::new(f));
        self
    }

    /// An alert for a request that failed and that no store could keep: `f` gets the record
    /// that was refused and every store's error (the primary's first). The caller still gets
    /// [`ParkFailed`](crate::ParkFailed) and holds the failure; this is for the operator, who
    /// should hear of a store that has stopped keeping records before its backlog is missed.
    /// Runs where [`on_park`](Self::on_park) runs; keep it as quick.
    pub fn on_park_failed(
        mut self,
        f: impl Fn(&DeadLetter, &[StoreError]) + Send + Sync + 'static,
    ) -> Self {
        self.on_park_failed = Some(Arc::new(f));
        self
    }

    /// Checks the configuration: `service` must not be empty, `max_body` must be at most
    /// [`MAX_BODY_LIMIT`].
    pub fn build(self) -> Result<DeadLetterLayer, ConfigError> {
        if self.service.trim().is_empty() {
            return Err(ConfigError::new(
                "dead-letter layer",
                "service",
                "must name the service, got an empty string",
            ));
        }
        if let Some(base) = &self.base_uri
            && (base.scheme().is_none() || base.authority().is_none())
        {
            return Err(ConfigError::new(
                "dead-letter layer",
                "base_uri",
                format!("must have a scheme and an authority, got `{base}`"),
            ));
        }
        if self.max_body > MAX_BODY_LIMIT {
            return Err(ConfigError::new(
                "dead-letter layer",
                "max_body",
                format!(
                    "must be at most {MAX_BODY_LIMIT} bytes (16 MiB), got {}",
                    self.max_body
                ),
            ));
        }
        Ok(DeadLetterLayer {
            shared: Arc::new(Shared {
                write_failures: crate::WriteFailures::default(),
                service: self.service,
                primary: self.primary,
                secondary: self.secondary,
                park_on: self.park_on,
                redact: self.redact,
                keep_headers: self.keep_headers,
                query: self.query,
                max_body: self.max_body,
                key_header: self.key_header,
                classifier: self.classifier,
                base_uri: self.base_uri,
                on_park: self.on_park,
                on_park_failed: self.on_park_failed,
            }),
            mode: ReturnFailure,
        })
    }
}
