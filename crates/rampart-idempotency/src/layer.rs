//! [`IdempotencyLayer`] and its [`IdempotencyBuilder`].

use std::{fmt, sync::Arc, time::Duration};

use http::{HeaderName, Method, StatusCode, request::Parts};
use rampart_core::error::ConfigError;
use tower_layer::Layer;

use crate::{
    config::{CallerFn, MAX_BODY_LIMIT, PROBLEM_TYPE_BASE, Shared, StoreFailure, default_store_if},
    key::KeyPolicy,
    service::Idempotency,
    store::IdempotencyStore,
};

/// Server-side idempotency for a tower HTTP service; see the [crate docs](crate).
///
/// Made with [`IdempotencyLayer::builder`]. Cheap to clone: every clone and every `layer()`
/// call shares one configuration and one store.
#[derive(Clone)]
pub struct IdempotencyLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for IdempotencyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl IdempotencyLayer {
    /// A builder for a layer keeping its leases and responses in `store`.
    pub fn builder(store: Arc<dyn IdempotencyStore>) -> IdempotencyBuilder {
        IdempotencyBuilder {
            name: "idempotency".into(),
            store,
            header: HeaderName::from_static(rampart_core::header::IDEMPOTENCY_KEY),
            policy: KeyPolicy::default(),
            methods: vec![Method::POST, Method::PATCH],
            caller: None,
            fingerprint_headers: Vec::new(),
            lease_ttl: Duration::from_secs(60),
            retention: Duration::from_secs(24 * 60 * 60),
            retry_after: Duration::from_secs(1),
            max_request_body: 1 << 20,
            max_response_body: 1 << 20,
            store_if: default_store_if,
            store_set_cookie: false,
            exclude_headers: Vec::new(),
            on_store_error: StoreFailure::default(),
            release_on_cancel: true,
            problem_type_base: PROBLEM_TYPE_BASE.to_owned(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn IdempotencyStore> {
        &self.shared.store
    }

    /// The layer's name (the `name` label of its metrics).
    pub fn name(&self) -> &str {
        &self.shared.name
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = Idempotency<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Idempotency::new(inner, self.shared.clone())
    }
}

/// Configures an [`IdempotencyLayer`]. Every setting has a default; [`build`](Self::build)
/// checks them.
pub struct IdempotencyBuilder {
    name: Arc<str>,
    store: Arc<dyn IdempotencyStore>,
    header: HeaderName,
    policy: KeyPolicy,
    methods: Vec<Method>,
    caller: Option<CallerFn>,
    fingerprint_headers: Vec<HeaderName>,
    lease_ttl: Duration,
    retention: Duration,
    retry_after: Duration,
    max_request_body: usize,
    max_response_body: usize,
    store_if: fn(StatusCode) -> bool,
    store_set_cookie: bool,
    exclude_headers: Vec<HeaderName>,
    on_store_error: StoreFailure,
    release_on_cancel: bool,
    problem_type_base: String,
}

impl fmt::Debug for IdempotencyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyBuilder")
            .field("name", &self.name)
            .field("store", &self.store.describe())
            .field("header", &self.header)
            .field("policy", &self.policy)
            .field("methods", &self.methods)
            .field("lease_ttl", &self.lease_ttl)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl IdempotencyBuilder {
    /// Names the layer in metrics (label `name`) and logs; `idempotency` by default. Give
    /// each route's layer its own name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Arc::from(name.into());
        self
    }

    /// Reads the key from header `name` (`Idempotency-Key` by default).
    pub fn header(mut self, name: HeaderName) -> Self {
        self.header = name;
        self
    }

    /// Whether a key is required, optional (the default) or ignored on this layer's routes.
    pub fn policy(mut self, policy: KeyPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Applies to requests with these methods (`POST` and `PATCH` by default); others pass
    /// through untouched, key or not.
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    /// Scopes keys by caller: `f` returns the identity of the caller of a request (an API key,
    /// a tenant or user id set in the extensions by an authentication layer outside this
    /// one). The same key from two callers names two entries, so one caller can never replay
    /// another's response. The identity is hashed before it reaches the store.
    ///
    /// A keyed request for which `f` returns `None` is refused with `400`
    /// ([`IdempotencyProblem::UnidentifiedCaller`](crate::IdempotencyProblem::UnidentifiedCaller)); return a fixed
    /// identity (`Some("anonymous".into())`) to let such callers share one scope instead.
    ///
    /// Without a caller function (the default) every key is global to the layer's store: two
    /// clients that pick the same key (a guessable one, or a leaked one) get each other's
    /// responses. Keep the default only when one trusted client calls, or keys are
    /// unguessable and secret.
    pub fn caller(mut self, f: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        self.caller = Some(Arc::new(f));
        self
    }

    /// Scopes keys by the value of header `name` (e.g. `x-api-key`, or a tenant header set by
    /// a trusted proxy): [`caller`](Self::caller) with that header's value. A request without
    /// it (or with an empty or non-visible-ASCII value) is refused with `400`.
    pub fn caller_header(self, name: HeaderName) -> Self {
        self.caller(move |parts: &Parts| {
            let v = parts.headers.get(&name)?.to_str().ok()?;
            (!v.is_empty()).then(|| v.to_owned())
        })
    }

    /// Adds header `name` to the fingerprint (e.g. `content-type`): the same key with another
    /// value of it is then a different request (`422`). None by default: the fingerprint is
    /// the method, the path and query, and the body.
    pub fn fingerprint_header(mut self, name: HeaderName) -> Self {
        if !self.fingerprint_headers.contains(&name) {
            self.fingerprint_headers.push(name);
        }
        self
    }

    /// How long a request's lease holds if the request never completes (a crash): 60 s by
    /// default, from 1 ms to the retention. Make it longer than the longest time a request
    /// may take (your request timeout): a request still running when its lease expires can be
    /// run a second time by a retry, and can then neither store nor release.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// How long a stored response is replayed: 24 hours by default, at least 1 ms.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// The `Retry-After` of a `409` (capped at the time left on the lease) and of a `503`:
    /// 1 s by default, at most 1 hour. Sent in whole seconds, rounded up, at least 1.
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = after;
        self
    }

    /// Reads request bodies up to `limit` bytes to fingerprint them (1 MiB by default, at most
    /// [`MAX_BODY_LIMIT`]). A keyed request with a larger body is refused with `413`: without
    /// its whole body the layer cannot tell a retry from a different request.
    pub fn max_request_body(mut self, limit: usize) -> Self {
        self.max_request_body = limit;
        self
    }

    /// Stores response bodies up to `limit` bytes (1 MiB by default, at most
    /// [`MAX_BODY_LIMIT`]). A larger response is sent, but not stored: its lease is released
    /// and it carries `Idempotency-Stored: false`.
    pub fn max_response_body(mut self, limit: usize) -> Self {
        self.max_response_body = limit;
        self
    }

    /// Which statuses are stored; by default [`default_store_if`] (all but 5xx, `408` and
    /// `429`). A status that is not stored releases the lease, so a retry runs the request
    /// again. `store_if(|_| true)` stores every response, 5xx included.
    pub fn store_if(mut self, f: fn(StatusCode) -> bool) -> Self {
        self.store_if = f;
        self
    }

    /// Stores `Set-Cookie` headers too (`false` by default: a cookie minted for the first
    /// caller is not handed to whoever replays the key). The first response always keeps
    /// them.
    pub fn store_set_cookie(mut self, store: bool) -> Self {
        self.store_set_cookie = store;
        self
    }

    /// Never stores response header `name` (besides the hop-by-hop headers and
    /// `Set-Cookie`), e.g. a per-request trace id.
    pub fn exclude_header(mut self, name: HeaderName) -> Self {
        if !self.exclude_headers.contains(&name) {
            self.exclude_headers.push(name);
        }
        self
    }

    /// What to do when the store fails: [`StoreFailure::FailClosed`] (the default, `503`) or
    /// [`StoreFailure::FailOpen`].
    pub fn on_store_error(mut self, failure: StoreFailure) -> Self {
        self.on_store_error = failure;
        self
    }

    /// Whether a request whose future is dropped while its handler runs (the client went away
    /// and the server cancelled the handler) releases its lease: `true` by default, so that
    /// the client's retry runs the request at once instead of getting `409` until the lease
    /// expires. Set `false` for handlers whose side effects could be half done when
    /// cancelled: the lease then holds for its TTL, and retries get `409` until it expires.
    ///
    /// A cancel after the handler has returned never releases the lease, whatever is set
    /// here: the response is stored in the background (see the crate docs, "Crashes and
    /// cancellation").
    pub fn release_on_cancel(mut self, release: bool) -> Self {
        self.release_on_cancel = release;
        self
    }

    /// The base of the problem `type` URIs ([`PROBLEM_TYPE_BASE`] by default), e.g. your API
    /// documentation's `https://docs.example.com/errors/`; each type is the base followed by
    /// [`IdempotencyProblem::slug`](crate::IdempotencyProblem::slug).
    pub fn problem_type_base(mut self, base: impl Into<String>) -> Self {
        self.problem_type_base = base.into();
        self
    }

    /// Checks the configuration; every error names the field and the allowed range.
    pub fn build(self) -> Result<IdempotencyLayer, ConfigError> {
        const C: &str = "idempotency layer";
        const MS: Duration = Duration::from_millis(1);
        if self.methods.is_empty() {
            return Err(ConfigError::new(
                C,
                "methods",
                "must hold at least one method (use KeyPolicy::Off to turn the layer off), got none",
            ));
        }
        if self.retention < MS {
            return Err(ConfigError::new(
                C,
                "retention",
                format!("must be at least 1 ms, got {:?}", self.retention),
            ));
        }
        if self.lease_ttl < MS || self.lease_ttl > self.retention {
            return Err(ConfigError::new(
                C,
                "lease_ttl",
                format!(
                    "must be in 1 ms..=retention ({:?}), got {:?}",
                    self.retention, self.lease_ttl
                ),
            ));
        }
        if self.retry_after > Duration::from_secs(3600) {
            return Err(ConfigError::new(
                C,
                "retry_after",
                format!("must be at most 1 hour, got {:?}", self.retry_after),
            ));
        }
        for (field, value) in [
            ("max_request_body", self.max_request_body),
            ("max_response_body", self.max_response_body),
        ] {
            if value > MAX_BODY_LIMIT {
                return Err(ConfigError::new(
                    C,
                    field,
                    format!("must be at most {MAX_BODY_LIMIT} bytes (64 MiB), got {value}"),
                ));
            }
        }
        let mut methods: Vec<Method> = Vec::with_capacity(self.methods.len());
        for m in self.methods {
            if !methods.contains(&m) {
                methods.push(m);
            }
        }
        Ok(IdempotencyLayer {
            shared: Arc::new(Shared {
                name: self.name,
                store: self.store,
                header_str: self.header.as_str().to_owned(),
                header: self.header,
                policy: self.policy,
                methods,
                caller: self.caller,
                fingerprint_headers: self.fingerprint_headers,
                lease_ttl: self.lease_ttl,
                retention: self.retention,
                retry_after: self.retry_after,
                max_request_body: self.max_request_body,
                max_response_body: self.max_response_body,
                store_if: self.store_if,
                store_set_cookie: self.store_set_cookie,
                exclude_headers: self.exclude_headers,
                on_store_error: self.on_store_error,
                release_on_cancel: self.release_on_cancel,
                problem_type_base: self.problem_type_base,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn builder() -> IdempotencyBuilder {
        IdempotencyLayer::builder(Arc::new(MemoryStore::bounded(10).unwrap()))
    }

    #[test]
    fn defaults_build() {
        let layer = builder().build().unwrap();
        assert_eq!(layer.name(), "idempotency");
        let shared = &layer.shared;
        assert!(shared.applies_to(&Method::POST) && shared.applies_to(&Method::PATCH));
        assert!(!shared.applies_to(&Method::GET) && !shared.applies_to(&Method::PUT));
        assert_eq!(shared.retention, Duration::from_secs(86_400));
        assert_eq!(shared.on_store_error, StoreFailure::FailClosed);
    }

    #[test]
    fn bad_configuration_names_the_field() {
        let field = |b: IdempotencyBuilder| b.build().unwrap_err().field();
        assert_eq!(field(builder().methods([])), "methods");
        assert_eq!(field(builder().lease_ttl(Duration::ZERO)), "lease_ttl");
        assert_eq!(
            field(
                builder()
                    .retention(Duration::from_secs(10))
                    .lease_ttl(Duration::from_secs(11))
            ),
            "lease_ttl"
        );
        assert_eq!(field(builder().retention(Duration::ZERO)), "retention");
        assert_eq!(
            field(builder().retry_after(Duration::from_secs(7200))),
            "retry_after"
        );
        assert_eq!(
            field(builder().max_request_body(MAX_BODY_LIMIT + 1)),
            "max_request_body"
        );
        assert_eq!(
            field(builder().max_response_body(usize::MAX)),
            "max_response_body"
        );
        let e = builder().lease_ttl(Duration::ZERO).build().unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid idempotency layer config: lease_ttl must be in"),
            "{e}"
        );
    }

    #[test]
    fn off_applies_to_nothing() {
        let layer = builder().policy(KeyPolicy::Off).build().unwrap();
        assert!(!layer.shared.applies_to(&Method::POST));
    }

    #[test]
    fn default_statuses_stored() {
        for s in [200, 201, 204, 302, 400, 404, 409, 422] {
            assert!(default_store_if(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(!default_store_if(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }
}
