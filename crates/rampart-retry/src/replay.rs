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
pub use self::http_replay::HttpReplay;
#[cfg(feature = "http")]
mod buffer;
#[cfg(feature = "http")]
pub use self::buffer::{BufferBody, BufferBodyLayer, BufferFuture};
#[cfg(feature = "http")]
pub use rampart_core::body::ReplayBody;

#[cfg(feature = "http")]
mod http_replay {
    use bytes::Bytes;
    use http::{HeaderMap, Request};
    use rampart_core::body::ReplayBody;

    use super::Replay;

    /// Rebuilds HTTP requests whose body [`BufferBodyLayer`](super::BufferBodyLayer) held in memory.
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
        trailers: Option<Box<HeaderMap>>,
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
}
