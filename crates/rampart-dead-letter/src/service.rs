//! [`DeadLetterService`] and its [`ResponseFuture`].

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use rampart_core::{
    BoxFuture,
    body::{ReadNow, ReadRequest, ReplayBody},
    error::BoxError,
};
use tower_service::Service;

use crate::{
    answer::{OnParked, park_failed},
    body::{DeadLetterBody, Watch},
    shared::{Final, Shared, Snapshot},
};

/// Parks the requests that finally fail. Made by [`DeadLetterLayer`](crate::DeadLetterLayer).
///
/// The request body is read into memory up to the layer's `max_body` first (so that it can be
/// recorded), and the inner service gets it as a [`ReplayBody`], which rampart-retry's
/// `HttpReplay` replays without reading it again.
pub struct DeadLetterService<S, M> {
    inner: S,
    shared: Arc<Shared>,
    mode: M,
}

impl<S: Clone, M: Clone> Clone for DeadLetterService<S, M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            mode: self.mode.clone(),
        }
    }
}

impl<S: fmt::Debug, M: fmt::Debug> fmt::Debug for DeadLetterService<S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetterService")
            .field("inner", &self.inner)
            .field("service", &self.shared.service)
            .field("mode", &self.mode)
            .finish()
    }
}

impl<S, M> DeadLetterService<S, M> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>, mode: M) -> Self {
        Self {
            inner,
            shared,
            mode,
        }
    }

    rampart_core::inner_service_accessors!();
}

/// Bodies must be `Unpin` (hyper's, axum's, reqwest's and http-body-util's are): they are
/// read in place before the call.
impl<S, M, B, ResB> Service<Request<B>> for DeadLetterService<S, M>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
    M: OnParked<ResB>,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    ResB: Send + 'static,
{
    type Response = Response<DeadLetterBody<ResB>>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B, M>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // An inner service that cannot be made ready fails the call before any request exists:
        // there is nothing to park.
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let state = match ReadRequest::read_now(req, self.shared.max_body) {
            // The body is all there (a `Full`, a body in memory): call on at once.
            ReadNow::Read(mut parts, body) => {
                let snap = Snapshot::of(&mut parts, &body);
                State::Calling {
                    fut: self.inner.call(Request::from_parts(parts, body)),
                    snap: Some(snap),
                }
            }
            // The body streams in: the service made ready is held while it does, and a clone
            // takes its place (the only clone of the inner stack this layer makes).
            ReadNow::Pending(read) => {
                let fresh = self.inner.clone();
                let svc = std::mem::replace(&mut self.inner, fresh);
                State::Reading {
                    read,
                    svc: Some(svc),
                }
            }
        };
        ResponseFuture {
            state,
            shared: self.shared.clone(),
            mode: self.mode.clone(),
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        // Boxed (by `read_now`), so that the future is no larger than the call's on the
        // path where the body is already there.
        Reading {
            read: Box<ReadRequest<(), B>>,
            svc: Option<S>,
        },
        Calling {
            #[pin]
            fut: S::Future,
            snap: Option<Snapshot>,
        },
        Parking {
            fut: BoxFuture<'static, Result<S::Response, BoxError>>,
        },
    }
}

pin_project! {
    /// The response future of [`DeadLetterService`]: reads the body, calls the inner service,
    /// and parks a final failure.
    pub struct ResponseFuture<S, B, M>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        state: State<S, B>,
        shared: Arc<Shared>,
        mode: M,
    }
}

impl<S, B, M> fmt::Debug for ResponseFuture<S, B, M>
where
    S: Service<Request<ReplayBody<B>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, B, M, ResB> Future for ResponseFuture<S, B, M>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    M: OnParked<ResB>,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    ResB: Send + 'static,
{
    type Output = Result<Response<DeadLetterBody<ResB>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Reading { read, svc } => {
                    let ((), mut parts, body) = ready!(read.poll_read(cx));
                    let mut svc = svc.take().expect("polled after completion");
                    let snap = Snapshot::of(&mut parts, &body);
                    let fut = svc.call(Request::from_parts(parts, body));
                    this.state.set(State::Calling {
                        fut,
                        snap: Some(snap),
                    });
                }
                StateProj::Calling { fut, snap } => {
                    let failure = match ready!(fut.poll(cx)) {
                        Ok(res) => match this.shared.judge_head(res.status(), res.headers()) {
                            Ok(Some(kind)) => (kind, Final::Response(res)),
                            outcome => {
                                // An answer whose head defers (a gRPC stream) reports its
                                // outcome in the trailers: watch them.
                                let watch = outcome.is_err();
                                return Poll::Ready(Ok(match snap.take() {
                                    Some(snap) if watch => {
                                        let shared = this.shared.clone();
                                        res.map(|b| {
                                            DeadLetterBody::watched(b, Watch { shared, snap })
                                        })
                                    }
                                    _ => res.map(DeadLetterBody::plain),
                                }));
                            }
                        },
                        Err(e) => {
                            let e: BoxError = e.into();
                            match this.shared.park_error(&*e) {
                                None => return Poll::Ready(Err(e)),
                                Some(kind) => (kind, Final::Error(e)),
                            }
                        }
                    };
                    let snap = snap.take().expect("polled after completion");
                    let fut = park(this.shared.clone(), this.mode.clone(), snap, failure);
                    this.state.set(State::Parking { fut });
                }
                StateProj::Parking { fut } => {
                    return fut
                        .as_mut()
                        .poll(cx)
                        .map_ok(|res| res.map(DeadLetterBody::plain));
                }
            }
        }
    }
}

/// Records and stores a final failure, then answers as the mode says. Boxed: only a failed
/// request gets here.
#[cold]
fn park<M, ResB>(
    shared: Arc<Shared>,
    mode: M,
    snap: Snapshot,
    (kind, failure): (crate::record::ParkReason, Final<ResB>),
) -> BoxFuture<'static, Result<Response<ResB>, BoxError>>
where
    M: OnParked<ResB>,
    ResB: Send + 'static,
{
    Box::pin(async move {
        let record = shared.record(snap, kind, &failure);
        match shared.park(&record).await {
            Ok(kept) => mode.parked(kept.id, kind, failure, kept.durable),
            Err(stores) => Err(park_failed(kind, failure, stores)),
        }
    })
}
