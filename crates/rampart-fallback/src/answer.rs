//! What a fallback answers with and tells: the [`FALLBACK`] header, the answer's [`Source`]
//! ([`FallbackAnswer`]), what failed ([`Failed`]), and a [`StaticResponse`].

use std::{error::Error, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri, Version};

use crate::cache::Staleness;

/// The response header that marks a fallback answer: `cache; staleness=stale; age=42`,
/// `static` or `function`.
pub const FALLBACK: HeaderName = HeaderName::from_static("rampart-fallback");

/// Where a fallback answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The last good response for the request's key.
    Cache {
        /// How stale it is.
        staleness: Staleness,
        /// How old it is.
        age: Duration,
    },
    /// A static response of the chain.
    Static,
    /// A fallback function or service of the chain.
    Function,
}

/// In a fallback answer's extensions: where it came from and what it stands in for. The
/// [`FALLBACK`] header says the same to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FallbackAnswer {
    /// Where it came from.
    pub source: Source,
    /// The failure response it replaces, if the inner service answered (else it failed with
    /// an error).
    pub replaced_status: Option<StatusCode>,
    /// Which alternative of the chain answered, counted from 0 in the order they were added
    /// (static responses, functions and services; the cache is always tried first and is
    /// `0`).
    pub alternative: usize,
}

impl FallbackAnswer {
    pub(crate) fn header(&self) -> HeaderValue {
        let text = match self.source {
            Source::Cache { staleness, age } => {
                format!("cache; staleness={staleness}; age={}", age.as_secs())
            }
            Source::Static => "static".to_owned(),
            Source::Function => "function".to_owned(),
        };
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("fallback"))
    }
}

/// What a fallback function gets: the request's head (and body, when a layer further out
/// holds it in memory) and how it failed. Every alternative of the chain gets its own copy.
#[derive(Debug, Clone)]
pub struct Failed {
    /// The request's method.
    pub method: Method,
    /// The request's URI.
    pub uri: Uri,
    /// The request's version.
    pub version: Version,
    /// The request's headers.
    pub headers: HeaderMap,
    /// The request's whole body, if a layer further out read it into memory (a
    /// [`BufferedBody`](rampart_core::body::BufferedBody) in its extensions: rampart-retry's
    /// `BufferBodyLayer`, the dead-letter layer); else `None`, since this layer does not hold
    /// back the body the inner service streams.
    pub body: Option<Bytes>,
    /// The failure response's status, if the inner service answered.
    pub status: Option<StatusCode>,
    /// The error, if the inner service failed with one (the same for every alternative).
    pub error: Option<Arc<dyn Error + Send + Sync>>,
}

/// A response held in memory: what fallbacks answer with.
#[derive(Debug, Clone)]
pub struct StaticResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl StaticResponse {
    /// A response with `status` and `body`.
    pub fn new(status: StatusCode, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: body.into(),
        }
    }

    /// With header `name: value`.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    pub(crate) fn parts(&self) -> (StatusCode, HeaderMap, Bytes) {
        (self.status, self.headers.clone(), self.body.clone())
    }
}

impl From<Response<Bytes>> for StaticResponse {
    fn from(res: Response<Bytes>) -> Self {
        let (parts, body) = res.into_parts();
        Self {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}
