//! [`DeadLetterMiddleware`]: rampart-dead-letter's parking in a reqwest-middleware client.

use std::{fmt, time::SystemTime};

use http::{Extensions, HeaderMap, HeaderValue, Method, Uri};
use rampart_core::{attempt::AttemptCounter, error::Elapsed, key::IdempotencyKey};
use rampart_dead_letter::{
    DEAD_LETTER_ID, DeadLetterLayer, DeadLetterStore, FailedResponse, Failure, ParkFailed,
    ParkReason, Parked, ParkedAs, Parker,
};
use reqwest::{Request, Response};
use reqwest_middleware::{Error, Middleware, Next};
use std::sync::Arc;

use crate::error::middleware_error;

/// Parks every request that finally fails in a [`DeadLetterStore`], where it can be
/// inspected and redriven (`rampart dlq …`, `rampart_dead_letter::Redrive`). Never drops one
/// silently.
///
/// Built from a [`DeadLetterLayer`], and parks exactly as it does: the same failures (by
/// default a final `5xx`, `408` or `429`, a transport error, an open circuit, a full bulkhead,
/// a timeout; not a `4xx`), the same record (method, URL, headers with credentials redacted,
/// the body up to `max_body`, the idempotency key, the attempts a [`RetryMiddleware`] inside
/// made), the same stores, with the same fallback to the secondary store when the primary
/// fails.
///
/// The caller still gets the failure, annotated with the dead letter's id:
///
/// - a failure response gets the `rampart-dead-letter-id` header ([`DEAD_LETTER_ID`]) and a
///   [`ParkedAs`] in its extensions;
/// - an error becomes `Error::Middleware` holding a
///   [`Parked`](rampart_dead_letter::Parked) (its id and kind) whose source is the original
///   error ([`find`](crate::find) sees through it);
/// - a failure that no store could keep becomes a
///   [`ParkFailed`](rampart_dead_letter::ParkFailed), with the original failure and every
///   store's error.
///
/// The idempotency key recorded is the request's `Idempotency-Key` header (the layer's
/// `key_header`) or, when a [`RetryMiddleware`] inside made the key, the
/// [`IdempotencyKey`] it left in the extensions: a redrive sends it again.
///
/// A reqwest timeout (`RequestBuilder::timeout`) is judged as a rampart timeout
/// (`ParkReason::Timeout`), like a per-attempt timeout of the retry.
///
/// **Costs.** Every request, failing or not, keeps a copy of its head (method, URL, headers)
/// and a handle on its body until the response (`Request::try_clone`: a body in memory is
/// shared, not copied). The record, the body copy and the store write happen only for a
/// request that failed. A streaming body is gone once sent: its record has an empty,
/// truncated body and cannot be redriven.
///
/// [`RetryMiddleware`]: crate::RetryMiddleware
///
/// ```
/// use std::sync::Arc;
/// use rampart_dead_letter::{DeadLetterLayer, MemoryStore};
/// use rampart_reqwest::DeadLetterMiddleware;
///
/// let primary = Arc::new(MemoryStore::bounded(10_000).unwrap()); // e.g. Redis, in production
/// let fallback = Arc::new(MemoryStore::bounded(1_000).unwrap()); // e.g. the embedded SqliteStore
/// let dead_letters = DeadLetterMiddleware::new(
///     DeadLetterLayer::builder("webhooks", primary).secondary(fallback).build().unwrap(),
/// );
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(dead_letters)
///     .build();
/// # let _ = client;
/// ```
#[derive(Clone)]
pub struct DeadLetterMiddleware {
    parker: Parker,
    store: Arc<dyn DeadLetterStore>,
}

impl fmt::Debug for DeadLetterMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetterMiddleware")
            .field("service", &self.parker.service())
            .field("store", &self.store.describe())
            .finish_non_exhaustive()
    }
}

impl DeadLetterMiddleware {
    /// Parks with `layer`'s configuration and stores (its mode, `ReturnFailure` or
    /// `AcceptForLater`, does not apply: the caller always gets the annotated failure).
    pub fn new<M>(layer: DeadLetterLayer<M>) -> Self {
        Self {
            parker: layer.parker(),
            store: layer.store().clone(),
        }
    }

    /// The primary store.
    pub fn store(&self) -> &Arc<dyn DeadLetterStore> {
        &self.store
    }
}

