//! [`RetryMiddleware`]: rampart-retry's policy in a reqwest-middleware client.

use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Extensions, HeaderName, HeaderValue, Method};
use rampart_core::{
    attempt::AttemptCounter,
    body::ReplayBody,
    classify::{Classify, FailureKind, Outcome},
    deadline::Deadline,
    key::IdempotencyKey,
};
use rampart_idempotency::{KeyKind, MakeKey};
use rampart_retry::{
    LastError, RetryError,
    policy::{Attempt, Decision, GiveUp, RetryPolicy},
    protocol::{HttpProtocol, RetryInfo, ServerHint},
};
use reqwest::{Request, Response};
use reqwest_middleware::{Error, Middleware, Next};
use tokio::time::Instant;

use crate::{
    ReqwestClassifier,
    error::{find_rejection, middleware_error},
};

/// Retries failed requests by the rules of a rampart-retry [`RetryPolicy`], safely for
/// non-idempotent ones.
///
/// The decisions are the policy's (`RetryPolicy::decide`), as in the tower layer: attempts,
/// backoff with jitter, the retry budget (one deposit per logical request), the overall
/// deadline (and a [`Deadline`] in the extensions, set by the caller with
/// `RequestBuilder::with_extension` or by an outer middleware: no retry waits past it), and the
/// per-attempt timeout (a timed-out attempt is transient, and its error has a
/// `rampart_core::error::Elapsed` in its chain).
///
/// - **What is retried**: what the classifier calls a transient failure
///   ([`ReqwestClassifier::for_retry`] by default: connection errors, 408, 409, 429, 502–504,
///   and a rejection by a breaker or bulkhead further in). Never a fatal one (other 5xx, a
///   request that could not be built), never a success or a 4xx.
/// - **What the server asks**: `Retry-After` (delta-seconds or an HTTP-date) and
///   `grpc-retry-pushback-ms` (a negative one means don't retry). No retry comes sooner than
///   asked; a wait over the policy's `max_server_delay` gives up at once. An open breaker
///   further in counts as the server asking for its retry-after.
/// - **Idempotency keys**: a request whose method is in the key methods (`POST`, `PATCH`) and
///   that has no `Idempotency-Key` gets one, made once per logical request by the same
///   [`KeyKind`] as rampart-idempotency's `IdempotencyKeyLayer` (a UUID v7 by default; or
///   [`Sha256Key`](rampart_idempotency::Sha256Key) for deterministic keys) and sent unchanged
///   on every attempt. A key the caller set is never replaced. The key is also put in the
///   extensions as an [`IdempotencyKey`], where an outer [`DeadLetterMiddleware`] finds it.
///   Why here, and not in a middleware of its own as in tower (where `IdempotencyKeyLayer`
///   goes outside the dead-letter layer): reqwest-middleware hands the same `&mut Extensions`
///   to every middleware and back, so a dead letter outside still records the key the retry
///   made; a separate key middleware would be one more for every client, for nothing.
/// - **Non-idempotent requests** (`POST`, `PATCH`, …) are retried only if they carry a key:
///   with [`without_idempotency_keys`](Self::without_idempotency_keys) and no key of the
///   caller's, a failed `POST` gets one attempt.
/// - **Bodies**: each attempt is a `Request::try_clone` of the original (a body in memory is
///   shared, not copied). A streaming body can't be cloned: the request gets one attempt,
///   and its failure says so (`GiveUp::NotReplayable`).
///
/// The outcome: a response as the last attempt got it, with a [`RetryInfo`] in its
/// extensions (attempts made, and why the middleware gave up if it is a failure); or
/// `Error::Middleware` holding rampart-retry's [`RetryError`] (attempts, reason, and the last
/// error as its source; [`find`](crate::find) sees through it).
///
/// [`DeadLetterMiddleware`]: crate::DeadLetterMiddleware
///
/// ```
/// use std::time::Duration;
/// use rampart_retry::{backoff::Backoff, budget::RetryBudget, policy::RetryPolicy};
/// use rampart_reqwest::RetryMiddleware;
///
/// let policy = RetryPolicy::builder()
///     .max_attempts(4)
///     .backoff(Backoff::builder().max_delay(Duration::from_secs(10)).build().unwrap())
///     .budget(RetryBudget::builder().ratio(0.2).build().unwrap())
///     .deadline(Duration::from_secs(30))
///     .build()
///     .unwrap();
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(RetryMiddleware::new(policy))
///     .build();
/// # let _ = client;
/// ```
pub struct RetryMiddleware<C = ReqwestClassifier, M = KeyKind> {
    policy: Arc<RetryPolicy>,
    classifier: C,
    key_header: HeaderName,
    protocol: HttpProtocol,
    keys: Option<Keys<M>>,
}

