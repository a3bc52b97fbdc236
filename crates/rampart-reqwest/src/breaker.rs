//! [`CircuitBreakerMiddleware`]: rampart-circuit-breaker's breakers in a reqwest-middleware
//! client.

use std::fmt;

use http::Extensions;
use rampart_circuit_breaker::{
    CircuitBreakerConfigBuilder, CircuitBreakerHandle, CircuitBreakerLayer,
    KeyedCircuitBreakerHandle, KeyedCircuitBreakerLayer,
};
use rampart_core::{
    classify::{Classify, Outcome, Record},
    error::ConfigError,
    key::KeyExtractor,
};
use reqwest::{Request, Response};
use reqwest_middleware::{Error, Middleware, Next};

use crate::{ByHost, ReqwestClassifier, error::middleware_error};

/// A circuit breaker per host (by default) in front of a reqwest client.
///
/// The breakers are rampart-circuit-breaker's: the same state machine, configuration, per-key
/// registry (bounded by `max_keys` and `idle_timeout`; an open breaker is never evicted),
/// handles, events and metrics as [`CircuitBreakerLayer`]. Share one with a tower client by
/// building the middleware from the same layer.
///
/// A call the breaker admits is sent, and its result judged by the classifier
/// ([`ReqwestClassifier::new`] by default: 5xx, 408, 429 and transport errors count against
/// the host; other 4xx and rejections by a bulkhead further in don't). A call it rejects is not
/// sent: the caller gets `Error::Middleware` holding the same
/// [`CircuitOpen`](rampart_circuit_breaker::CircuitOpen) the tower layer returns, with its
/// retry-after hint; [`find`](crate::find) (or `rampart_core::error::find`) finds it.
/// Dropping the call's future mid-flight frees its half-open probe slot and counts it as
/// neither success nor failure.
///
/// ```
/// use std::time::Duration;
/// use rampart_circuit_breaker::CircuitBreakerLayer;
/// use rampart_reqwest::CircuitBreakerMiddleware;
///
/// let breaker = CircuitBreakerMiddleware::per_host(
///     CircuitBreakerLayer::builder()
///         .name("webhooks")
///         .consecutive_failures(5)
///         .open_duration(Duration::from_secs(30))
///         .max_keys(1_000),
/// )
/// .unwrap();
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(breaker.clone()) // a clone shares the breakers: keep one to watch them
///     .build();
/// # let _ = client;
/// ```
pub struct CircuitBreakerMiddleware<X = ByHost, C = ReqwestClassifier>
where
    X: KeyExtractor<Request>,
{
    breakers: Breakers<X, C>,
}

enum Breakers<X: KeyExtractor<Request>, C> {
    One(CircuitBreakerLayer<C>),
    PerKey(KeyedCircuitBreakerLayer<X, X::Key, C>),
}

impl<X: KeyExtractor<Request>, C: Clone> Clone for CircuitBreakerMiddleware<X, C> {
    fn clone(&self) -> Self {
        Self {
            breakers: match &self.breakers {
                Breakers::One(l) => Breakers::One(l.clone()),
                Breakers::PerKey(l) => Breakers::PerKey(l.clone()),
            },
        }
    }
}

impl<X: KeyExtractor<Request>, C> fmt::Debug for CircuitBreakerMiddleware<X, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("CircuitBreakerMiddleware");
        match &self.breakers {
            Breakers::One(l) => d.field("breaker", l),
            Breakers::PerKey(l) => d.field("breakers", l),
        };
        d.finish()
    }
}

impl CircuitBreakerMiddleware {
    /// One breaker per `host:port` ([`ByHost`]), each configured by `config`, judged by
    /// [`ReqwestClassifier::new`]. Fails if the configuration does (the error names the field).
    pub fn per_host(config: CircuitBreakerConfigBuilder) -> Result<Self, ConfigError> {
        Ok(Self::keyed(
            config.keyed(ByHost)?.classifier(ReqwestClassifier::new()),
        ))
    }
}

impl<X, C> CircuitBreakerMiddleware<X, C>
where
    X: KeyExtractor<Request>,
    C: Clone,
{
    /// One breaker per key of `layer`'s extractor (a [`KeyExtractor`] over
    /// `reqwest::Request`), in `layer`'s registry: a tower client built from the same layer
    /// shares the breakers.
    ///
    /// ```
    /// use rampart_circuit_breaker::CircuitBreakerLayer;
    /// use rampart_core::key::key_fn;
    /// use rampart_reqwest::{CircuitBreakerMiddleware, ReqwestClassifier};
    ///
    /// // One breaker per first path segment (per API) instead of per host.
    /// let per_api = key_fn(|req: &reqwest::Request| {
    ///     req.url().path_segments()?.next().map(str::to_owned)
    /// });
    /// let layer = CircuitBreakerLayer::builder()
    ///     .name("apis")
    ///     .keyed(per_api)
    ///     .unwrap()
    ///     .classifier(ReqwestClassifier::new());
    /// let breaker = CircuitBreakerMiddleware::keyed(layer);
    /// # let _ = breaker;
    /// ```
    pub fn keyed(layer: KeyedCircuitBreakerLayer<X, X::Key, C>) -> Self {
        Self {
            breakers: Breakers::PerKey(layer),
        }
    }

    /// The handle of the breaker that requests with `key` go through (`None`: the shared
    /// breaker of requests without a key), if it exists yet. With one
    /// [`shared`](CircuitBreakerMiddleware::shared) breaker, that breaker whatever the key.
    pub fn handle(&self, key: Option<&X::Key>) -> Option<CircuitBreakerHandle> {
        match &self.breakers {
            Breakers::One(l) => Some(l.handle()),
            Breakers::PerKey(l) => match key {
                Some(key) => l.handle().get(key),
                None => Some(l.handle().fallback()),
            },
        }
    }

    /// The handle of the per-key registry (list the breakers, evict idle ones); `None` with one
    /// [`shared`](CircuitBreakerMiddleware::shared) breaker.
    pub fn keyed_handle(&self) -> Option<KeyedCircuitBreakerHandle<X::Key, C>> {
        match &self.breakers {
            Breakers::One(_) => None,
            Breakers::PerKey(l) => Some(l.handle()),
        }
    }
}

impl<C: Clone> CircuitBreakerMiddleware<ByHost, C> {
    /// One breaker for every request, whatever its host: `layer`'s, shared with any tower
    /// client built from it. For a client that talks to one dependency.
    pub fn shared(layer: CircuitBreakerLayer<C>) -> Self {
        Self {
            breakers: Breakers::One(layer),
        }
    }
}

impl<X, C> CircuitBreakerMiddleware<X, C>
where
    X: KeyExtractor<Request>,
    C: Classify<Response, Error>,
{
    async fn call(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let admitted = match &self.breakers {
            Breakers::One(l) => l.try_acquire(),
            Breakers::PerKey(l) => l.try_acquire(l.extractor().extract(&req)),
        };
        let guard = match admitted {
            Ok(guard) => guard,
            Err(open) => return Err(middleware_error(open)),
        };
        let result = next.run(req, extensions).await;
        // A classifier that can only judge at the end of a stream has no stream to wait for
        // here: its call counts as neither success nor failure.
        let outcome = guard
            .classifier()
            .outcome_of(result.as_ref())
            .unwrap_or(Outcome::Ignored);
        guard.record(outcome);
        result
    }
}

impl<X, C> Middleware for CircuitBreakerMiddleware<X, C>
where
    X: KeyExtractor<Request>,
    C: Classify<Response, Error>,
{
    forward_to_call!();
}
