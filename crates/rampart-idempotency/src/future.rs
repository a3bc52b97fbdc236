//! [`ResponseFuture`], and the lifecycle of a keyed request ([`run`]).

use std::{
    fmt,
    future::{Future, poll_fn},
    pin::{Pin, pin},
    sync::Arc,
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, request::Parts};
use http_body::Body;
use pin_project_lite::pin_project;
use rampart_core::{
    BoxFuture,
    body::{ReadBody, ReplayBody},
    error::BoxError,
};
use tower_service::Service;

use crate::{
    config::{Shared, StoreFailure},
    headers::{IDEMPOTENCY_STORED, IDEMPOTENT_REPLAYED},
    outcome::{IdempotencyOutcome, IdempotencyProblem},
    response::{StoredResponse, storable_headers},
    store::{Begin, Lease, LeaseToken, StoreErrorKind, StoreKey},
};

/// What a keyed request's future resolves to.
type Keyed<ResB, E> = BoxFuture<'static, Result<Response<ReplayBody<ResB>>, E>>;

pin_project! {
    /// The response future of [`Idempotency`](crate::Idempotency).
    ///
    /// A request the layer passes through is the inner future, unboxed; a request it refuses
    /// at once (a bad or missing key) is ready; a keyed request is one boxed future that reads
    /// the body, asks the store, runs the inner service and stores the response.
    pub struct ResponseFuture<F, ResB, E> {
        #[pin]
        kind: Kind<F, ResB, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, ResB, E> {
        PassThrough {
            #[pin]
            fut: F,
        },
        Ready {
            res: Option<Response<ReplayBody<ResB>>>,
        },
        Keyed {
            fut: Keyed<ResB, E>,
        },
    }
}

impl<F, ResB, E> ResponseFuture<F, ResB, E> {
    pub(crate) fn pass_through(fut: F) -> Self {
        Self {
            kind: Kind::PassThrough { fut },
        }
    }

    pub(crate) fn ready(res: Response<ReplayBody<ResB>>) -> Self {
        Self {
            kind: Kind::Ready { res: Some(res) },
        }
    }

    pub(crate) fn keyed(fut: Keyed<ResB, E>) -> Self {
        Self {
            kind: Kind::Keyed { fut },
        }
    }
}

impl<F, ResB, E> fmt::Debug for ResponseFuture<F, ResB, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::PassThrough { .. } => "pass_through",
            Kind::Ready { .. } => "ready",
            Kind::Keyed { .. } => "keyed",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<F, ResB, E> Future for ResponseFuture<F, ResB, E>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = Result<Response<ReplayBody<ResB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::PassThrough { fut } => fut.poll(cx).map_ok(|res| res.map(streaming)),
            KindProj::Ready { res } => Poll::Ready(Ok(res
                .take()
                .expect("ResponseFuture polled after completion"))),
            KindProj::Keyed { fut } => fut.as_mut().poll(cx),
        }
    }
}

/// A body handed on untouched.
pub(crate) fn streaming<B>(rest: B) -> ReplayBody<B> {
    ReplayBody::Streaming { prefix: None, rest }
}

