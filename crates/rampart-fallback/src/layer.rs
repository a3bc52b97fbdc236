//! [`FallbackLayer`], its configuration, and what a fallback answer says of itself.

use std::{error::Error, fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri};
use rampart_core::{error::BoxError, key::ByRoute};
use tower::ServiceExt as _;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    cache::{LastGood, Staleness},
    service::Fallback,
};

/// The response header that marks a fallback answer: `cache; staleness=stale; age=42`,
/// `static` or `function`.
pub const FALLBACK: HeaderName = HeaderName::from_static("rampart-fallback");

/// Where a fallback answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The last good response for the request's key.
    Cache {
        /// How stale it is.
        staleness: Staleness,
        /// How old it is.
        age: Duration,
    },
    /// The configured static response.
    Static,
    /// The fallback function or service.
    Function,
}

/// In a fallback answer's extensions: where it came from and what it stands in for. The
/// [`FALLBACK`] header says the same to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FallbackAnswer {
    /// Where it came from.
    pub source: Source,
    /// The failure response it replaces, if the inner service answered (else it failed with
    /// an error).
    pub replaced_status: Option<StatusCode>,
}

impl FallbackAnswer {
    pub(crate) fn header(&self) -> HeaderValue {
        let text = match self.source {
            Source::Cache { staleness, age } => {
                format!("cache; staleness={staleness}; age={}", age.as_secs())
            }
            Source::Static => "static".to_owned(),
            Source::Function => "function".to_owned(),
        };
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("fallback"))
    }
}

/// What a fallback function gets: the request's head and how it failed.
#[derive(Debug)]
pub struct Failed {
    /// The request's method.
    pub method: Method,
    /// The request's URI.
    pub uri: Uri,
    /// The failure response's status, if the inner service answered.
    pub status: Option<StatusCode>,
    /// The error, if the inner service failed with one.
    pub error: Option<BoxError>,
}

/// A response held in memory: what fallbacks answer with.
#[derive(Debug, Clone)]
pub struct StaticResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl StaticResponse {
    /// A response with `status` and `body`.
    pub fn new(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: body.into(),
        }
    }

    /// With header `name: value`.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    pub(crate) fn parts(&self) -> (StatusCode, HeaderMap, Bytes) {
        (self.status, self.headers.clone(), self.body.clone())
    }
}

impl From<Response<Bytes>> for StaticResponse {
    fn from(res: Response<Bytes>) -> Self {
        let (parts, body) = res.into_parts();
        Self {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type FallbackFn = Arc<dyn Fn(Failed) -> BoxFuture<Result<StaticResponse, BoxError>> + Send + Sync>;

pub(crate) enum Alternative {
    Static(StaticResponse),
    Function(FallbackFn),
}

pub(crate) struct Shared {
    pub(crate) cache: Option<LastGood>,
    pub(crate) alternative: Option<Alternative>,
    pub(crate) is_failure: fn(StatusCode) -> bool,
    pub(crate) on_error: fn(&(dyn Error + 'static)) -> bool,
    pub(crate) cache_methods: Vec<Method>,
    pub(crate) key_has_identity: bool,
}

/// Answers for a failing service: from the last good response for the same request (with its
/// staleness), else from a static response or a fallback function, else the failure as it was.
///
/// See the [crate docs](crate). Every clone and every `layer()` call shares one cache.
pub struct FallbackLayer<K = ByRoute> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) key: K,
}

impl<K: Clone> Clone for FallbackLayer<K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            key: self.key.clone(),
        }
    }
}

impl<K: fmt::Debug> fmt::Debug for FallbackLayer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer")
            .field("cache", &self.shared.cache)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl FallbackLayer {
    /// A builder with nothing to fall back on yet: add a cache, a static response or a
    /// function.
    pub fn builder() -> FallbackBuilder {
        FallbackBuilder {
            cache: None,
            alternative: None,
            is_failure: default_is_failure,
            on_error: |_| true,
            cache_methods: vec![Method::GET, Method::HEAD],
            key_has_identity: false,
        }
    }
}

