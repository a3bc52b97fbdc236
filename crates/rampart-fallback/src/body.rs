//! [`FallbackBody`]: the response body of a [`Fallback`](crate::Fallback) service.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::cache::LastGood;

/// Copies a good response's body as it streams, and caches it at the end.
pub(crate) struct Recorder {
    pub(crate) cache: LastGood,
    pub(crate) key: String,
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) buf: BytesMut,
}

pin_project! {
    /// The inner service's body (copied into the cache as it streams, for a good response that
    /// is cached), or a fallback's body held in memory.
    pub struct FallbackBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner {
            #[pin]
            body: B,
            recorder: Option<Box<Recorder>>,
        },
        Full {
            data: Option<Bytes>,
        },
    }
}

impl<B> FallbackBody<B> {
    pub(crate) fn inner(body: B, recorder: Option<Box<Recorder>>) -> Self {
        Self {
            kind: Kind::Inner { body, recorder },
        }
    }

    pub(crate) fn full(data: Bytes) -> Self {
        Self {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }

    /// `true` if this is a fallback's body rather than the inner service's.
    pub fn is_fallback(&self) -> bool {
        matches!(self.kind, Kind::Full { .. })
    }
}

impl<B> fmt::Debug for FallbackBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { .. } => f.debug_struct("Inner").finish_non_exhaustive(),
            Kind::Full { data } => f
                .debug_struct("Full")
                .field("len", &data.as_ref().map_or(0, Bytes::len))
                .finish(),
        }
    }
}

impl<B> Body for FallbackBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Inner { mut body, recorder } => {
                let frame = ready!(body.as_mut().poll_frame(cx));
                let ended = match &frame {
                    Some(Ok(_)) => body.is_end_stream(),
                    Some(Err(_)) => false,
                    None => true,
                };
                match &frame {
                    Some(Ok(f)) => {
                        if let (Some(d), Some(r)) = (f.data_ref(), recorder.as_mut()) {
                            if r.buf.len() + d.len() > r.cache.max_body() {
                                // Too large to keep: stream on, cache nothing.
                                *recorder = None;
                            } else {
                                r.buf.extend_from_slice(d);
                            }
                        }
                    }
                    // A body that fails is not a good response.
                    Some(Err(_)) => *recorder = None,
                    None => {}
                }
                // Cached once the whole body has gone by (a reader may stop polling as soon
                // as the body says it has ended).
                if ended && let Some(r) = recorder.take() {
                    let r = *r;
                    r.cache.put(r.key, r.status, r.headers, r.buf.freeze());
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body, .. } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body, .. } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
