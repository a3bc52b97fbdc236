//! [`FallbackLayer`], its configuration, and what a fallback answer says of itself.

use std::{error::Error, fmt, future::Future, sync::Arc};

use http::{Method, StatusCode};
use rampart_core::{error::BoxError, key::ByRoute};
use tower::ServiceExt as _;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    answer::{Failed, StaticResponse},
    cache::LastGood,
    service::Fallback,
    shared::{Alternative, Shared},
};

/// Answers for a failing service: from the last good response for the same request (with its
/// staleness), else from a chain of alternatives (static responses, functions, services) tried
/// in order, each when the one before had nothing, else the failure as it was.
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
    /// A builder with nothing to fall back on yet: add a cache, then alternatives (static
    /// responses, functions, services) in the order they are to be tried.
    pub fn builder() -> FallbackBuilder {
        FallbackBuilder {
            name: Arc::from("default"),
            cache: None,
            alternatives: Vec::new(),
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
    name: Arc<str>,
    cache: Option<LastGood>,
    alternatives: Vec<Alternative>,
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
    /// The `name` label of the layer's metrics (default `"default"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

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

    /// Adds `response` to the chain: it always answers, so the alternatives after it are
    /// never reached.
    pub fn static_response(mut self, response: impl Into<StaticResponse>) -> Self {
        self.alternatives.push(Alternative::Static(response.into()));
        self
    }

    /// Adds `f` to the chain: a failure that nothing before it answered is answered with what
    /// `f` returns. An `Err` passes on to the next alternative (traced at `debug`); if `f` is
    /// the last, the caller gets its error.
    ///
    /// `f` sees the request's head, and its body when a layer further out holds it in memory
    /// ([`Failed::body`]).
    pub fn function<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Failed) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<StaticResponse, BoxError>> + Send + 'static,
    {
        self.alternatives
            .push(Alternative::Function(Arc::new(move |failed| {
                Box::pin(f(failed))
            })));
        self
    }

    /// Adds `service` to the chain, as [`function`](Self::function) adds a function: a
    /// fallback service (another region, a degraded mode).
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
                name: self.name,
                cache: self.cache,
                alternatives: self.alternatives,
                is_failure: self.is_failure,
                on_error: self.on_error,
                cache_methods: self.cache_methods,
                key_has_identity: self.key_has_identity,
            }),
            key: ByRoute,
        }
    }
}
