//! [`DeadLetterLayer`]: its configuration, and what it answers once a failure is parked
//! ([`OnParked`]: [`ReturnFailure`] or [`AcceptForLater`]).

use std::{error::Error, fmt, sync::Arc, time::SystemTime};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use rampart_core::{
    attempt::AttemptCounter,
    body::ReplayBody,
    error::{BoxError, ConfigError},
    redact::{QueryPolicy, is_credential_header},
};
use tower_layer::Layer;

use crate::{
    error::{FailedResponse, ParkFailed, Parked},
    kind::{Judge, ParkOn, error_kind, status_kind},
    record::{
        DeadLetter, DeadLetterId, Failure, FailureKind, Header, Payload, REDACTED, RecordedBody,
        Target,
    },
    service::DeadLetterService,
    store::{DeadLetterStore, StoreError},
};

/// The response header that names the dead letter a failure was parked as.
pub const DEAD_LETTER_ID: HeaderName = HeaderName::from_static("rampart-dead-letter-id");

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
    pub fn builder(service: impl Into<String>, store: Arc<dyn DeadLetterStore>) -> Builder {
        Builder {
            service: service.into(),
            primary: store,
            secondary: None,
            park_on: ParkOn::default(),
            redact: Vec::new(),
            keep_headers: Vec::new(),
            query: QueryPolicy::mask_all(),
            max_body: 64 * 1024,
            key_header: HeaderName::from_static("idempotency-key"),
            judge: Judge::Status(status_kind),
            error_kind: |e| Some(error_kind(e)),
            base_uri: None,
        }
    }

    /// Answers a parked failure with `202 Accepted` (and the [`DEAD_LETTER_ID`] header), for
    /// callers that fire and forget: the request will be delivered by a redrive.
    pub fn accept_for_later(self) -> DeadLetterLayer<AcceptForLater> {
        DeadLetterLayer {
            shared: self.shared,
            mode: AcceptForLater,
        }
    }
}

impl<M> DeadLetterLayer<M> {
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
pub struct Builder {
    service: String,
    primary: Arc<dyn DeadLetterStore>,
    secondary: Option<Arc<dyn DeadLetterStore>>,
    park_on: ParkOn,
    redact: Vec<HeaderName>,
    keep_headers: Vec<HeaderName>,
    query: QueryPolicy,
    max_body: usize,
    key_header: HeaderName,
    judge: Judge,
    error_kind: fn(&(dyn Error + 'static)) -> Option<FailureKind>,
    base_uri: Option<http::Uri>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("service", &self.service)
            .field("park_on", &self.park_on)
            .field("redact", &self.redact)
            .field("keep_headers", &self.keep_headers)
            .field("query", &self.query)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

/// The largest body [`Builder::max_body`] allows: 16 MiB.
pub const MAX_BODY_LIMIT: usize = 16 * 1024 * 1024;

impl Builder {
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

    /// Decides the kind of a final response by its status, `None` for a success; by default
    /// [`status_kind`].
    pub fn status_kind(mut self, f: fn(StatusCode) -> Option<FailureKind>) -> Self {
        self.judge = Judge::Status(f);
        self
    }

    /// Decides the kind of a final response by its status and headers, `None` for a success:
    /// e.g. [`grpc_response_kind`](crate::kind::grpc_response_kind) for a gRPC client, whose
    /// failures come back as `200` with a `grpc-status` header.
    pub fn response_kind(
        mut self,
        f: fn(StatusCode, &http::HeaderMap) -> Option<FailureKind>,
    ) -> Self {
        self.judge = Judge::Head(f);
        self
    }

    /// Decides the kind of a final error, `None` to pass it on without parking; by default
    /// [`error_kind`].
    pub fn error_kind(mut self, f: fn(&(dyn Error + 'static)) -> Option<FailureKind>) -> Self {
        self.error_kind = f;
        self
    }

    /// Records a request whose URI has no scheme and authority (a tonic client's: the
    /// `Channel` adds its origin below this layer) as sent to `base` (e.g.
    /// `http://orders.internal:50051`), so a redrive (or the CLI) can send it again.
    pub fn base_uri(mut self, base: http::Uri) -> Self {
        self.base_uri = Some(base);
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
                service: self.service,
                primary: self.primary,
                secondary: self.secondary,
                park_on: self.park_on,
                redact: self.redact,
                keep_headers: self.keep_headers,
                query: self.query,
                max_body: self.max_body,
                key_header: self.key_header,
                judge: self.judge,
                error_kind: self.error_kind,
                base_uri: self.base_uri,
            }),
            mode: ReturnFailure,
        })
    }
}

/// What every service of one layer shares.
pub(crate) struct Shared {
    pub(crate) service: String,
    primary: Arc<dyn DeadLetterStore>,
    secondary: Option<Arc<dyn DeadLetterStore>>,
    park_on: ParkOn,
    redact: Vec<HeaderName>,
    keep_headers: Vec<HeaderName>,
    query: QueryPolicy,
    pub(crate) max_body: usize,
    key_header: HeaderName,
    judge: Judge,
    error_kind: fn(&(dyn Error + 'static)) -> Option<FailureKind>,
    base_uri: Option<http::Uri>,
}

/// What is kept of a request while it is in flight, to record it if it fails.
pub(crate) struct Snapshot {
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: RecordedBodyParts,
    started: SystemTime,
    attempts: AttemptCounter,
}

enum RecordedBodyParts {
    Whole(Bytes),
    Prefix(Bytes),
}

impl Snapshot {
    /// Keeps what is needed to record the request, and puts an [`AttemptCounter`] in its
    /// extensions for a retry layer inside to fill in.
    pub(crate) fn of<B>(parts: &mut http::request::Parts, body: &ReplayBody<B>) -> Self {
        let attempts = AttemptCounter::new();
        parts.extensions.insert(attempts.clone());
        let body = match body {
            ReplayBody::Buffered { data, .. } => {
                RecordedBodyParts::Whole(data.clone().unwrap_or_default())
            }
            ReplayBody::Streaming { prefix, .. } | ReplayBody::Failed { prefix, .. } => {
                RecordedBodyParts::Prefix(prefix.clone().unwrap_or_default())
            }
        };
        Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            body,
            started: SystemTime::now(),
            attempts,
        }
    }
}

/// A request's final failure, as [`OnParked`] gets it.
#[derive(Debug)]
pub enum Final<ResB> {
    /// A failure response (e.g. the last `503`).
    Response(Response<ResB>),
    /// An error (a transport error, an open circuit, a timeout, …).
    Error(BoxError),
}

impl Shared {
    /// The kind of a final response, if it is a failure to park.
    pub(crate) fn park_response(
        &self,
        status: StatusCode,
        headers: &http::HeaderMap,
    ) -> Option<FailureKind> {
        self.judge
            .kind(status, headers)
            .filter(|k| self.park_on.contains(*k))
    }

