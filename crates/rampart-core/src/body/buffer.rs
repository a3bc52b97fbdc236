//! Bounded request-body buffering: [`ReadBody`] reads a body into memory, up to a limit, as a
//! [`ReplayBody`], so that it can be sent again (retries, redrive) or recorded whole (dead
//! letters). rampart-retry's `BufferBodyLayer` is the layer over it.
//!
//! A body over the limit is not held: what was read is handed on with the rest as it streams
//! ([`ReplayBody::Streaming`]), so a large upload still goes through, once. A body that fails
//! while being read is handed on with its error ([`ReplayBody::Failed`]), never passed off as a
//! shorter whole body.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::error::BoxError;

pin_project! {
    /// A request body that is either held in memory (replayable) or still streaming (one
    /// attempt only).
    ///
    /// `Buffered { data, trailers }`: the data (`None` once sent, or if empty) and the
    /// trailers, if any (boxed: requests rarely have them, and the body is moved through
    /// every layer at its full size). `Streaming { prefix, rest }`: what was read before the limit was
    /// passed, then the rest of the original body. `Failed { prefix, error }`: what was
    /// read before the original body failed, then its error (never lost: the inner
    /// service reads it as the body's error).
    #[allow(missing_docs)] // the fields are described above: the macro takes no field docs
    #[project = ReplayBodyProj]
    pub enum ReplayBody<B> {
        /// The whole body, read into memory.
        Buffered {
            data: Option<Bytes>,
            trailers: Option<Box<HeaderMap>>,
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
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(*t))))
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

/// Reads a body into memory up to a limit: the reading step of rampart-retry's `BufferFuture`, for any
/// future that must hold a request's body before calling on.
///
/// A body that arrives in one data frame (a `Full`, most small requests through hyper) is kept
/// as that frame's `Bytes`, not copied; only a second frame starts a buffer that the frames
/// are copied into.
pub struct ReadBody<B> {
    body: Option<B>,
    /// The first data frame, kept as it came while it is the only one.
    first: Option<Bytes>,
    /// The frames copied together, once there is more than one.
    buf: BytesMut,
    trailers: Option<Box<HeaderMap>>,
    limit: usize,
}

impl<B> fmt::Debug for ReadBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadBody")
            .field("read", &self.read_len())
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
            first: None,
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
            let empty = self.read_len() == 0;
            let body = self
                .body
                .as_mut()
                .expect("ReadBody polled after completion");
            if empty && body.size_hint().lower() > self.limit as u64 {
                let rest = self.body.take().expect("checked above");
                return Poll::Ready(ReplayBody::Streaming { prefix: None, rest });
            }
            match ready!(Pin::new(body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        self.keep(data);
                        if self.read_len() > self.limit {
                            let read = self.take_read();
                            let rest = self.body.take().expect("checked above");
                            return Poll::Ready(ReplayBody::Streaming {
                                prefix: Some(read),
                                rest,
                            });
                        }
                    }
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            self.trailers = Some(Box::new(t));
                        }
                    }
                },
                // A read error: handed on with what was read, so the inner service sees the
                // body fail exactly as it would have.
                Some(Err(e)) => {
                    self.body = None;
                    let read = self.take_read();
                    return Poll::Ready(ReplayBody::Failed {
                        prefix: (!read.is_empty()).then_some(read),
                        error: Some(e.into()),
                    });
                }
                None => {
                    self.body = None;
                    let read = self.take_read();
                    return Poll::Ready(ReplayBody::Buffered {
                        data: (!read.is_empty()).then_some(read),
                        trailers: self.trailers.take(),
                    });
                }
            }
        }
    }
}

impl<B> ReadBody<B> {
    /// How many bytes have been read.
    fn read_len(&self) -> usize {
        self.first.as_ref().map_or(0, Bytes::len) + self.buf.len()
    }

    /// Keeps a data frame: as it is while it is the only one, copied after the others once
    /// there are two.
    fn keep(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        if self.buf.is_empty() && self.first.is_none() {
            self.first = Some(data);
            return;
        }
        if let Some(first) = self.first.take() {
            self.buf.reserve(first.len() + data.len());
            self.buf.extend_from_slice(&first);
        }
        self.buf.extend_from_slice(&data);
    }

    /// What was read, as one `Bytes`.
    fn take_read(&mut self) -> Bytes {
        match self.first.take() {
            Some(first) => first,
            None => self.buf.split().freeze(),
        }
    }
}