/// The lifecycle of a keyed request: read and fingerprint the body, `begin`, then replay,
/// refuse, or run the request and `complete` (or `release`).
pub(crate) async fn run<S, B, ResB>(
    shared: Arc<Shared>,
    mut svc: S,
    parts: Parts,
    body: B,
    key: StoreKey,
) -> Result<Response<ReplayBody<ResB>>, S::Error>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResB>>,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    ResB: Body<Data = Bytes> + Unpin + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    // The whole body, to fingerprint it; the handler gets it from memory.
    let mut read = ReadBody::new(body, shared.max_request_body);
    let body = poll_fn(|cx| read.poll_read(cx)).await;
    let fingerprint = match &body {
        ReplayBody::Buffered { data, .. } => {
            shared.fingerprint(&parts, data.as_ref().map_or(&[][..], |d| &d[..]))
        }
        ReplayBody::Streaming { .. } => {
            tracing::debug!(
                target: "rampart::idempotency", layer = %shared.name, key = key.key(),
                limit = shared.max_request_body, "keyed request body over the limit refused"
            );
            return Ok(shared.problem(IdempotencyProblem::BodyTooLarge, None));
        }
        ReplayBody::Failed { error, .. } => {
            tracing::debug!(
                target: "rampart::idempotency", layer = %shared.name, key = key.key(),
                error = ?error, "keyed request body failed while being read"
            );
            return Ok(shared.problem(IdempotencyProblem::BodyUnreadable, None));
        }
    };

    let token = LeaseToken::random();
    let lease = Lease::new(token, shared.lease_ttl);
    match shared.store.begin(&key, &fingerprint, lease).await {
        Ok(Begin::Acquired) => {}
        Ok(Begin::Completed(stored)) => {
            tracing::debug!(
                target: "rampart::idempotency", layer = %shared.name, key = key.key(),
                status = stored.status().as_u16(), "stored response replayed"
            );
            shared.count(IdempotencyOutcome::Replayed);
            return Ok(replay(*stored));
        }
        Ok(Begin::InFlight { expires_in }) => {
            tracing::debug!(
                target: "rampart::idempotency", layer = %shared.name, key = key.key(),
                ?expires_in, "request with the same key in flight: conflict"
            );
            let after = shared.retry_after.min(expires_in);
            return Ok(shared.problem(IdempotencyProblem::InFlight, Some(after)));
        }
        Ok(Begin::Mismatch) => {
            tracing::debug!(
                target: "rampart::idempotency", layer = %shared.name, key = key.key(),
                "key reused with a different request"
            );
            return Ok(shared.problem(IdempotencyProblem::Mismatch, None));
        }
        Err(e)
            if e.kind() == StoreErrorKind::Full
                || shared.on_store_error == StoreFailure::FailClosed =>
        {
            // The begin may have reached the store and taken the lease before it failed here
            // (a timeout): give it back, or every retry gets 409 until it expires.
            release_in_background(&shared, &key, token, "the begin failed");
            tracing::warn!(
                target: "rampart::idempotency", layer = %shared.name, key = key.key(),
                error = %e, "idempotency store failed: request refused (fail closed)"
            );
            return Ok(shared.problem(IdempotencyProblem::Unavailable, Some(shared.retry_after)));
        }
        Err(e) => {
            tracing::warn!(
                target: "rampart::idempotency", layer = %shared.name, key = key.key(),
                error = %e, "idempotency store failed: request runs without deduplication (fail open)"
            );
            release_in_background(&shared, &key, token, "the begin failed");
            shared.count(IdempotencyOutcome::Unprotected);
            shared.count_not_stored("store_error");
            let mut res = svc
                .call(Request::from_parts(parts, body))
                .await?
                .map(streaming);
            mark_not_stored(&mut res);
            res.extensions_mut().insert(IdempotencyOutcome::Unprotected);
            return Ok(res);
        }
    }

    // The lease is ours: from here, every way out completes or releases it.
    let mut lease = LeaseGuard {
        shared: shared.clone(),
        key,
        token,
        armed: true,
    };
    tracing::trace!(
        target: "rampart::idempotency", layer = %shared.name, key = lease.key.key(),
        "lease taken; running the request"
    );
    let res = match svc.call(Request::from_parts(parts, body)).await {
        Ok(res) => res,
        Err(e) => {
            lease.release("error").await;
            shared.count(IdempotencyOutcome::Executed { stored: false });
            return Err(e);
        }
    };
    // The handler has returned: its work is done. From here a cancel must not release the
    // lease (a retry would run the work again); the response is stored by a task of its own
    // that goes on if this future is dropped.
    lease.armed = false;
    let (head, body) = res.into_parts();
    if !(shared.store_if)(head.status) {
        lease.release("status").await;
        return Ok(executed(&shared, head, streaming(body), false));
    }
    let mut storing: BoxFuture<'static, Response<ReplayBody<ResB>>> =
        Box::pin(store_response(shared.clone(), lease, head, body));
    // Most responses are stored at once (a whole body, a store that answers at once): then no
    // task is needed. Only what is still pending is handed to one.
    if let Poll::Ready(res) = poll_fn(|cx| Poll::Ready(storing.as_mut().poll(cx))).await {
        return Ok(res);
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        // No runtime to hand the rest to: store it here. A cancel from now on leaves the lease
        // to its TTL (retries get 409 meanwhile), never released.
        return Ok(storing.await);
    };
    // Dropped with this future: the task then knows its caller has gone.
    let (caller, gone) = tokio::sync::oneshot::channel::<()>();
    let task = rt.spawn(async move {
        let mut gone = pin!(gone);
        let first = poll_fn(|cx| {
            if let Poll::Ready(res) = storing.as_mut().poll(cx) {
                return Poll::Ready(Some(res));
            }
            gone.as_mut().poll(cx).map(|_| None)
        })
        .await;
        if first.is_some() {
            return first;
        }
        // The caller has gone: finish storing, for at most the lease's TTL (after that the
        // lease is lost anyway).
        if tokio::time::timeout(shared.lease_ttl, storing)
            .await
            .is_err()
        {
            tracing::warn!(
                target: "rampart::idempotency", layer = %shared.name,
                lease_ttl = ?shared.lease_ttl,
                "response of a cancelled request not stored within the lease TTL; its lease \
                 expires after its TTL"
            );
        }
        None
    });
    let stored = task.await;
    drop(caller);
    match stored {
        Ok(Some(res)) => Ok(res),
        Ok(None) => unreachable!("the caller is waiting, so the task answers it"),
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(join) => panic!("the task storing an idempotent response was cancelled: {join}"),
    }
}

