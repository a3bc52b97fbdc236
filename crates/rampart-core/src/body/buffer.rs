//! Bounded request-body buffering: [`BufferBodyLayer`] reads a body into memory, up to a limit,
//! so that it can be sent again (retries, dead-letter records, redrive); [`ReadBody`] does the
//! reading for any future that needs it.
//!
//! A body over the limit is not held: what was read is handed on with the rest as it streams
//! ([`ReplayBody::Streaming`]), so a large upload still goes through, once. A body that fails
//! while being read is handed on with its error ([`ReplayBody::Failed`]), never passed off as a
//! shorter whole body.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::BoxError;

pin_project! {
    /// A request body that is either held in memory (replayable) or still streaming (one
    /// attempt only).
    ///
    /// `Buffered { data, trailers }`: the data (`None` once sent, or if empty) and the
    /// trailers, if any. `Streaming { prefix, rest }`: what was read before the limit was
    /// passed, then the rest of the original body. `Failed { prefix, error }`: what was
    /// read before the original body failed, then its error (never lost: the inner
    /// service reads it as the body's error).
    #[allow(missing_docs)] // the fields are described above: the macro takes no field docs
    #[project = ReplayBodyProj]
    pub enum ReplayBody<B> {
        /// The whole body, read into memory.
        Buffered {
            data: Option<Bytes>,
            trailers: Option<HeaderMap>,
        },
        /// Too large (or unreadable) to hold: what was read, then the rest as it streams.
        Streaming {
            prefix: Option<Bytes>,
            #[pin]
            rest: B,
        },
        /// The original body failed while it was being read.
        Failed {
            prefix: Option<Bytes>,
            error: Option<BoxError>,
        },
    }
}

impl<B> ReplayBody<B> {
    /// `true` if the whole body is in memory.
    pub fn is_buffered(&self) -> bool {
        matches!(self, ReplayBody::Buffered { .. })
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayBody::Buffered { data, .. } => f
                .debug_struct("Buffered")
                .field("len", &data.as_ref().map_or(0, Bytes::len))
                .finish(),
            ReplayBody::Streaming { .. } => f.debug_struct("Streaming").finish_non_exhaustive(),
            ReplayBody::Failed { error, .. } => {
                f.debug_struct("Failed").field("error", error).finish()
            }
        }
    }
}

/// Its error is a `BoxError`: the original body's error, or the one it failed with while
/// being buffered.
impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project() {
            ReplayBodyProj::Buffered { data, trailers } => {
                if let Some(d) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(d))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            ReplayBodyProj::Streaming { prefix, rest } => {
                if let Some(p) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(p))));
                }
                rest.poll_frame(cx).map_err(Into::into)
            }
            ReplayBodyProj::Failed { prefix, error } => {
                if let Some(p) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(p))));
                }
                Poll::Ready(error.take().map(Err))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReplayBody::Buffered { data, trailers } => data.is_none() && trailers.is_none(),
            ReplayBody::Streaming { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
            ReplayBody::Failed { prefix, error } => prefix.is_none() && error.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReplayBody::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ReplayBody::Streaming { prefix, rest } => {
                let p = prefix.as_ref().map_or(0, |d| d.len() as u64);
                let h = rest.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(h.lower() + p);
                if let Some(u) = h.upper() {
                    out.set_upper(u + p);
                }
                out
            }
            ReplayBody::Failed { prefix, .. } => {
                SizeHint::with_exact(prefix.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

/// Reads a body into memory up to a limit: the reading step of [`BufferFuture`], for any
/// future that must hold a request's body before calling on.
pub struct ReadBody<B> {
    body: Option<B>,
    buf: BytesMut,
    trailers: Option<HeaderMap>,
    limit: usize,
}

impl<B> fmt::Debug for ReadBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadBody")
            .field("read", &self.buf.len())
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl<B> ReadBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    /// Reads `body`, holding at most `limit` bytes.
    pub fn new(body: B, limit: usize) -> Self {
        Self {
            body: Some(body),
            buf: BytesMut::new(),
            trailers: None,
            limit,
        }
    }

    /// Reads on; ready with the body to send once it is all in memory, over the limit, or
    /// failed. A body whose size hint is already over the limit is not read at all.
    ///
    /// # Panics
    ///
    /// If polled again after it returned `Ready`.
    pub fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<ReplayBody<B>> {
        loop {
            let body = self
                .body
                .as_mut()
                .expect("ReadBody polled after completion");
            if self.buf.is_empty() && body.size_hint().lower() > self.limit as u64 {
                let rest = self.body.take().expect("checked above");
                return Poll::Ready(ReplayBody::Streaming { prefix: None, rest });
            }
            match ready!(Pin::new(body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        self.buf.extend_from_slice(&data);
                        if self.buf.len() > self.limit {
                            let read = self.buf.split().freeze();
                            let rest = self.body.take().expect("checked above");
                            return Poll::Ready(ReplayBody::Streaming {
                                prefix: Some(read),
                                rest,
                            });
                        }
                    }
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            self.trailers = Some(t);
                        }
                    }
                },
                // A read error: handed on with what was read, so the inner service sees the
                // body fail exactly as it would have.
                Some(Err(e)) => {
                    self.body = None;
                    let read = self.buf.split().freeze();
                    return Poll::Ready(ReplayBody::Failed {
                        prefix: (!read.is_empty()).then_some(read),
                        error: Some(e.into()),
                    });
                }
                None => {
                    self.body = None;
                    let read = self.buf.split().freeze();
                    return Poll::Ready(ReplayBody::Buffered {
                        data: (!read.is_empty()).then_some(read),
                        trailers: self.trailers.take(),
                    });
                }
            }
        }
    }
}

/// Reads request bodies into memory, up to `limit` bytes, so that they can be sent again.
///
/// Put it outside a retry layer (rampart-retry's `HttpReplay` rebuilds each attempt from the
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
        // The service made ready is the one called; a clone takes its place.
        let fresh = self.inner.clone();
        let svc = std::mem::replace(&mut self.inner, fresh);
        let (parts, body) = req.into_parts();
        BufferFuture {
            state: BufferState::Reading {
                svc: Some(svc),
                parts: Some(parts),
                read: ReadBody::new(body, self.limit),
            },
        }
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
        Reading {
            svc: Option<S>,
            parts: Option<http::request::Parts>,
            read: ReadBody<B>,
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
                BufferStateProj::Reading { svc, parts, read } => {
                    let body = ready!(read.poll_read(cx));
                    let parts = parts.take().expect("BufferFuture polled after completion");
                    let mut svc = svc.take().expect("BufferFuture polled after completion");
                    let fut = svc.call(Request::from_parts(parts, body));
                    state.set(BufferState::Calling { fut });
                }
            }
        }
    }
}
