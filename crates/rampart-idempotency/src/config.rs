//! What a layer is configured with and every service of it shares: [`Shared`], the
//! [`StoreFailure`] choice, [`default_store_if`], and the limits.

use std::{fmt, sync::Arc, time::Duration};

use http::{HeaderName, Method, StatusCode, request::Parts};

use crate::{
    fingerprint::Fingerprint,
    key::KeyPolicy,
    outcome::{IdempotencyOutcome, IdempotencyProblem},
    store::IdempotencyStore,
};

/// The default base of the problem `type` URIs, `urn:rampart:`, as every rampart problem
/// (`urn:rampart:idempotency-key-missing`, …); this crate's README has a "Problem types"
/// section with one heading per [`IdempotencyProblem::slug`](crate::IdempotencyProblem::slug). Set your own API's
/// documentation URL with [`problem_type_base`](crate::IdempotencyBuilder::problem_type_base).
pub const PROBLEM_TYPE_BASE: &str = "urn:rampart:";

/// The largest [`max_request_body`](crate::IdempotencyBuilder::max_request_body) and
/// [`max_response_body`](crate::IdempotencyBuilder::max_response_body): 64 MiB.
pub const MAX_BODY_LIMIT: usize = 64 << 20;

/// What the layer does when the store fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreFailure {
    /// Answer `503` problem+json with `Retry-After`; the request does not run. No request ever
    /// runs twice because the store was down. The default.
    #[default]
    FailClosed,
    /// Run the request without deduplication (logged at `warn`, counted as `unprotected`,
    /// answered with `Idempotency-Stored: false`). For routes where availability matters more
    /// than exactly-once, or whose handlers are idempotent anyway. A full store
    /// ([`StoreErrorKind::Full`](crate::StoreErrorKind::Full)) is overload, not an outage,
    /// and still gets `503`.
    FailOpen,
}

/// Who is calling: the scope of the keys. See [`IdempotencyBuilder::caller`](crate::IdempotencyBuilder::caller).
pub(crate) type CallerFn = Arc<dyn Fn(&Parts) -> Option<String> + Send + Sync>;

/// The statuses stored by default: everything but 5xx, `408 Request Timeout` and
/// `429 Too Many Requests`.
///
/// A 5xx says the request may not have run to the end, so a retry must be able to run it
/// again. `408` and `429` are answered before any work is done (by a timeout or a rate limiter
/// inside this layer), and storing them would lock the key out for the whole retention.
pub fn default_store_if(status: StatusCode) -> bool {
    !(status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS)
}

/// What every service of one layer shares.
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) store: Arc<dyn IdempotencyStore>,
    pub(crate) header: HeaderName,
    pub(crate) header_str: String,
    pub(crate) policy: KeyPolicy,
    pub(crate) methods: Vec<Method>,
    pub(crate) caller: Option<CallerFn>,
    pub(crate) fingerprint_headers: Vec<HeaderName>,
    pub(crate) lease_ttl: Duration,
    pub(crate) retention: Duration,
    pub(crate) retry_after: Duration,
    pub(crate) max_request_body: usize,
    pub(crate) max_response_body: usize,
    pub(crate) store_if: fn(StatusCode) -> bool,
    pub(crate) store_set_cookie: bool,
    pub(crate) exclude_headers: Vec<HeaderName>,
    pub(crate) on_store_error: StoreFailure,
    pub(crate) release_on_cancel: bool,
    pub(crate) problem_type_base: String,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyLayer")
            .field("name", &self.name)
            .field("store", &self.store.describe())
            .field("header", &self.header)
            .field("policy", &self.policy)
            .field("methods", &self.methods)
            .field("caller", &self.caller.as_ref().map(|_| "fn"))
            .field("lease_ttl", &self.lease_ttl)
            .field("retention", &self.retention)
            .field("on_store_error", &self.on_store_error)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// `true` if the layer looks at requests with `method`.
    #[inline]
    pub(crate) fn applies_to(&self, method: &Method) -> bool {
        self.policy != KeyPolicy::Off && self.methods.contains(method)
    }

    pub(crate) fn fingerprint(&self, parts: &Parts, body: &[u8]) -> Fingerprint {
        Fingerprint::of(
            &parts.method,
            &parts.uri,
            &parts.headers,
            &self.fingerprint_headers,
            body,
        )
    }

    /// The problem+json answer for `problem`, counted and logged.
    pub(crate) fn problem<B>(
        &self,
        problem: IdempotencyProblem,
        retry_after: Option<Duration>,
    ) -> http::Response<rampart_core::body::ReplayBody<B>> {
        self.count(IdempotencyOutcome::Rejected(problem));
        let secs = retry_after.map(rampart_core::header::retry_after_secs);
        problem.response(
            &self.problem_type_base,
            &self.header_str,
            self.max_request_body,
            secs,
        )
    }

    /// Counts a request in `rampart_idempotency_requests_total`.
    pub(crate) fn count(&self, outcome: IdempotencyOutcome) {
        metrics::counter!(
            "rampart_idempotency_requests_total",
            rampart_core::registry::INSTANCE_LABEL => self.name.clone(),
            "outcome" => outcome.as_str()
        )
        .increment(1);
    }

    /// Counts a response that ran but was not stored, in
    /// `rampart_idempotency_not_stored_total`.
    pub(crate) fn count_not_stored(&self, reason: &'static str) {
        metrics::counter!(
            "rampart_idempotency_not_stored_total",
            rampart_core::registry::INSTANCE_LABEL => self.name.clone(),
            "reason" => reason
        )
        .increment(1);
    }
}