/// Reads the response body (bounded) and stores the response, or releases the lease when it
/// cannot be stored; the response to send.
async fn store_response<ResB>(
    shared: Arc<Shared>,
    mut lease: LeaseGuard,
    head: http::response::Parts,
    body: ResB,
) -> Response<ReplayBody<ResB>>
where
    ResB: Body<Data = Bytes> + Unpin,
    ResB::Error: Into<BoxError>,
{
    // The whole body, to store it, before anything is sent: the headers must say whether it
    // was stored.
    let mut read = ReadBody::new(body, shared.max_response_body);
    let body = poll_fn(|cx| read.poll_read(cx)).await;
    let stored = match &body {
        ReplayBody::Buffered { data, trailers } => {
            let headers = storable_headers(
                &head.headers,
                shared.store_set_cookie,
                &shared.exclude_headers,
            );
            let stored =
                StoredResponse::new(head.status, headers, data.clone().unwrap_or_default());
            match trailers {
                Some(t) => stored.with_trailers((**t).clone()),
                None => stored,
            }
        }
        ReplayBody::Streaming { .. } => {
            lease.release("too_large").await;
            return executed(&shared, head, body, false);
        }
        ReplayBody::Failed { .. } => {
            lease.release("body_error").await;
            return executed(&shared, head, body, false);
        }
    };
    let saved = match shared
        .store
        .complete(&lease.key, lease.token, &stored, shared.retention)
        .await
    {
        Ok(true) => true,
        Ok(false) => {
            tracing::warn!(
                target: "rampart::idempotency", layer = %shared.name, key = lease.key.key(),
                lease_ttl = ?shared.lease_ttl,
                "lease lost before the response could be stored: the request took longer than \
                 the lease TTL, and a retry may have run it again"
            );
            shared.count_not_stored("lease_lost");
            false
        }
        Err(e) => {
            tracing::warn!(
                target: "rampart::idempotency", layer = %shared.name, key = lease.key.key(),
                error = %e, "response could not be stored; a retry will run the request again"
            );
            lease.release("store_error").await;
            false
        }
    };
    executed(&shared, head, body, saved)
}