/// How keys are made, and for which methods.
#[derive(Clone)]
struct Keys<M> {
    methods: Arc<[Method]>,
    make: M,
}

impl<C: Clone, M: Clone> Clone for RetryMiddleware<C, M> {
    fn clone(&self) -> Self {
        Self {
            policy: self.policy.clone(),
            classifier: self.classifier.clone(),
            key_header: self.key_header.clone(),
            protocol: self.protocol.clone(),
            keys: self.keys.clone(),
        }
    }
}

impl<C, M> fmt::Debug for RetryMiddleware<C, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryMiddleware")
            .field("policy", &self.policy)
            .field("key_header", &self.key_header)
            .field("key_methods", &self.keys.as_ref().map(|k| &k.methods))
            .finish_non_exhaustive()
    }
}

impl RetryMiddleware {
    /// Retries by `policy`, judged by [`ReqwestClassifier::for_retry`], with UUID v7
    /// `Idempotency-Key`s on `POST` and `PATCH`.
    pub fn new(policy: RetryPolicy) -> Self {
        let key_header = HeaderName::from_static(rampart_core::header::IDEMPOTENCY_KEY);
        Self {
            policy: Arc::new(policy),
            classifier: ReqwestClassifier::for_retry(),
            protocol: HttpProtocol::default().key_header(key_header.clone()),
            key_header,
            keys: Some(Keys {
                methods: Arc::from([Method::POST, Method::PATCH]),
                make: KeyKind::V7,
            }),
        }
    }
}

impl<C, M> RetryMiddleware<C, M> {
    /// Judges attempts with `classifier` instead (any [`Classify`] over `reqwest::Response`
    /// and `reqwest_middleware::Error`).
    pub fn classifier<C2>(self, classifier: C2) -> RetryMiddleware<C2, M> {
        RetryMiddleware {
            policy: self.policy,
            classifier,
            key_header: self.key_header,
            protocol: self.protocol,
            keys: self.keys,
        }
    }

    /// Makes keys with `make` ([`KeyKind::V4`], [`KeyKind::Custom`],
    /// [`Sha256Key`](rampart_idempotency::Sha256Key), …), on the key methods (`POST` and
    /// `PATCH` unless set with [`key_methods`](Self::key_methods)); turns key injection back
    /// on if it was off.
    ///
    /// A maker is handed the request head and, for a body held in memory, a copy of the body
    /// (made only for a request that gets a fresh key).
    pub fn idempotency_keys<M2>(self, make: M2) -> RetryMiddleware<C, M2>
    where
        M2: MakeKey<ReplayBody<()>>,
    {
        let methods = self
            .keys
            .map_or_else(|| Arc::from([Method::POST, Method::PATCH]), |k| k.methods);
        RetryMiddleware {
            policy: self.policy,
            classifier: self.classifier,
            key_header: self.key_header,
            protocol: self.protocol,
            keys: Some(Keys { methods, make }),
        }
    }

    /// Makes no keys: a non-idempotent request is then retried only if the caller set a key.
    pub fn without_idempotency_keys(mut self) -> Self {
        self.keys = None;
        self
    }

    /// Uses the header `name` for keys instead of `Idempotency-Key` (for the ones it makes,
    /// and to recognise the caller's).
    pub fn key_header(mut self, name: HeaderName) -> Self {
        self.protocol = HttpProtocol::default().key_header(name.clone());
        self.key_header = name;
        self
    }

