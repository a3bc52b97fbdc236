//! A protocol's rules for retrying: [`RetryProtocol`].
//!
//! The classifier (from `rampart-core`) says whether a failure is transient. The protocol adds
//! what only it knows: whether the request may be sent twice, what the server asked (a
//! `Retry-After`, a pushback), the call's deadline, and where the attempts are noted.
//! [`PlainProtocol`] knows nothing (any request may be replayed, the server asks nothing); with the
//! `http` feature, [`HttpProtocol`] reads methods, the `Idempotency-Key` header, `Retry-After` and
//! `grpc-retry-pushback-ms`.
//!
//! The hooks that change the request before each attempt are in [`hook`](crate::hook).

use std::time::Duration;

/// What the server asked for about the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerHint {
    /// Nothing.
    None,
    /// Wait at least this long.
    After(Duration),
    /// Don't retry.
    DontRetry,
}

/// Reads the protocol's say on retrying a request.
pub trait RetryProtocol<Req, Res, E>: Clone + Send + Sync + 'static {
    /// `true` if `req` may be sent again without doing its work twice.
    fn replay_safe(&self, req: &Req) -> bool;

    /// What the server asked for in the failed attempt's result.
    fn server_hint(&self, result: Result<&Res, &E>) -> ServerHint;

    /// Marks the final response with how it was reached: the attempts made and, if the layer
    /// gave up on a failure response, why. Nothing by default; the HTTP and gRPC protocols put a
    /// [`RetryInfo`] in the response's extensions.
    #[inline]
    fn annotate(&self, _res: &mut Res, _info: RetryInfo) {}

    /// Notes that attempt number `n` of `req` is about to be sent. Nothing by default; the HTTP
    /// and gRPC protocols note it in a `rampart_core::attempt::AttemptCounter` found in the
    /// request's extensions (put there by an outer layer, e.g. the dead-letter layer).
    #[inline]
    fn note_attempt(&self, _req: &Req, _n: u32) {}

    /// The deadline `req` carries, if any: no retry waits past it. None by default; the HTTP
    /// and gRPC protocols read a `rampart_core::deadline::Deadline` from the request's extensions
    /// (put there by a `TimeoutLayer` outside the retries).
    #[inline]
    fn deadline(&self, _req: &Req) -> Option<tokio::time::Instant> {
        None
    }
}

/// How a final response was reached, in its extensions (with [`HttpProtocol`] or
/// [`GrpcProtocol`]): whether the layer gave up on it. The error of a request given up on says
/// the same in `RetryError`.
///
/// How *many* attempts were made travels in one channel only, the request's
/// [`AttemptCounter`](rampart_core::attempt::AttemptCounter): the retry layer notes every
/// attempt in the counter it finds there, and whoever put it there (the caller, a dead-letter
/// layer outside) reads it, for a response and for an error alike.
///
/// ```
/// use rampart_core::attempt::AttemptCounter;
///
/// let attempts = AttemptCounter::new();
/// let mut req = http::Request::post("/orders").body(()).unwrap();
/// req.extensions_mut().insert(attempts.clone());
/// // … send `req` through the retry layer; then:
/// # attempts.note(2);
/// assert_eq!(attempts.get(), 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryInfo {
    /// Why no further attempt was made, if the response is a failure the layer gave up on.
    pub gave_up: Option<crate::policy::GiveUp>,
}

/// No protocol knowledge: every request may be replayed (the caller chose to retry it) and the
/// server asks nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainProtocol;

impl<Req, Res, E> RetryProtocol<Req, Res, E> for PlainProtocol {
    #[inline]
    fn replay_safe(&self, _: &Req) -> bool {
        true
    }

    #[inline]
    fn server_hint(&self, _: Result<&Res, &E>) -> ServerHint {
        ServerHint::None
    }
}

/// HTTP: `GET`, `HEAD`, `OPTIONS`, `PUT`, `DELETE` and `TRACE` may be replayed, as may any
/// request carrying an `Idempotency-Key` header (by default; [`key_header`](Self::key_header)
/// changes the name); the server's wait comes from `Retry-After` (delta-seconds or HTTP-date)
/// or `grpc-retry-pushback-ms` (a negative or malformed pushback means don't retry).
///
/// A malformed `Retry-After` is ignored (the backoff decides), never an error.
///
/// ```
/// use rampart_retry::protocol::{RetryProtocol, HttpProtocol, ServerHint};
///
/// let rules = HttpProtocol::default();
/// let post = http::Request::post("/charge").body(()).unwrap();
/// let keyed = http::Request::post("/charge").header("idempotency-key", "k1").body(()).unwrap();
/// assert!(!RetryProtocol::<_, http::Response<()>, ()>::replay_safe(&rules, &post));
/// assert!(RetryProtocol::<_, http::Response<()>, ()>::replay_safe(&rules, &keyed));
///
/// let busy = http::Response::builder().status(503).header("retry-after", "3").body(()).unwrap();
/// let hint = RetryProtocol::<http::Request<()>, _, ()>::server_hint(&rules, Ok(&busy));
/// assert_eq!(hint, ServerHint::After(std::time::Duration::from_secs(3)));
/// ```
#[cfg(feature = "http")]
#[derive(Debug, Clone)]
pub struct HttpProtocol {
    key_header: http::HeaderName,
}

