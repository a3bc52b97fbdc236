//! The gRPC classifier: `grpc-status` in the response headers (trailers-only responses) or in
//! the trailers at the end of the body.

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::{HeaderMap, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::{Classify, Outcome, Record, failure_kind_of};
use crate::error::ConfigError;

/// The gRPC status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum GrpcCode {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl GrpcCode {
    const ALL: [GrpcCode; 17] = [
        GrpcCode::Ok,
        GrpcCode::Cancelled,
        GrpcCode::Unknown,
        GrpcCode::InvalidArgument,
        GrpcCode::DeadlineExceeded,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::ResourceExhausted,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::Unimplemented,
        GrpcCode::Internal,
        GrpcCode::Unavailable,
        GrpcCode::DataLoss,
        GrpcCode::Unauthenticated,
    ];

    /// Every code, `OK` first, in numeric order.
    pub const fn all() -> [GrpcCode; 17] {
        Self::ALL
    }

    /// The code for a numeric value; values outside 0..=16 are `Unknown`, as the gRPC spec says.
    pub const fn from_i32(code: i32) -> GrpcCode {
        if code >= 0 && code <= 16 {
            Self::ALL[code as usize]
        } else {
            GrpcCode::Unknown
        }
    }

    /// Parses a `grpc-status` header value; a malformed value is `Unknown`.
    pub fn from_header(value: &[u8]) -> GrpcCode {
        if value.is_empty() || value.len() > 3 || !value.iter().all(u8::is_ascii_digit) {
            return GrpcCode::Unknown;
        }
        let n = value.iter().fold(0i32, |n, d| n * 10 + i32::from(d - b'0'));
        GrpcCode::from_i32(n)
    }

    /// The code a gRPC client derives from a non-200 HTTP status (gRPC's HTTP-to-gRPC mapping).
    pub const fn from_http_status(status: StatusCode) -> GrpcCode {
        match status.as_u16() {
            200 => GrpcCode::Ok,
            400 => GrpcCode::Internal,
            401 => GrpcCode::Unauthenticated,
            403 => GrpcCode::PermissionDenied,
            404 => GrpcCode::Unimplemented,
            429 | 502 | 503 | 504 => GrpcCode::Unavailable,
            _ => GrpcCode::Unknown,
        }
    }

    const fn bit(self) -> u32 {
        1 << self as u8
    }
}

const fn mask(codes: &[GrpcCode]) -> u32 {
    let mut m = 0;
    let mut i = 0;
    while i < codes.len() {
        m |= codes[i].bit();
        i += 1;
    }
    m
}

const DEFAULT_FAILURES: u32 = mask(&[
    GrpcCode::Unknown,
    GrpcCode::DeadlineExceeded,
    GrpcCode::ResourceExhausted,
    GrpcCode::Internal,
    GrpcCode::Unavailable,
    GrpcCode::DataLoss,
]);
const DEFAULT_TRANSIENT: u32 = mask(&[GrpcCode::Unavailable, GrpcCode::ResourceExhausted]);