    /// Makes keys for requests of these methods instead of `POST` and `PATCH`.
    pub fn key_methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        if let Some(keys) = &mut self.keys {
            keys.methods = methods.into_iter().collect();
        }
        self
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

/// The key `make` gives `req`: built from its head and, if in memory, a copy of its body.
fn make_key<M: MakeKey<ReplayBody<()>>>(make: &M, req: &Request) -> HeaderValue {
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = req.method().clone();
    // A reqwest URL is always a valid URI.
    parts.uri = req.url().as_str().parse().unwrap_or_default();
    parts.version = req.version();
    parts.headers = req.headers().clone();
    let body = match req.body().map(reqwest::Body::as_bytes) {
        None => ReplayBody::Buffered {
            data: None,
            trailers: None,
        },
        Some(Some(bytes)) => ReplayBody::Buffered {
            data: Some(Bytes::copy_from_slice(bytes)),
            trailers: None,
        },
        Some(None) => ReplayBody::Streaming {
            prefix: None,
            rest: (),
        },
    };
    make.make_key(&parts, &body)
}

/// What one attempt came to.
type AttemptResult = Result<reqwest_middleware::Result<Response>, Duration>;

impl<C, M> RetryMiddleware<C, M>
where
    C: Classify<Response, Error>,
    M: MakeKey<ReplayBody<()>>,
{
    /// Sets the request's idempotency key (or notes the caller's) in its headers and in the
    /// extensions.
    fn set_key(&self, req: &mut Request, extensions: &mut Extensions) {
        if let Some(value) = req.headers().get(&self.key_header) {
            extensions.insert(IdempotencyKey(value.clone()));
            return;
        }
        let Some(keys) = &self.keys else { return };
        if !keys.methods.contains(req.method()) {
            return;
        }
        let value = make_key(&keys.make, req);
        req.headers_mut()
            .insert(self.key_header.clone(), value.clone());
        extensions.insert(IdempotencyKey(value));
    }

    async fn call(
        &self,
        mut req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        if let Some(budget) = self.policy.budget() {
            budget.deposit();
        }
        self.set_key(&mut req, extensions);
        let replay_safe = self.protocol.replay_safe_head(req.method(), req.headers());
        let deadline = Deadline::of(extensions).map(|d| d.instant());
        let counter = extensions.get::<AttemptCounter>().cloned();
        let started = Instant::now();
        // What later attempts are cloned from; `None`: a streaming body, one attempt only.
        let original = req.try_clone();
        let mut current = req;
        let mut attempts = 0u32;
        let mut previous = Duration::ZERO;
        loop {
            attempts += 1;
            if let Some(c) = &counter {
                c.note(attempts);
            }
            let run = next.clone().run(current, extensions);
            let result: AttemptResult = match self.policy.attempt_timeout() {
                Some(limit) => tokio::time::timeout(limit, run).await.map_err(|_| limit),
                None => Ok(run.await),
            };
            let judged = match &result {
                // A timed-out attempt: transient, and the server said nothing.
                Err(_) => Some((FailureKind::Transient, ServerHint::None)),
                Ok(r) => match self.classifier.outcome_of(r.as_ref()) {
                    Some(Outcome::Failure(kind)) => Some((kind, server_hint(r.as_ref()))),
                    // Success, ignored, or an outcome only the end of a stream would tell.
                    _ => None,
                },
            };
            let Some((kind, hint)) = judged else {
                return self.finish(result, attempts, GiveUp::Fatal);
            };
            let (server_delay, server_forbids) = match hint {
                ServerHint::None => (None, false),
                ServerHint::After(d) => (Some(d), false),
                ServerHint::DontRetry => (None, true),
            };
            let attempt = Attempt {
                number: attempts,
                transient: kind == FailureKind::Transient,
                replay_safe,
                replayable: original.is_some(),
                server_delay,
                server_forbids,
                elapsed: started.elapsed(),
                previous_delay: previous,
                // The request's own deadline (from a middleware outside) is kept too.
                time_left: deadline.map(|d| d.saturating_duration_since(Instant::now())),
            };
            let decision = self.policy.decide(&attempt);
            let next_request = match decision {
                Decision::Retry { after } => original
                    .as_ref()
                    .and_then(Request::try_clone)
                    .map(|req| (req, after)),
                Decision::GiveUp(_) => None,
            };
            let Some((again, after)) = next_request else {
                let reason = match decision {
                    Decision::GiveUp(reason) => reason,
                    // A body that cloned once clones again; if not, it is not replayable.
                    Decision::Retry { .. } => GiveUp::NotReplayable,
                };
                tracing::debug!(
                    target: "rampart::retry",
                    attempts, reason = reason.as_str(), "giving up"
                );
                metrics::counter!(
                    "rampart_retry_give_ups_total",
                    rampart_core::registry::INSTANCE_LABEL => self.policy.name().clone(),
                    "reason" => reason.as_str()
                )
                .increment(1);
                return self.finish(result, attempts, reason);
            };
            tracing::debug!(
                target: "rampart::retry",
                attempt = attempts, ?after, ?server_delay, "retrying"
            );
            metrics::counter!(
                "rampart_retry_retries_total",
                rampart_core::registry::INSTANCE_LABEL => self.policy.name().clone()
            )
            .increment(1);
            // Let go of the failed attempt (its connection) before waiting.
            drop(result);
            tokio::time::sleep(after).await;
            previous = after;
            current = again;
        }
    }

    /// The final result: a response as it came (with a [`RetryInfo`]), or the error with the
    /// attempts and `reason`.
    fn finish(
        &self,
        result: AttemptResult,
        attempts: u32,
        reason: GiveUp,
    ) -> reqwest_middleware::Result<Response> {
        match result {
            Ok(Ok(mut res)) => {
                // Only a failure response is "given up on"; a success just says how many.
                let failed = matches!(
                    self.classifier.outcome_of(Ok(&res)),
                    Some(Outcome::Failure(_))
                );
                if failed && reason == GiveUp::NotReplayable {
                    tracing::warn!(
                        target: "rampart::retry",
                        status = res.status().as_u16(),
                        "not retried: the request body is a stream and cannot be sent again"
                    );
                }
                res.extensions_mut().insert(RetryInfo {
                    gave_up: failed.then_some(reason),
                });
                Ok(res)
            }
            Ok(Err(e)) => Err(middleware_error(RetryError::new(
                attempts,
                reason,
                LastError::Inner(e),
            ))),
            Err(took) => Err(middleware_error(RetryError::<Error>::new(
                attempts,
                reason,
                LastError::TimedOut(took),
            ))),
        }
    }
}

/// What the server (or a breaker further in) asked for about the next attempt.
fn server_hint(result: Result<&Response, &Error>) -> ServerHint {
    match result {
        Ok(res) => HttpProtocol::server_hint_of(res.headers()),
        // A rejection further in names its wait: retrying before an open breaker probes
        // again only fails again, and a rate limit has room only after its `retry_after`.
        Err(e) => find_rejection(e)
            .and_then(|r| r.retry_after())
            .map_or(ServerHint::None, ServerHint::After),
    }
}

impl<C, M> Middleware for RetryMiddleware<C, M>
where
    C: Classify<Response, Error>,
    M: MakeKey<ReplayBody<()>>,
{
    forward_to_call!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_idempotency::Sha256Key;

    fn post(body: reqwest::Body) -> Request {
        let mut req = Request::new(Method::POST, "http://a.example/charges".parse().unwrap());
        *req.body_mut() = Some(body);
        req
    }

    #[test]
    fn keys_are_uuids_or_deterministic_hashes_of_the_request() {
        let v7 = make_key(&KeyKind::V7, &post("{}".into()));
        assert_eq!(v7.len(), 36);
        let a = make_key(&Sha256Key, &post("{\"amount\":1}".into()));
        let b = make_key(&Sha256Key, &post("{\"amount\":1}".into()));
        let c = make_key(&Sha256Key, &post("{\"amount\":2}".into()));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn the_callers_key_is_kept_and_exposed() {
        let retry = RetryMiddleware::new(RetryPolicy::builder().build().unwrap());
        let mut ext = Extensions::new();
        let mut req = post("{}".into());
        req.headers_mut()
            .insert("idempotency-key", HeaderValue::from_static("mine"));
        retry.set_key(&mut req, &mut ext);
        assert_eq!(req.headers()["idempotency-key"], "mine");
        assert_eq!(ext.get::<IdempotencyKey>().unwrap().0, "mine");

        let mut get = Request::new(Method::GET, "http://a.example/".parse().unwrap());
        let mut ext = Extensions::new();
        retry.set_key(&mut get, &mut ext);
        assert!(
            get.headers().get("idempotency-key").is_none(),
            "GET is idempotent"
        );
        assert!(ext.get::<IdempotencyKey>().is_none());

        let off = RetryMiddleware::new(RetryPolicy::builder().build().unwrap())
            .without_idempotency_keys();
        let mut req = post("{}".into());
        off.set_key(&mut req, &mut ext);
        assert!(req.headers().get("idempotency-key").is_none());
    }
}
