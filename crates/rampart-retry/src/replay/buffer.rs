//! [`BufferBodyLayer`]: request bodies read into memory (up to a limit) so that a retry can
//! send them again, as rampart-core's [`ReplayBody`].

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::Request;
use http_body::Body;
use pin_project_lite::pin_project;
use rampart_core::{
    body::{ReadNow, ReadRequest, ReplayBody},
    error::BoxError,
};
use tower_layer::Layer;
use tower_service::Service;

/// Reads request bodies into memory, up to `limit` bytes, so that they can be sent again.
///
/// Put it outside a retry layer ([`HttpReplay`](super::HttpReplay) rebuilds each attempt from the
/// held body). The inner service sees a [`ReplayBody`].
#[derive(Debug, Clone, Copy)]
pub struct BufferBodyLayer {
    limit: usize,
}

impl Default for BufferBodyLayer {
    /// 64 KiB.
    fn default() -> Self {
        Self { limit: 64 * 1024 }
    }
}

impl BufferBodyLayer {
    /// Holds bodies of at most `limit` bytes.
    pub const fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for BufferBodyLayer {
    type Service = BufferBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BufferBody {
            inner,
            limit: self.limit,
        }
    }
}

/// The service of [`BufferBodyLayer`].
#[derive(Debug, Clone)]
pub struct BufferBody<S> {
    inner: S,
    limit: usize,
}

impl<S> BufferBody<S> {
    rampart_core::inner_service_accessors!();
}

/// Bodies must be `Unpin` (hyper's, axum's, reqwest's and http-body-util's are), since they
/// are read in place and then moved into the request.
impl<S, B> Service<Request<B>> for BufferBody<S>
where
    S: Service<Request<ReplayBody<B>>> + Clone,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BufferFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let state = match ReadRequest::read_now(req, self.limit) {
            // The body is all there: the service made ready is called at once.
            ReadNow::Read(parts, body) => BufferState::Calling {
                fut: self.inner.call(Request::from_parts(parts, body)),
            },
            // The body streams in: the service made ready is held while it does, and a clone
            // takes its place.
            ReadNow::Pending(read) => {
                let fresh = self.inner.clone();
                let svc = std::mem::replace(&mut self.inner, fresh);
                BufferState::Reading {
                    read,
                    svc: Some(svc),
                }
            }
        };
        BufferFuture { state }
    }
}

pin_project! {
    /// Reads the body, then calls the inner service.
    pub struct BufferFuture<S, B>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        state: BufferState<S, B>,
    }
}

pin_project! {
    #[project = BufferStateProj]
    enum BufferState<S, B>
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
        },
    }
}

impl<S, B> fmt::Debug for BufferFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferFuture").finish_non_exhaustive()
    }
}

impl<S, B> Future for BufferFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                BufferStateProj::Calling { fut } => return fut.poll(cx),
                BufferStateProj::Reading { read, svc } => {
                    let ((), parts, body) = ready!(read.poll_read(cx));
                    let mut svc = svc.take().expect("BufferFuture polled after completion");
                    let fut = svc.call(Request::from_parts(parts, body));
                    state.set(BufferState::Calling { fut });
                }
            }
        }
    }
}