    /// The kind of a final error, if it is a failure to park.
    pub(crate) fn park_error(&self, err: &(dyn Error + 'static)) -> Option<FailureKind> {
        (self.error_kind)(err).filter(|k| self.park_on.contains(*k))
    }

    pub(crate) fn record<ResB>(
        &self,
        snap: Snapshot,
        kind: FailureKind,
        failure: &Final<ResB>,
    ) -> DeadLetter {
        let failure = match failure {
            Final::Response(res) => {
                let mut f = Failure::from_status(kind, res.status());
                if let Some(code) = res.headers().get("grpc-status") {
                    let message = res
                        .headers()
                        .get("grpc-message")
                        .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned());
                    f.chain = vec![format!(
                        "grpc-status {}{}",
                        String::from_utf8_lossy(code.as_bytes()),
                        message
                            .map(|m| format!(": {}", rampart_core::redact::text(&m)))
                            .unwrap_or_default()
                    )];
                }
                f
            }
            Final::Error(e) => Failure::from_error(kind, &**e),
        };
        // Noted by a rampart retry layer inside; none means one attempt.
        let attempts = snap.attempts.get().max(1);
        let key = snap
            .headers
            .get(&self.key_header)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let headers = snap
            .headers
            .iter()
            .map(|(name, value)| {
                let redacted = self.redact.contains(name)
                    || (is_credential_header(name.as_str()) && !self.keep_headers.contains(name));
                Header {
                    name: name.as_str().to_owned(),
                    value: Payload(if redacted {
                        Bytes::from_static(REDACTED.as_bytes())
                    } else {
                        Bytes::copy_from_slice(value.as_bytes())
                    }),
                    redacted,
                }
            })
            .collect();
        let body = match snap.body {
            RecordedBodyParts::Whole(b) => RecordedBody::whole(b),
            RecordedBodyParts::Prefix(mut b) => {
                b.truncate(self.max_body);
                RecordedBody::truncated(b)
            }
        };
        let sent = match (&self.base_uri, snap.uri.authority()) {
            (Some(base), None) => format!(
                "{}://{}{}",
                base.scheme_str().unwrap_or("http"),
                base.authority().map_or("", |a| a.as_str()),
                snap.uri.path_and_query().map_or("/", |p| p.as_str())
            ),
            _ => snap.uri.to_string(),
        };
        let (uri, query_redacted) = rampart_core::redact::request_uri(&sent, &self.query);
        let mut record = DeadLetter::new(
            self.service.clone(),
            Target {
                method: snap.method.as_str().to_owned(),
                uri,
                headers,
                body,
                query_redacted,
            },
            failure,
        );
        record.idempotency_key = key;
        record.attempts = attempts;
        // With retries, the first failure came after the call started; without, it is now.
        if attempts > 1 {
            record.first_failed_at = crate::record::millis::truncate(snap.started);
        }
        record
    }