#[cfg(feature = "http")]
impl Default for HttpProtocol {
    fn default() -> Self {
        Self {
            key_header: http::HeaderName::from_static(rampart_core::header::IDEMPOTENCY_KEY),
        }
    }
}

#[cfg(feature = "http")]
impl HttpProtocol {
    /// Reads the idempotency key from the header `name` instead of `Idempotency-Key`.
    pub fn key_header(mut self, name: http::HeaderName) -> Self {
        self.key_header = name;
        self
    }

    /// [`RetryProtocol::replay_safe`] from a request's method and headers alone: an idempotent method,
    /// or an idempotency key. For adapters whose requests are not `http::Request`s
    /// (rampart-reqwest).
    ///
    /// ```
    /// use http::{HeaderMap, Method};
    /// use rampart_retry::protocol::HttpProtocol;
    ///
    /// let rules = HttpProtocol::default();
    /// let mut headers = HeaderMap::new();
    /// assert!(rules.replay_safe_head(&Method::PUT, &headers));
    /// assert!(!rules.replay_safe_head(&Method::POST, &headers));
    /// headers.insert("idempotency-key", "k1".parse().unwrap());
    /// assert!(rules.replay_safe_head(&Method::POST, &headers));
    /// ```
    pub fn replay_safe_head(&self, method: &http::Method, headers: &http::HeaderMap) -> bool {
        use http::Method;
        matches!(
            *method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        ) || headers.contains_key(&self.key_header)
    }

    /// [`RetryProtocol::server_hint`] of a response from its headers alone: `grpc-retry-pushback-ms`
    /// first (a negative or malformed one means don't retry), then `Retry-After`
    /// (delta-seconds or HTTP-date; a malformed one is ignored). For adapters whose responses
    /// are not `http::Response`s (rampart-reqwest).
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::HeaderMap;
    /// use rampart_retry::protocol::{HttpProtocol, ServerHint};
    ///
    /// let mut headers = HeaderMap::new();
    /// assert_eq!(HttpProtocol::server_hint_of(&headers), ServerHint::None);
    /// headers.insert("retry-after", "2".parse().unwrap());
    /// assert_eq!(HttpProtocol::server_hint_of(&headers), ServerHint::After(Duration::from_secs(2)));
    /// headers.insert("grpc-retry-pushback-ms", "-1".parse().unwrap());
    /// assert_eq!(HttpProtocol::server_hint_of(&headers), ServerHint::DontRetry);
    /// ```
    pub fn server_hint_of(headers: &http::HeaderMap) -> ServerHint {
        if let Some(p) = crate::server_delay::pushback(headers) {
            return match p {
                crate::server_delay::Pushback::RetryAfter(d) => ServerHint::After(d),
                crate::server_delay::Pushback::DontRetry => ServerHint::DontRetry,
            };
        }
        match crate::server_delay::retry_after(headers, std::time::SystemTime::now()) {
            Some(Ok(d)) => ServerHint::After(d),
            Some(Err(_)) | None => ServerHint::None,
        }
    }
}

/// An HTTP request's deadline: a `rampart_core::deadline::Deadline` in its extensions.
#[cfg(feature = "http")]
#[inline]
fn request_deadline<B>(req: &http::Request<B>) -> Option<tokio::time::Instant> {
    rampart_core::deadline::Deadline::of(req.extensions()).map(|d| d.instant())
}

/// Notes attempt `n` in the request's `rampart_core::attempt::AttemptCounter`, if it has one.
#[cfg(feature = "http")]
#[inline]
fn note_attempt<B>(req: &http::Request<B>, n: u32) {
    if let Some(c) = req
        .extensions()
        .get::<rampart_core::attempt::AttemptCounter>()
    {
        c.note(n);
    }
}

#[cfg(feature = "http")]
impl<B, Res, E> RetryProtocol<http::Request<B>, http::Response<Res>, E> for HttpProtocol {
    #[inline]
    fn deadline(&self, req: &http::Request<B>) -> Option<tokio::time::Instant> {
        request_deadline(req)
    }

    #[inline]
    fn note_attempt(&self, req: &http::Request<B>, n: u32) {
        note_attempt(req, n);
    }

    fn replay_safe(&self, req: &http::Request<B>) -> bool {
        self.replay_safe_head(req.method(), req.headers())
    }