/// Classifies gRPC responses by their `grpc-status`.
///
/// The status is read from the response headers when the server answered "trailers-only" (the
/// usual shape of an error), and otherwise from the trailers when the body ends: the body is
/// wrapped in a [`GrpcBody`] that records the outcome then. A body dropped before its end
/// records nothing, which policies treat as a cancelled, ignored call.
///
/// | status | outcome |
/// |---|---|
/// | `OK` | success |
/// | `UNAVAILABLE`, `RESOURCE_EXHAUSTED` | transient failure |
/// | `UNKNOWN`, `DEADLINE_EXCEEDED`, `INTERNAL`, `DATA_LOSS` | fatal failure |
/// | any other code (client errors, `CANCELLED`) | ignored |
/// | an error for a request that could not be sent as it is ([`failure_kind_of`]) | fatal failure |
/// | any other transport error, a body error | transient failure |
/// | a body that ends without `grpc-status` | `UNKNOWN`: fatal failure |
/// | a non-200 HTTP status | the code gRPC maps it to (503 → `UNAVAILABLE`, …) |
#[derive(Debug, Clone, Copy)]
pub struct GrpcClassifier {
    failures: u32,
    transient: u32,
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl GrpcClassifier {
    /// The default classifier (see the type's docs).
    pub const fn new() -> Self {
        Self {
            failures: DEFAULT_FAILURES,
            transient: DEFAULT_TRANSIENT,
        }
    }

    /// A builder starting from the defaults.
    pub fn builder() -> GrpcClassifierBuilder {
        GrpcClassifierBuilder {
            failures: None,
            transient: None,
        }
    }

    /// The outcome of a call that ended with `code`.
    #[inline]
    pub const fn outcome_of_code(&self, code: GrpcCode) -> Outcome {
        match code {
            GrpcCode::Ok => Outcome::Success,
            c if self.failures & c.bit() != 0 => {
                if self.transient & c.bit() != 0 {
                    Outcome::TRANSIENT
                } else {
                    Outcome::FATAL
                }
            }
            _ => Outcome::Ignored,
        }
    }

    /// The outcome as far as the response head tells it.
    fn head_outcome<B>(&self, res: &Response<B>) -> Option<Outcome> {
        super::ClassifyResponse::outcome_of_head(self, res.status(), res.headers())
    }

    fn trailers_outcome(&self, trailers: &HeaderMap) -> Outcome {
        super::ClassifyResponse::outcome_of_trailers(self, StatusCode::OK, Some(trailers))
    }
}

/// `true` for a gRPC answer: `content-type: application/grpc…`.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// A non-200 HTTP status is the code gRPC maps it to; a trailers-only answer's `grpc-status`
/// is in its head; otherwise the trailers tell, and a body that ends without a `grpc-status`
/// is `UNKNOWN`.
impl super::ClassifyResponse for GrpcClassifier {
    fn outcome_of_head(&self, status: StatusCode, headers: &HeaderMap) -> Option<Outcome> {
        if status != StatusCode::OK {
            return Some(self.outcome_of_code(GrpcCode::from_http_status(status)));
        }
        headers
            .get("grpc-status")
            .map(|v| self.outcome_of_code(GrpcCode::from_header(v.as_bytes())))
    }

