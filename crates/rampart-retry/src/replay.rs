//! How a request is sent again: [`Replay`].
//!
//! [`ByClone`] (the default) replays any `Clone` request. For HTTP, whose requests are not
//! `Clone`, [`BufferBodyLayer`] (feature `http`) reads the body into memory up to a limit
//! (64 KiB by default) before the retries, and [`HttpReplay`] rebuilds each attempt from the
//! buffered head and body: method, URI, version, headers (the idempotency key included) and
//! extensions. A body over the limit, or one that fails to read, is passed on as it streams and
//! gets one attempt only; the give-up reason says so ([`GiveUp::NotReplayable`]).
//!
//! [`GiveUp::NotReplayable`]: crate::policy::GiveUp::NotReplayable

/// Keeps what is needed to send a request again.
pub trait Replay<Req>: Clone + Send + Sync + 'static {
    /// What later attempts are made from.
    type Stored: Send + 'static;

    /// Splits `req` into the first attempt's request and what later attempts are made from;
    /// `None` if the request cannot be sent again.
    fn keep(&self, req: Req) -> (Req, Option<Self::Stored>);

    /// The request of a later attempt.
    fn again(&self, stored: &Self::Stored) -> Req;
}

/// Replays a request by cloning it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByClone;

impl<Req: Clone + Send + 'static> Replay<Req> for ByClone {
    type Stored = Req;

    #[inline]
    fn keep(&self, req: Req) -> (Req, Option<Req>) {
        (req.clone(), Some(req))
    }

    #[inline]
    fn again(&self, stored: &Req) -> Req {
        stored.clone()
    }
}

#[cfg(feature = "http")]
pub use self::http_replay::{BufferBody, BufferBodyLayer, HttpReplay, ReplayBody};

#[cfg(feature = "http")]
mod http_replay {
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

    use super::Replay;

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
                error: Option<rampart_core::error::BoxError>,
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
        B::Error: Into<rampart_core::error::BoxError>,
    {
        type Data = Bytes;
        type Error = rampart_core::error::BoxError;

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

    /// Rebuilds HTTP requests whose body [`BufferBodyLayer`] held in memory.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct HttpReplay;

    /// The head and body of a buffered request.
    #[derive(Debug)]
    pub struct StoredRequest {
        method: http::Method,
        uri: http::Uri,
        version: http::Version,
        headers: HeaderMap,
        extensions: http::Extensions,
        data: Option<Bytes>,
        trailers: Option<HeaderMap>,
    }

    impl<B: Send + 'static> Replay<Request<ReplayBody<B>>> for HttpReplay {
        type Stored = StoredRequest;

        fn keep(
            &self,
            req: Request<ReplayBody<B>>,
        ) -> (Request<ReplayBody<B>>, Option<StoredRequest>) {
            let (parts, body) = req.into_parts();
            let stored = match &body {
                ReplayBody::Buffered { data, trailers } => Some(StoredRequest {
                    method: parts.method.clone(),
                    uri: parts.uri.clone(),
                    version: parts.version,
                    headers: parts.headers.clone(),
                    extensions: parts.extensions.clone(),
                    data: data.clone(),
                    trailers: trailers.clone(),
                }),
                ReplayBody::Streaming { .. } | ReplayBody::Failed { .. } => None,
            };
            (Request::from_parts(parts, body), stored)
        }

        fn again(&self, s: &StoredRequest) -> Request<ReplayBody<B>> {
            let mut req = Request::new(ReplayBody::Buffered {
                data: s.data.clone(),
                trailers: s.trailers.clone(),
            });
            *req.method_mut() = s.method.clone();
            *req.uri_mut() = s.uri.clone();
            *req.version_mut() = s.version;
            *req.headers_mut() = s.headers.clone();
            *req.extensions_mut() = s.extensions.clone();
            req
        }
    }

    /// Reads request bodies into memory, up to `limit` bytes, so that they can be replayed.
    /// Put it outside the `RetryLayer` (with [`HttpReplay`]).
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
        B::Error: Into<rampart_core::error::BoxError>,
    {
        type Response = S::Response;
        type Error = S::Error;
        type Future = BufferFuture<S, B>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, req: Request<B>) -> Self::Future {
            let fresh = self.inner.clone();
            let svc = std::mem::replace(&mut self.inner, fresh);
            let (parts, body) = req.into_parts();
            // A body known to be too large is not read at all.
            let too_big = body.size_hint().lower() > self.limit as u64;
            BufferFuture {
                state: if too_big {
                    let req = Request::from_parts(
                        parts,
                        ReplayBody::Streaming {
                            prefix: None,
                            rest: body,
                        },
                    );
                    let mut svc = svc;
                    BufferState::Calling { fut: svc.call(req) }
                } else {
                    BufferState::Reading {
                        svc: Some(svc),
                        parts: Some(parts),
                        body: Some(body),
                        buf: BytesMut::new(),
                        trailers: None,
                        limit: self.limit,
                    }
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
                body: Option<B>,
                buf: BytesMut,
                trailers: Option<HeaderMap>,
                limit: usize,
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
        B::Error: Into<rampart_core::error::BoxError>,
    {
        type Output = Result<S::Response, S::Error>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let mut state = self.project().state;
            loop {
                let (body, parts, svc) = match state.as_mut().project() {
                    BufferStateProj::Calling { fut } => return fut.poll(cx),
                    BufferStateProj::Reading {
                        svc,
                        parts,
                        body,
                        buf,
                        trailers,
                        limit,
                    } => {
                        let b = body.as_mut().expect("BufferFuture polled after completion");
                        let next = ready!(Pin::new(b).poll_frame(cx));
                        let done = match next {
                            Some(Ok(frame)) => match frame.into_data() {
                                Ok(data) => {
                                    buf.extend_from_slice(&data);
                                    if buf.len() > *limit {
                                        Some(false)
                                    } else {
                                        None
                                    }
                                }
                                Err(frame) => {
                                    if let Ok(t) = frame.into_trailers() {
                                        *trailers = Some(t);
                                    }
                                    None
                                }
                            },
                            // A read error: handed on with what was read, so the inner service
                            // sees the body fail exactly as it would have.
                            Some(Err(e)) => {
                                let parts =
                                    parts.take().expect("BufferFuture polled after completion");
                                let svc = svc.take().expect("BufferFuture polled after completion");
                                let read = buf.split().freeze();
                                let body = ReplayBody::Failed {
                                    prefix: (!read.is_empty()).then_some(read),
                                    error: Some(e.into()),
                                };
                                let mut svc = svc;
                                let fut = svc.call(Request::from_parts(parts, body));
                                state.set(BufferState::Calling { fut });
                                continue;
                            }
                            None => Some(true),
                        };
                        let Some(complete) = done else { continue };
                        let parts = parts.take().expect("BufferFuture polled after completion");
                        let svc = svc.take().expect("BufferFuture polled after completion");
                        let read = buf.split().freeze();
                        let rest = body.take().expect("BufferFuture polled after completion");
                        let body = if complete {
                            ReplayBody::Buffered {
                                data: (!read.is_empty()).then_some(read),
                                trailers: trailers.take(),
                            }
                        } else {
                            ReplayBody::Streaming {
                                prefix: (!read.is_empty()).then_some(read),
                                rest,
                            }
                        };
                        (body, parts, svc)
                    }
                };
                let mut svc = svc;
                let fut = svc.call(Request::from_parts(parts, body));
                state.set(BufferState::Calling { fut });
            }
        }
    }
}