    fn server_hint(&self, result: Result<&http::Response<Res>, &E>) -> ServerHint {
        let Ok(res) = result else {
            return ServerHint::None;
        };
        Self::server_hint_of(res.headers())
    }

    fn annotate(&self, res: &mut http::Response<Res>, info: RetryInfo) {
        res.extensions_mut().insert(info);
    }
}

/// The HTTP classifier for retries: rampart-core's default (transport errors, 408, 429, 502,
/// 503, 504 transient; 500 and other 5xx fatal; other 4xx neither) plus `409 Conflict` as
/// transient.
///
/// A 409 is what a server-side idempotency layer (rampart-idempotency) answers while the first
/// request with the same key is still in progress: worth retrying, after its `Retry-After`. A
/// request without an idempotency key is retried on it only if its method is idempotent, where
/// a retried conflict costs an attempt and nothing else. To retry 500 too, build your own with
/// `HttpClassifier::builder()`.
#[cfg(feature = "http")]
pub fn http_retry_classifier() -> rampart_core::classify::HttpClassifier {
    rampart_core::classify::HttpClassifier::builder()
        .failure_statuses([408..=409, 429..=429, 500..=599])
        .transient_statuses([408..=409, 429..=429, 502..=504])
        .build()
        .unwrap_or_default()
}

/// gRPC (gRFC A6): a call may be replayed if it carries an idempotency key (`Idempotency-Key`
/// metadata, as rampart-idempotency's `IdempotencyKeyLayer` sets it) or its
/// method is one you list as idempotent ([`idempotent`](Self::idempotent)); the server's wait
/// is `grpc-retry-pushback-ms`, and `RESOURCE_EXHAUSTED` is retried only when the server sent
/// a pushback: without one, the server is out of something a retry won't bring back. Reads
/// trailers-only responses (the usual shape of an error); a status that arrives in the
/// trailers of a streamed body comes after the response, too late to retry.
///
/// The default replays no unkeyed call: on a `Channel`, mutations (`CreateOrder`, `Charge`)
/// and reads look alike, and a mutation that failed `UNAVAILABLE` after the server did its
/// work would be done twice. List the idempotent methods, add keys, or, for a client whose
/// every method is idempotent, [`replay_safe(true)`](Self::replay_safe).
///
/// ```
/// use rampart_retry::protocol::{GrpcProtocol, RetryProtocol, ServerHint};
///
/// let rules = GrpcProtocol::default().idempotent("/orders.v1.Orders/GetOrder");
/// let get = http::Request::post("http://orders/orders.v1.Orders/GetOrder").body(()).unwrap();
/// let create = http::Request::post("http://orders/orders.v1.Orders/CreateOrder").body(()).unwrap();
/// let keyed = http::Request::post("http://orders/orders.v1.Orders/CreateOrder")
///     .header("idempotency-key", "k1")
///     .body(())
///     .unwrap();
/// assert!(RetryProtocol::<_, http::Response<()>, ()>::replay_safe(&rules, &get));
/// assert!(!RetryProtocol::<_, http::Response<()>, ()>::replay_safe(&rules, &create));
/// assert!(RetryProtocol::<_, http::Response<()>, ()>::replay_safe(&rules, &keyed));
///
/// let exhausted = http::Response::builder().header("grpc-status", "8").body(()).unwrap();
/// let hint = RetryProtocol::<http::Request<()>, _, ()>::server_hint(&rules, Ok(&exhausted));
/// assert_eq!(hint, ServerHint::DontRetry);
/// let with_pushback = http::Response::builder()
///     .header("grpc-status", "8")
///     .header("grpc-retry-pushback-ms", "250")
///     .body(())
///     .unwrap();
/// let hint = RetryProtocol::<http::Request<()>, _, ()>::server_hint(&rules, Ok(&with_pushback));
/// assert_eq!(hint, ServerHint::After(std::time::Duration::from_millis(250)));
/// ```
#[cfg(feature = "http")]
#[derive(Debug, Clone)]
pub struct GrpcProtocol {
    every_call: bool,
    /// Paths: `/pkg.Service/Method`, or `/pkg.Service/` for every method of a service.
    idempotent: std::sync::Arc<[String]>,
    key_header: http::HeaderName,
}

#[cfg(feature = "http")]
impl Default for GrpcProtocol {
    fn default() -> Self {
        Self {
            every_call: false,
            idempotent: std::sync::Arc::from([]),
            key_header: http::HeaderName::from_static(rampart_core::header::IDEMPOTENCY_KEY),
        }
    }
}

#[cfg(feature = "http")]
impl GrpcProtocol {
    /// Whether every call may be replayed, keyed or not (default `false`). Only for clients
    /// whose every method is idempotent.
    pub fn replay_safe(mut self, every_call: bool) -> Self {
        self.every_call = every_call;
        self
    }