    fn outcome_of_trailers(&self, status: StatusCode, trailers: Option<&HeaderMap>) -> Outcome {
        if status != StatusCode::OK {
            return self.outcome_of_code(GrpcCode::from_http_status(status));
        }
        let code = trailers
            .and_then(|t| t.get("grpc-status"))
            .map_or(GrpcCode::Unknown, |v| GrpcCode::from_header(v.as_bytes()));
        self.outcome_of_code(code)
    }
}

impl<B, E> Classify<Response<B>, E> for GrpcClassifier
where
    B: Body + 'static,
    E: 'static,
{
    type Response<R: Record> = Response<GrpcBody<B, R>>;

    fn outcome_of(&self, result: Result<&Response<B>, &E>) -> Option<Outcome> {
        match result {
            Ok(res) => self.head_outcome(res),
            Err(e) => Some(Outcome::Failure(failure_kind_of(e))),
        }
    }

    fn classify<R: Record>(
        &self,
        result: Result<Response<B>, E>,
        recorder: R,
    ) -> Result<Response<GrpcBody<B, R>>, E> {
        match result {
            Ok(res) => {
                let pending = match self.head_outcome(&res) {
                    Some(outcome) => {
                        recorder.record(outcome);
                        None
                    }
                    None => Some(recorder),
                };
                let classifier = *self;
                Ok(res.map(|inner| GrpcBody {
                    inner,
                    recorder: pending,
                    classifier,
                }))
            }
            Err(e) => {
                recorder.record(Outcome::Failure(failure_kind_of(&e)));
                Err(e)
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn classify_now<R: Record>(
        &self,
        result: Result<Response<B>, E>,
    ) -> Result<(Outcome, Result<Response<GrpcBody<B, R>>, E>), Result<Response<B>, E>> {
        match result {
            Ok(res) => match self.head_outcome(&res) {
                Some(outcome) => {
                    let classifier = *self;
                    Ok((
                        outcome,
                        Ok(res.map(|inner| GrpcBody {
                            inner,
                            recorder: None,
                            classifier,
                        })),
                    ))
                }
                None => Err(Ok(res)),
            },
            Err(e) => Ok((Outcome::Failure(failure_kind_of(&e)), Err(e))),
        }
    }
}

/// Builds a [`GrpcClassifier`].
#[derive(Debug, Clone)]
pub struct GrpcClassifierBuilder {
    failures: Option<u32>,
    transient: Option<u32>,
}

impl GrpcClassifierBuilder {
    /// Replaces the codes that count as failures.
    pub fn failure_codes(mut self, codes: impl IntoIterator<Item = GrpcCode>) -> Self {
        self.failures = Some(codes.into_iter().fold(0, |m, c| m | c.bit()));
        self
    }

    /// Replaces which failure codes are transient (worth retrying).
    pub fn transient_codes(mut self, codes: impl IntoIterator<Item = GrpcCode>) -> Self {
        self.transient = Some(codes.into_iter().fold(0, |m, c| m | c.bit()));
        self
    }

    /// Validates (`OK` can't be a failure; transient codes must be failures) and builds.
    pub fn build(self) -> Result<GrpcClassifier, ConfigError> {
        let failures = self.failures.unwrap_or(DEFAULT_FAILURES);
        let transient = self.transient.unwrap_or(DEFAULT_TRANSIENT & failures);
        if failures & GrpcCode::Ok.bit() != 0 {
            return Err(ConfigError::new(
                "grpc classifier",
                "failure_codes",
                "must not contain OK",
            ));
        }
        if transient & !failures != 0 {
            return Err(ConfigError::new(
                "grpc classifier",
                "transient_codes",
                "must be a subset of failure_codes",
            ));
        }
        Ok(GrpcClassifier {
            failures,
            transient,
        })
    }
}

pin_project! {
    /// A response body that records the call's outcome when the stream ends: from the
    /// `grpc-status` trailer, or as a failure if the body errors or ends without one.
    ///
    /// Dropping it before the end drops the recorder unrecorded (a cancelled call).
    pub struct GrpcBody<B, R> {
        #[pin]
        inner: B,
        recorder: Option<R>,
        classifier: GrpcClassifier,
    }
}

impl<B, R> GrpcBody<B, R> {
    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B: std::fmt::Debug, R> std::fmt::Debug for GrpcBody<B, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcBody")
            .field("inner", &self.inner)
            .field("pending", &self.recorder.is_some())
            .finish()
    }
}

impl<B, R> Body for GrpcBody<B, R>
where
    B: Body,
    R: Record,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if this.recorder.is_some() {
            let outcome = match &frame {
                Some(Ok(f)) => f
                    .trailers_ref()
                    .map(|t| this.classifier.trailers_outcome(t)),
                Some(Err(_)) => Some(Outcome::TRANSIENT),
                None => Some(this.classifier.outcome_of_code(GrpcCode::Unknown)),
            };
            if let Some(outcome) = outcome
                && let Some(r) = this.recorder.take()
            {
                r.record(outcome);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use std::sync::{Arc, Mutex};

    type Log = Arc<Mutex<Vec<Outcome>>>;

    fn recorder(log: &Log) -> impl Record {
        let log = log.clone();
        move |o| log.lock().unwrap().push(o)
    }

    #[test]
    fn parses_status_headers() {
        assert_eq!(GrpcCode::from_header(b"0"), GrpcCode::Ok);
        assert_eq!(GrpcCode::from_header(b"14"), GrpcCode::Unavailable);
        assert_eq!(GrpcCode::from_header(b"99"), GrpcCode::Unknown);
        assert_eq!(GrpcCode::from_header(b""), GrpcCode::Unknown);
        assert_eq!(GrpcCode::from_header(b"-1"), GrpcCode::Unknown);
        assert_eq!(GrpcCode::from_header(b"1a"), GrpcCode::Unknown);
        assert_eq!(GrpcCode::from_header(b"00000000014"), GrpcCode::Unknown);
    }

    #[tokio::test]
    async fn trailers_only_response_is_classified_from_headers() {
        let log = Log::default();
        let res = Response::builder()
            .header("grpc-status", "14")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let c = GrpcClassifier::new();
        assert_eq!(
            Classify::<_, ()>::outcome_of(&c, Ok(&res)),
            Some(Outcome::TRANSIENT)
        );
        let res = Classify::<_, ()>::classify(&c, Ok(res), recorder(&log)).unwrap();
        assert_eq!(
            *log.lock().unwrap(),
            vec![Outcome::TRANSIENT],
            "recorded before the body is read"
        );
        res.into_body().collect().await.unwrap();
        assert_eq!(log.lock().unwrap().len(), 1, "recorded exactly once");
    }

    /// A body that yields the given frames, one per poll.
    struct Frames(std::collections::VecDeque<Frame<Bytes>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    fn streaming(frames: Vec<Frame<Bytes>>) -> Response<Frames> {
        Response::new(Frames(frames.into()))
    }

    #[tokio::test]
    async fn status_in_trailers_is_recorded_at_end_of_stream() {
        for (code, expected) in [
            ("0", Outcome::Success),
            ("14", Outcome::TRANSIENT),
            ("13", Outcome::FATAL),
            ("5", Outcome::Ignored),
        ] {
            let log = Log::default();
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", code.parse().unwrap());
            let res = streaming(vec![
                Frame::data(Bytes::from_static(b"msg")),
                Frame::trailers(trailers),
            ]);
            let res = Classify::<_, ()>::classify(&GrpcClassifier::new(), Ok(res), recorder(&log))
                .unwrap();
            assert!(
                log.lock().unwrap().is_empty(),
                "nothing known before the body ends"
            );
            res.into_body().collect().await.unwrap();
            assert_eq!(*log.lock().unwrap(), vec![expected], "grpc-status {code}");
        }
    }

    #[tokio::test]
    async fn stream_ending_without_status_is_a_failure_and_drop_records_nothing() {
        let log = Log::default();
        let res = streaming(vec![Frame::data(Bytes::from_static(b"msg"))]);
        let res =
            Classify::<_, ()>::classify(&GrpcClassifier::new(), Ok(res), recorder(&log)).unwrap();
        res.into_body().collect().await.unwrap();
        assert_eq!(*log.lock().unwrap(), vec![Outcome::FATAL]);

        let log = Log::default();
        let res = streaming(vec![Frame::data(Bytes::from_static(b"msg"))]);
        let res =
            Classify::<_, ()>::classify(&GrpcClassifier::new(), Ok(res), recorder(&log)).unwrap();
        drop(res);
        assert!(
            log.lock().unwrap().is_empty(),
            "a dropped body is a cancellation, not an outcome"
        );
    }

    #[test]
    fn non_200_http_status_maps_to_grpc_code() {
        let c = GrpcClassifier::new();
        let res = Response::builder()
            .status(503)
            .body(Empty::<Bytes>::new())
            .unwrap();
        assert_eq!(
            Classify::<_, ()>::outcome_of(&c, Ok(&res)),
            Some(Outcome::TRANSIENT)
        );
        let res = Response::builder()
            .status(404)
            .body(Empty::<Bytes>::new())
            .unwrap();
        assert_eq!(
            Classify::<_, ()>::outcome_of(&c, Ok(&res)),
            Some(Outcome::Ignored)
        );
    }

    #[test]
    fn builder_validates() {
        let err = GrpcClassifier::builder()
            .failure_codes([GrpcCode::Ok])
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "failure_codes");
        let err = GrpcClassifier::builder()
            .failure_codes([GrpcCode::Internal])
            .transient_codes([GrpcCode::Unavailable])
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "transient_codes");
        let c = GrpcClassifier::builder()
            .failure_codes([GrpcCode::NotFound])
            .build()
            .unwrap();
        assert_eq!(c.outcome_of_code(GrpcCode::NotFound), Outcome::FATAL);
        assert_eq!(c.outcome_of_code(GrpcCode::Unavailable), Outcome::Ignored);
    }
}