/// What is kept of a request until its outcome is known.
struct Sent {
    kept: Kept,
    uri: Uri,
    started: SystemTime,
    attempts: AttemptCounter,
}

enum Kept {
    /// The whole request (`Request::try_clone`): its body is in memory.
    Whole(Request),
    /// The head of a request whose body is a stream, gone once sent.
    Head { method: Method, headers: HeaderMap },
}

impl Sent {
    fn of(req: &Request, attempts: AttemptCounter) -> Self {
        let kept = match req.try_clone() {
            Some(copy) => Kept::Whole(copy),
            None => Kept::Head {
                method: req.method().clone(),
                headers: req.headers().clone(),
            },
        };
        Self {
            kept,
            // A reqwest URL is always a valid URI.
            uri: req.url().as_str().parse().unwrap_or_default(),
            started: SystemTime::now(),
            attempts,
        }
    }

    fn record(
        self,
        parker: &Parker,
        failure: Failure,
        key: Option<&IdempotencyKey>,
    ) -> rampart_dead_letter::DeadLetter {
        let attempts = self.attempts.get();
        let mut record = match self.kept {
            Kept::Whole(mut copy) => {
                let headers = std::mem::take(copy.headers_mut());
                // No body at all is recorded as an empty one.
                let body = copy.body().map_or(Some(&[][..]), reqwest::Body::as_bytes);
                parker.record(
                    copy.method(),
                    &self.uri,
                    headers,
                    body,
                    failure,
                    attempts,
                    self.started,
                )
            }
            Kept::Head { method, headers } => parker.record(
                &method,
                &self.uri,
                headers,
                None,
                failure,
                attempts,
                self.started,
            ),
        };
        if record.idempotency_key.is_none() {
            record.idempotency_key = key.and_then(|k| k.0.to_str().ok()).map(str::to_owned);
        }
        record
    }
}

impl DeadLetterMiddleware {
    async fn call(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let attempts = match extensions.get::<AttemptCounter>() {
            Some(c) => c.clone(),
            None => {
                let c = AttemptCounter::new();
                extensions.insert(c.clone());
                c
            }
        };
        let sent = Sent::of(&req, attempts);
        match next.run(req, extensions).await {
            Ok(res) => {
                let status = res.status();
                let Some(kind) = self.parker.status_kind(status) else {
                    return Ok(res);
                };
                let key = extensions.get::<IdempotencyKey>();
                let record = sent.record(&self.parker, Failure::from_status(kind, status), key);
                match self.parker.park(&record).await {
                    Ok(id) => Ok(mark(res, id)),
                    Err(stores) => Err(middleware_error(ParkFailed::new(
                        kind,
                        Box::new(FailedResponse::new(status)),
                        stores,
                    ))),
                }
            }
            Err(err) => {
                let timed_out =
                    crate::find::<reqwest::Error>(&err).is_some_and(reqwest::Error::is_timeout);
                let kind = if timed_out {
                    self.parker.error_kind(&Elapsed::new())
                } else {
                    self.parker.error_kind(&err)
                };
                let Some(kind) = kind else {
                    return Err(err);
                };
                let failure = failure_of(kind, &err);
                let key = extensions.get::<IdempotencyKey>();
                let record = sent.record(&self.parker, failure, key);
                Err(match self.parker.park(&record).await {
                    Ok(id) => middleware_error(Parked::new(id, kind, Box::new(err))),
                    Err(stores) => middleware_error(ParkFailed::new(kind, Box::new(err), stores)),
                })
            }
        }
    }
}

/// The recorded failure of `err`: its chain, with the status of a response it carries.
fn failure_of(kind: ParkReason, err: &Error) -> Failure {
    let mut failure = Failure::from_error(kind, err);
    if failure.status.is_none() {
        failure.status = err.status().map(|s| s.as_u16());
    }
    failure
}

/// Annotates a parked failure response with its dead letter's id.
fn mark(mut res: Response, id: rampart_dead_letter::DeadLetterId) -> Response {
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        res.headers_mut().insert(DEAD_LETTER_ID, v);
    }
    res.extensions_mut().insert(ParkedAs(id));
    res
}

impl Middleware for DeadLetterMiddleware {
    forward_to_call!();
}