/// In a request's extensions: its whole body, as a rampart layer further out read it into
/// memory ([`ReadRequest`]: rampart-retry's `BufferBodyLayer`, the dead-letter layer). A layer
/// further in that must see the body without taking it (a fallback function deciding what to
/// answer, a queue parking the request) reads it here. The copy shares the bytes the body
/// sends; it is not a second buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BufferedBody(pub Bytes);

/// A request being read into memory ([`ReadBody`]) before it goes to `S`, the service it was
/// called on: the first state of every future that holds a body before calling on
/// (rampart-retry's `BufferFuture`, the dead-letter layer's response future).
pub struct ReadRequest<S, B> {
    svc: Option<S>,
    parts: Option<http::request::Parts>,
    read: ReadBody<B>,
}

/// What [`ReadRequest::read_now`] did.
#[derive(Debug)]
// The large variant is the common one, handed straight back; the rare one is boxed.
#[allow(clippy::large_enum_variant)]
pub enum ReadNow<B> {
    /// The body was all there: the request's head and the body to send.
    Read(http::request::Parts, ReplayBody<B>),
    /// The body must be waited for: the read so far, to go on with
    /// [`poll_read`](ReadRequest::poll_read) (or [`with_service`](ReadRequest::with_service)).
    /// Boxed: it holds the request's head, and a future that keeps it in place would be as
    /// large on the path where the body is already there, and moved at that size.
    Pending(Box<ReadRequest<(), B>>),
}

impl<B> ReadRequest<(), B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    /// Reads `req`'s body at once if that takes no waiting (a `Full`, a body already in
    /// memory): the head, with a [`BufferedBody`] in its extensions as
    /// [`poll_read`](Self::poll_read) leaves it, and the body to send. Else the read so far,
    /// to go on with [`with_service`](ReadRequest::with_service) and `poll_read`.
    ///
    /// A layer that must hold the body before it calls on uses this to call the service
    /// `poll_ready` made ready straight away when the body is already there, and to clone the
    /// service (to hold it while the body streams in) only when it is not.
    ///
    /// The head is not moved into a [`ReadRequest`] unless the body must be waited for: on the
    /// path where it is all there, the request's parts go straight back to the caller.
    #[inline]
    pub fn read_now(req: http::Request<B>, limit: usize) -> ReadNow<B> {
        let (mut parts, body) = req.into_parts();
        let mut read = ReadBody::new(body, limit);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match read.poll_read(&mut cx) {
            Poll::Ready(body) => {
                note_buffered(&mut parts, &body);
                ReadNow::Read(parts, body)
            }
            Poll::Pending => ReadNow::Pending(Box::new(ReadRequest {
                svc: Some(()),
                parts: Some(parts),
                read,
            })),
        }
    }
}

impl<B> ReadRequest<(), B> {
    /// The read [`read_now`](ReadRequest::read_now) could not finish, to go on for `svc`.
    pub fn with_service<S>(self, svc: S) -> ReadRequest<S, B> {
        ReadRequest {
            svc: Some(svc),
            parts: self.parts,
            read: self.read,
        }
    }
}

impl<S, B> fmt::Debug for ReadRequest<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadRequest")
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl<S, B> ReadRequest<S, B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    /// Reads `req`'s body, holding at most `limit` bytes, for `svc`.
    pub fn new(svc: S, req: http::Request<B>, limit: usize) -> Self {
        let (parts, body) = req.into_parts();
        Self {
            svc: Some(svc),
            parts: Some(parts),
            read: ReadBody::new(body, limit),
        }
    }

    /// Reads on; ready with the service, the request's head and its body to send (see
    /// [`ReadBody::poll_read`]). A body read whole is also left in the head's extensions as a
    /// [`BufferedBody`], for the layers further in.
    ///
    /// # Panics
    ///
    /// If polled again after it returned `Ready`.
    pub fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<(S, http::request::Parts, ReplayBody<B>)> {
        let body = ready!(self.read.poll_read(cx));
        match (self.svc.take(), self.parts.take()) {
            (Some(svc), Some(mut parts)) => {
                note_buffered(&mut parts, &body);
                Poll::Ready((svc, parts, body))
            }
            _ => panic!("ReadRequest polled after completion"),
        }
    }
}

