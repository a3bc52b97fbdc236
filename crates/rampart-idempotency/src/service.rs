//! [`Idempotency`]: the service of [`IdempotencyLayer`](crate::IdempotencyLayer).

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use rampart_core::{body::ReplayBody, error::BoxError, key::IdempotencyKey};
use tower_service::Service;

use crate::{
    config::Shared,
    future::{ResponseFuture, run, streaming},
    key::{KeyError, KeyPolicy, parse_key},
    outcome::IdempotencyProblem,
    store::StoreKey,
};

/// Runs each keyed request once and replays its response. Made by
/// [`IdempotencyLayer`](crate::IdempotencyLayer); see the [crate docs](crate).
///
/// The inner service gets the request body as a [`ReplayBody`] (held in memory, whole, for a
/// keyed request; streaming untouched for any other) and the parsed key in the request's
/// extensions as an [`IdempotencyKey`]. Responses are [`ReplayBody`]s too: a stored or
/// replayed response is held in memory, any other streams through.
///
/// Errors of the inner service pass through untouched (after releasing the lease): the layer
/// adds none of its own, it answers with problem+json responses instead.
pub struct Idempotency<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: Clone> Clone for Idempotency<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Idempotency<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotency")
            .field("inner", &self.inner)
            .field("layer", &self.shared)
            .finish()
    }
}

impl<S> Idempotency<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    rampart_core::inner_service_accessors!();
}

/// Bodies must be `Unpin` (hyper's, axum's and http-body-util's are): request bodies are read
/// in place to be fingerprinted, and response bodies to be stored.
impl<S, B, ResB> Service<Request<B>> for Idempotency<S>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
    ResB: Body<Data = Bytes> + Unpin + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<ReplayBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = &self.shared;
        if !shared.applies_to(req.method()) {
            return ResponseFuture::pass_through(self.inner.call(req.map(streaming)));
        }
        let mut values = req.headers().get_all(&shared.header).iter();
        let key = match (values.next(), values.next()) {
            (None, _) if shared.policy == KeyPolicy::Required => {
                tracing::debug!(
                    target: "rampart::idempotency", layer = %shared.name,
                    method = %req.method(), path = req.uri().path(),
                    "request without the required idempotency key refused"
                );
                return ResponseFuture::ready(shared.problem(IdempotencyProblem::MissingKey, None));
            }
            (None, _) => {
                metrics::counter!(
                    "rampart_idempotency_requests_total",
                    rampart_core::registry::INSTANCE_LABEL => shared.name.clone(),
                    "outcome" => "no_key"
                )
                .increment(1);
                return ResponseFuture::pass_through(self.inner.call(req.map(streaming)));
            }
            (Some(_), Some(_)) => Err(KeyError::Repeated),
            (Some(v), None) => parse_key(v.as_bytes()),
        };
        let key = match key {
            Ok(key) => key,
            Err(e) => {
                tracing::debug!(
                    target: "rampart::idempotency", layer = %shared.name, error = %e,
                    "malformed idempotency key refused"
                );
                return ResponseFuture::ready(
                    shared.problem(IdempotencyProblem::InvalidKey(e), None),
                );
            }
        };
        let (mut parts, body) = req.into_parts();
        let store_key = match &shared.caller {
            None => StoreKey::global(&key),
            Some(identify) => match identify(&parts) {
                Some(caller) => StoreKey::for_caller(&caller, &key),
                None => {
                    tracing::debug!(
                        target: "rampart::idempotency", layer = %shared.name,
                        "keyed request without a caller identity refused"
                    );
                    return ResponseFuture::ready(
                        shared.problem(IdempotencyProblem::UnidentifiedCaller, None),
                    );
                }
            },
        };
        // A parsed key is visible ASCII: always a valid header value.
        if let Ok(v) = HeaderValue::from_str(&key) {
            parts.extensions.insert(IdempotencyKey(v));
        }
        // The service made ready is the one called; a clone takes its place.
        let fresh = self.inner.clone();
        let svc = std::mem::replace(&mut self.inner, fresh);
        ResponseFuture::keyed(Box::pin(run(
            self.shared.clone(),
            svc,
            parts,
            body,
            store_key,
        )))
    }
}