impl<K> FallbackLayer<K> {
    /// Keys the cache by `key` instead of the route (method, authority, path and query), e.g.
    /// to keep one entry per tenant and route.
    pub fn key<K2>(self, key: K2) -> FallbackLayer<K2> {
        FallbackLayer {
            shared: self.shared,
            key,
        }
    }
}

impl<S, K: Clone> Layer<S> for FallbackLayer<K> {
    type Service = Fallback<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        Fallback::new(inner, self.shared.clone(), self.key.clone())
    }
}

/// `5xx`, `408` and `429`: the responses a fallback stands in for by default.
pub fn default_is_failure(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// Configures a [`FallbackLayer`].
pub struct FallbackBuilder {
    cache: Option<LastGood>,
    alternative: Option<Alternative>,
    is_failure: fn(StatusCode) -> bool,
    on_error: fn(&(dyn Error + 'static)) -> bool,
    cache_methods: Vec<Method>,
    key_has_identity: bool,
}

impl fmt::Debug for FallbackBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackBuilder")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl FallbackBuilder {
    /// Keeps the last good (`2xx`) response per key in `cache`, and answers a failure with it
    /// while it is within its `max_age`. Only `GET` and `HEAD` responses are cached by default
    /// ([`cache_methods`](Self::cache_methods)).
    pub fn cache(mut self, cache: LastGood) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Which methods' responses are cached (`GET` and `HEAD` by default: a cached answer to a
    /// `POST` would claim work was done that was not).
    pub fn cache_methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.cache_methods = methods.into_iter().collect();
        self
    }

    /// Says that the cache key ([`FallbackLayer::key`]) holds who is asking (a tenant, a user,
    /// the credentials' hash), so that answers to requests with `Authorization` or `Cookie`
    /// may be cached and served to the same key. Off by default: such requests neither use
    /// nor fill the cache, since the default key (the route) would serve one user's answer to
    /// another.
    pub fn key_has_identity(mut self, yes: bool) -> Self {
        self.key_has_identity = yes;
        self
    }

    /// Answers a failure (with no cached answer) with `response`.
    pub fn static_response(mut self, response: impl Into<StaticResponse>) -> Self {
        self.alternative = Some(Alternative::Static(response.into()));
        self
    }

    /// Answers a failure (with no cached answer) with what `f` returns; if `f` fails too, the
    /// caller gets `f`'s error.
    pub fn function<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Failed) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<StaticResponse, BoxError>> + Send + 'static,
    {
        self.alternative = Some(Alternative::Function(Arc::new(move |failed| {
            Box::pin(f(failed))
        })));
        self
    }

    /// Answers a failure (with no cached answer) by calling `service`: a fallback service
    /// (another region, a degraded mode).
    pub fn service<S>(self, service: S) -> Self
    where
        S: Service<Failed, Response = StaticResponse> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        self.function(move |failed| {
            let svc = service.clone();
            async move { svc.oneshot(failed).await.map_err(Into::into) }
        })
    }

    /// Which responses are failures to stand in for ([`default_is_failure`]: `5xx`, `408`,
    /// `429`).
    pub fn is_failure(mut self, f: fn(StatusCode) -> bool) -> Self {
        self.is_failure = f;
        self
    }

    /// Which errors to stand in for (all by default).
    pub fn on_error(mut self, f: fn(&(dyn Error + 'static)) -> bool) -> Self {
        self.on_error = f;
        self
    }

    /// The layer.
    pub fn build(self) -> FallbackLayer {
        FallbackLayer {
            shared: Arc::new(Shared {
                cache: self.cache,
                alternative: self.alternative,
                is_failure: self.is_failure,
                on_error: self.on_error,
                cache_methods: self.cache_methods,
                key_has_identity: self.key_has_identity,
            }),
            key: ByRoute,
        }
    }
}