/// Releases the lease `token` on `key` in the background (at once if the store answers at
/// once, as the memory store does; else on the current runtime), for a request that will not
/// release it itself: one whose `begin` failed but may have taken the lease after all (a
/// timeout), or one cancelled while its handler ran. A lease that is not there makes it a
/// no-op. `why` goes into the log line of a failure.
fn release_in_background(
    shared: &Arc<Shared>,
    key: &StoreKey,
    token: LeaseToken,
    why: &'static str,
) {
    let store = shared.store.clone();
    let (name, owned) = (shared.name.clone(), key.clone());
    let mut release: BoxFuture<'static, ()> = Box::pin(async move {
        let key = owned;
        if let Err(e) = store.release(&key, token).await {
            tracing::warn!(
                target: "rampart::idempotency", layer = %name, key = key.key(), error = %e, why,
                "lease could not be released; it expires after its TTL"
            );
        }
    });
    if release
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_pending()
    {
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(release);
            }
            Err(_) => tracing::warn!(
                target: "rampart::idempotency", layer = %shared.name, key = key.key(),
                why, "no runtime to release a lease; it expires after its TTL"
            ),
        }
    }
}

/// The response of a request that ran, counted and marked.
fn executed<B>(
    shared: &Shared,
    mut head: http::response::Parts,
    body: ReplayBody<B>,
    stored: bool,
) -> Response<ReplayBody<B>> {
    let outcome = IdempotencyOutcome::Executed { stored };
    shared.count(outcome);
    tracing::debug!(
        target: "rampart::idempotency", layer = %shared.name, status = head.status.as_u16(),
        stored, "request executed"
    );
    head.extensions.insert(outcome);
    let mut res = Response::from_parts(head, body);
    if !stored {
        mark_not_stored(&mut res);
    }
    res
}

fn mark_not_stored<B>(res: &mut Response<B>) {
    res.headers_mut()
        .insert(IDEMPOTENCY_STORED, HeaderValue::from_static("false"));
}

/// A stored response, as a replay.
fn replay<B>(stored: StoredResponse) -> Response<ReplayBody<B>> {
    let (status, headers, body, trailers) = stored.into_parts();
    let mut res = Response::new(ReplayBody::Buffered {
        data: (!body.is_empty()).then_some(body),
        trailers: trailers.map(Box::new),
    });
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    res.headers_mut()
        .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    res.extensions_mut().insert(IdempotencyOutcome::Replayed);
    res
}

/// A lease taken: released when the request ends without storing, and, if its future is
/// dropped first (a cancelled request), on drop (see `release_on_cancel`).
struct LeaseGuard {
    shared: Arc<Shared>,
    key: StoreKey,
    token: LeaseToken,
    armed: bool,
}

impl LeaseGuard {
    /// Releases the lease (the response will not be stored), counting why.
    async fn release(&mut self, reason: &'static str) {
        self.armed = false;
        self.shared.count_not_stored(reason);
        match self.shared.store.release(&self.key, self.token).await {
            Ok(true) => {}
            Ok(false) => tracing::debug!(
                target: "rampart::idempotency", layer = %self.shared.name, key = self.key.key(),
                "lease already gone when released (it expired)"
            ),
            Err(e) => tracing::warn!(
                target: "rampart::idempotency", layer = %self.shared.name, key = self.key.key(),
                error = %e, "lease could not be released; it expires after its TTL"
            ),
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.shared.count_not_stored("cancelled");
        if !self.shared.release_on_cancel {
            tracing::debug!(
                target: "rampart::idempotency", layer = %self.shared.name, key = self.key.key(),
                "request cancelled; its lease holds until it expires"
            );
            return;
        }
        tracing::debug!(
            target: "rampart::idempotency", layer = %self.shared.name, key = self.key.key(),
            "request cancelled; releasing its lease"
        );
        release_in_background(
            &self.shared,
            &self.key,
            self.token,
            "the request was cancelled",
        );
    }
}