    /// Parks `record`: in the primary store, else the secondary. Every store's error if none
    /// kept it.
    pub(crate) async fn park(&self, record: &DeadLetter) -> Result<DeadLetterId, Vec<StoreError>> {
        let labels = [
            ("service", self.service.clone()),
            ("kind", record.failure.kind.as_str().to_owned()),
        ];
        let primary = match self.primary.append(record).await {
            Ok(()) => {
                tracing::info!(
                    target: "rampart::dead_letter",
                    id = %record.id, kind = %record.failure.kind,
                    path = rampart_core::redact::uri_path(&record.target.uri),
                    attempts = record.attempts, "request dead-lettered"
                );
                metrics::counter!("rampart_dead_letter_parked_total", &labels).increment(1);
                return Ok(record.id);
            }
            Err(e) => e,
        };
        let Some(secondary) = &self.secondary else {
            tracing::error!(
                target: "rampart::dead_letter",
                id = %record.id, error = %primary, "dead letter could not be stored"
            );
            metrics::counter!("rampart_dead_letter_park_failures_total", &labels).increment(1);
            return Err(vec![primary]);
        };
        match secondary.append(record).await {
            Ok(()) => {
                tracing::warn!(
                    target: "rampart::dead_letter",
                    id = %record.id, error = %primary, fallback = %secondary.describe(),
                    "primary dead-letter store failed; record kept in the secondary store"
                );
                metrics::counter!("rampart_dead_letter_fallbacks_total", &labels).increment(1);
                metrics::counter!("rampart_dead_letter_parked_total", &labels).increment(1);
                Ok(record.id)
            }
            Err(second) => {
                tracing::error!(
                    target: "rampart::dead_letter",
                    id = %record.id, primary = %primary, secondary = %second,
                    "dead letter could not be stored in either store"
                );
                metrics::counter!("rampart_dead_letter_park_failures_total", &labels).increment(1);
                Err(vec![primary, second])
            }
        }
    }
}

/// What a [`DeadLetterService`] answers once a failure is parked (or could not be).
pub trait OnParked<ResB>: Clone + Send + Sync + 'static {
    /// The answer for a failure parked as `id`.
    fn parked(
        &self,
        id: DeadLetterId,
        kind: FailureKind,
        failure: Final<ResB>,
    ) -> Result<Response<ResB>, BoxError>;
}

/// The caller gets the failure, annotated with the dead letter's id: a failure response
/// gets the [`DEAD_LETTER_ID`] header (and a [`ParkedAs`] extension), an error becomes a
/// [`Parked`] error whose source is the original error. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReturnFailure;

/// The caller gets `202 Accepted`, with the [`DEAD_LETTER_ID`] header and a [`ParkedAs`]
/// extension; the body is the response body type's `Default` (empty).
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptForLater;

/// The id of the dead letter a response stands for, in the response's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParkedAs(pub DeadLetterId);

fn mark<B>(res: &mut Response<B>, id: DeadLetterId) {
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        res.headers_mut().insert(DEAD_LETTER_ID, v);
    }
    res.extensions_mut().insert(ParkedAs(id));
}

impl<ResB: Send + 'static> OnParked<ResB> for ReturnFailure {
    fn parked(
        &self,
        id: DeadLetterId,
        kind: FailureKind,
        failure: Final<ResB>,
    ) -> Result<Response<ResB>, BoxError> {
        match failure {
            Final::Response(mut res) => {
                mark(&mut res, id);
                Ok(res)
            }
            Final::Error(e) => Err(Box::new(Parked::new(id, kind, e))),
        }
    }
}

impl<ResB: Default + Send + 'static> OnParked<ResB> for AcceptForLater {
    fn parked(
        &self,
        id: DeadLetterId,
        _kind: FailureKind,
        _failure: Final<ResB>,
    ) -> Result<Response<ResB>, BoxError> {
        let mut res = Response::new(ResB::default());
        *res.status_mut() = StatusCode::ACCEPTED;
        mark(&mut res, id);
        Ok(res)
    }
}

/// The error for a failure no store could keep.
pub(crate) fn park_failed<ResB>(
    kind: FailureKind,
    failure: Final<ResB>,
    stores: Vec<StoreError>,
) -> BoxError {
    let original: BoxError = match failure {
        Final::Response(res) => Box::new(FailedResponse::new(res.status())),
        Final::Error(e) => e,
    };
    Box::new(ParkFailed::new(kind, original, stores))
}