    /// Calls of `method` may be replayed without a key: a full method path
    /// (`/orders.v1.Orders/GetOrder`), or `/orders.v1.Orders/*` for every method of a service.
    pub fn idempotent(mut self, method: impl AsRef<str>) -> Self {
        let method = method.as_ref();
        let path = method.strip_suffix('*').unwrap_or(method);
        let mut all: Vec<String> = self.idempotent.iter().cloned().collect();
        all.push(format!("/{}", path.trim_start_matches('/')));
        self.idempotent = all.into();
        self
    }

    /// Reads the idempotency key from the metadata `name` instead of `idempotency-key`.
    pub fn key_header(mut self, name: http::HeaderName) -> Self {
        self.key_header = name;
        self
    }

    fn listed(&self, path: &str) -> bool {
        self.idempotent.iter().any(|m| {
            if m.ends_with('/') {
                path.starts_with(m.as_str())
            } else {
                path == m
            }
        })
    }
}

#[cfg(feature = "http")]
impl<B, Res, E> RetryProtocol<http::Request<B>, http::Response<Res>, E> for GrpcProtocol {
    #[inline]
    fn deadline(&self, req: &http::Request<B>) -> Option<tokio::time::Instant> {
        request_deadline(req)
    }

    #[inline]
    fn note_attempt(&self, req: &http::Request<B>, n: u32) {
        note_attempt(req, n);
    }

    fn replay_safe(&self, req: &http::Request<B>) -> bool {
        self.every_call
            || req.headers().contains_key(&self.key_header)
            || self.listed(req.uri().path())
    }

    fn server_hint(&self, result: Result<&http::Response<Res>, &E>) -> ServerHint {
        use rampart_core::classify::GrpcCode;
        let Ok(res) = result else {
            return ServerHint::None;
        };
        let pushback = crate::server_delay::pushback(res.headers()).map(|p| match p {
            crate::server_delay::Pushback::RetryAfter(d) => ServerHint::After(d),
            crate::server_delay::Pushback::DontRetry => ServerHint::DontRetry,
        });
        let exhausted = res
            .headers()
            .get("grpc-status")
            .is_some_and(|v| GrpcCode::from_header(v.as_bytes()) == GrpcCode::ResourceExhausted);
        match (pushback, exhausted) {
            (Some(hint), _) => hint,
            (None, true) => ServerHint::DontRetry,
            (None, false) => ServerHint::None,
        }
    }

    fn annotate(&self, res: &mut http::Response<Res>, info: RetryInfo) {
        res.extensions_mut().insert(info);
    }
}

/// A protocol for a service whose error is a [`PolicyError`](rampart_core::error::PolicyError)
/// (a rampart layer directly inside the retries): a rejection of that layer asks for the wait
/// it names, as a server's `Retry-After` does: a rate limit's or a budget's `retry_after`
/// (when it has room again), an open circuit's (when it probes again). Everything else is
/// `P`'s. Made by [`RetryLayer::honour_rejections`](crate::RetryLayer::honour_rejections),
/// with the classifier that makes such a rejection worth another attempt.
///
/// The wait is bounded like a server's: by the policy's
/// [`max_server_delay`](crate::policy::RetryPolicyBuilder::max_server_delay) (longer: give up
/// at once) and by the deadline; the attempt counts towards `max_attempts` and draws on the
/// retry budget like any other.
#[derive(Debug, Clone, Copy, Default)]
pub struct HonourRejections<P>(pub P);

impl<Req, Res, R, E, P> RetryProtocol<Req, Res, rampart_core::error::PolicyError<R, E>>
    for HonourRejections<P>
where
    P: RetryProtocol<Req, Res, E>,
    R: std::error::Error + Send + Sync + 'static,
    E: 'static,
{
    #[inline]
    fn replay_safe(&self, req: &Req) -> bool {
        self.0.replay_safe(req)
    }

    fn server_hint(
        &self,
        result: Result<&Res, &rampart_core::error::PolicyError<R, E>>,
    ) -> ServerHint {
        use rampart_core::{error::PolicyError, rejection::Rejected};
        match result {
            Ok(res) => self.0.server_hint(Ok(res)),
            Err(PolicyError::Inner(e)) => self.0.server_hint(Err(e)),
            Err(PolicyError::Rejected(r)) => Rejected::find(r)
                .and_then(|r| r.retry_after())
                .map_or(ServerHint::None, ServerHint::After),
        }
    }

    #[inline]
    fn annotate(&self, res: &mut Res, info: RetryInfo) {
        self.0.annotate(res, info);
    }

    #[inline]
    fn note_attempt(&self, req: &Req, n: u32) {
        self.0.note_attempt(req, n);
    }

    #[inline]
    fn deadline(&self, req: &Req) -> Option<tokio::time::Instant> {
        self.0.deadline(req)
    }
}