/// Leaves a body read whole in the head's extensions as a [`BufferedBody`].
#[inline]
fn note_buffered<B>(parts: &mut http::request::Parts, body: &ReplayBody<B>) {
    if let ReplayBody::Buffered { data, .. } = body {
        parts
            .extensions
            .insert(BufferedBody(data.clone().unwrap_or_default()));
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use std::convert::Infallible;

    use http_body_util::{BodyExt, Full};

    use super::*;

    fn request<B>(body: B) -> http::Request<B> {
        http::Request::post("http://svc/").body(body).unwrap()
    }

    #[tokio::test]
    async fn a_body_read_whole_is_left_in_the_extensions_for_the_layers_further_in() {
        let mut read = ReadRequest::new((), request(Full::new(Bytes::from_static(b"abc"))), 16);
        let ((), parts, body) = poll_fn(|cx| read.poll_read(cx)).await;
        assert_eq!(
            parts.extensions.get::<BufferedBody>(),
            Some(&BufferedBody(Bytes::from_static(b"abc")))
        );
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abc");
    }

    /// A body that sends the given data frames, one per poll.
    struct Frames(std::collections::VecDeque<Bytes>);

    impl Frames {
        fn of(frames: &[&'static str]) -> Self {
            Self(
                frames
                    .iter()
                    .map(|f| Bytes::from_static(f.as_bytes()))
                    .collect(),
            )
        }
    }

    impl Body for Frames {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(|d| Ok(Frame::data(d))))
        }
    }

    /// A body of one frame is kept as that frame (the same bytes, not a copy); a body of
    /// several is read whole, in order.
    #[tokio::test]
    async fn one_frame_is_kept_as_it_came_and_several_are_joined() {
        let frame = Bytes::from(vec![7u8; 64]);
        let mut read = ReadBody::new(Full::new(frame.clone()), 1024);
        let body = poll_fn(|cx| read.poll_read(cx)).await;
        let ReplayBody::Buffered {
            data: Some(data), ..
        } = body
        else {
            panic!("a small body is buffered");
        };
        assert_eq!(
            data.as_ptr(),
            frame.as_ptr(),
            "the frame itself, not a copy"
        );

        let mut read = ReadBody::new(Frames::of(&["ab", "", "cd", "ef"]), 1024);
        let body = poll_fn(|cx| read.poll_read(cx)).await;
        assert!(body.is_buffered());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcdef");

        let mut read = ReadBody::new(Frames::of(&["abc", "def", "gh"]), 5);
        let body = poll_fn(|cx| read.poll_read(cx)).await;
        assert!(!body.is_buffered(), "over the limit: streamed");
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcdefgh");
    }

    /// A body already there is read at once; one that must be waited for is handed back,
    /// and reads on, with what it had, once given a service.
    #[tokio::test]
    async fn a_body_already_there_is_read_at_once() {
        let ReadNow::Read(parts, body) =
            ReadRequest::read_now(request(Full::new(Bytes::from_static(b"abc"))), 16)
        else {
            panic!("a Full body is there at once");
        };
        assert!(parts.extensions.get::<BufferedBody>().is_some());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abc");

        let (tx, rx) = tokio::sync::oneshot::channel::<&'static str>();
        let later = Later {
            first: Some(Bytes::from_static(b"ab")),
            rest: rx,
        };
        let ReadNow::Pending(pending) = ReadRequest::read_now(request(later), 16) else {
            panic!("the rest of the body is not there yet");
        };
        let mut read = (*pending).with_service("svc");
        tx.send("cd").unwrap();
        let (svc, _, body) = poll_fn(|cx| read.poll_read(cx)).await;
        assert_eq!(svc, "svc");
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcd");
    }

    /// A body whose first frame is there and whose second comes from a channel.
    struct Later {
        first: Option<Bytes>,
        rest: tokio::sync::oneshot::Receiver<&'static str>,
    }

    impl Body for Later {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            if let Some(first) = self.first.take() {
                return Poll::Ready(Some(Ok(Frame::data(first))));
            }
            if self.rest.is_terminated() {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.rest).poll(cx) {
                Poll::Ready(Ok(s)) => {
                    Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(s.as_bytes())))))
                }
                Poll::Ready(Err(_)) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_leaves_nothing_behind() {
        let mut read = ReadRequest::new((), request(Full::new(Bytes::from_static(b"abcdefgh"))), 5);
        let ((), parts, body) = poll_fn(|cx| read.poll_read(cx)).await;
        assert!(parts.extensions.get::<BufferedBody>().is_none());
        assert!(!body.is_buffered());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcdefgh");
    }
}
