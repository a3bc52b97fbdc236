//! Which failures are parked: how a final response ([`DeadLetterClassifier`], or any
//! [`ClassifyResponse`]) or error ([`error_kind`]) becomes a [`ParkReason`], and the set of
//! kinds a layer parks ([`ParkOn`]).

use std::error::Error;

use http::StatusCode;
use rampart_core::{
    classify::{
        ClassifyResponse, FailureKind as CoreKind, GrpcClassifier, GrpcCode, HttpClassifier,
        Outcome, is_grpc,
    },
    error::find,
    rejection::{Rejected, RejectionKind},
};

use crate::record::{Failure, ParkReason};

/// The default classifier of the dead-letter layer and of [`Redrive`](crate::Redrive):
/// HTTP rules for an HTTP answer, gRPC rules for a gRPC one (`content-type:
/// application/grpc…`), both tuned for *final* failures rather than for retries:
///
/// | answer | outcome | parked by default |
/// |---|---|---|
/// | `5xx`, `408`, `429` | transient failure | yes (the server may recover: redrive later) |
/// | other `4xx` | fatal failure | no (the same request will be refused again) |
/// | gRPC `UNKNOWN`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `ABORTED`, `INTERNAL`, `UNAVAILABLE`, `DATA_LOSS` | transient failure | yes |
/// | any other gRPC code but `OK` (`INVALID_ARGUMENT`, `NOT_FOUND`, `PERMISSION_DENIED`, …) | fatal failure | no |
/// | a gRPC answer with no `grpc-status` in its head | judged by its trailers, when its body ends (no `grpc-status` there either: `UNKNOWN`) | as above |
///
/// Give the layer another [`ClassifyResponse`] with
/// [`classifier`](crate::DeadLetterBuilder::classifier): rampart-core's [`HttpClassifier`] or
/// [`GrpcClassifier`] (with their retry-oriented defaults, a `500` is *fatal*, so not parked
/// unless [`ParkOn`] says so), one built from them, or your own.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterClassifier {
    http: HttpClassifier,
    grpc: GrpcClassifier,
}

impl Default for DeadLetterClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl DeadLetterClassifier {
    /// The defaults (see the type's docs).
    pub fn new() -> Self {
        let http = HttpClassifier::builder()
            .failure_statuses([400..=599])
            .transient_statuses([408..=408, 429..=429, 500..=599])
            .ignored_statuses([])
            .build();
        let grpc = GrpcClassifier::builder()
            .failure_codes(GrpcCode::all().into_iter().filter(|c| *c != GrpcCode::Ok))
            .transient_codes([
                GrpcCode::Unknown,
                GrpcCode::DeadlineExceeded,
                GrpcCode::ResourceExhausted,
                GrpcCode::Aborted,
                GrpcCode::Internal,
                GrpcCode::Unavailable,
                GrpcCode::DataLoss,
            ])
            .build();
        match (http, grpc) {
            (Ok(http), Ok(grpc)) => Self { http, grpc },
            (Err(e), _) | (_, Err(e)) => unreachable!("the defaults are valid: {e}"),
        }
    }

    /// Judges HTTP answers with `http` instead.
    pub fn http(mut self, http: HttpClassifier) -> Self {
        self.http = http;
        self
    }

    /// Judges gRPC answers with `grpc` instead.
    pub fn grpc(mut self, grpc: GrpcClassifier) -> Self {
        self.grpc = grpc;
        self
    }
}

impl ClassifyResponse for DeadLetterClassifier {
    fn outcome_of_head(&self, status: StatusCode, headers: &http::HeaderMap) -> Option<Outcome> {
        if is_grpc(headers) {
            self.grpc.outcome_of_head(status, headers)
        } else {
            self.http.outcome_of_head(status, headers)
        }
    }

    fn outcome_of_trailers(
        &self,
        status: StatusCode,
        trailers: Option<&http::HeaderMap>,
    ) -> Outcome {
        // Only a gRPC answer defers to its trailers.
        self.grpc.outcome_of_trailers(status, trailers)
    }
}

/// The kind of a failure [`Outcome`]: transient or fatal; `None` for a success or an ignored
/// answer, which is not parked.
pub(crate) fn outcome_kind(outcome: Outcome) -> Option<ParkReason> {
    match outcome {
        Outcome::Failure(CoreKind::Transient) => Some(ParkReason::Transient),
        Outcome::Failure(CoreKind::Fatal) => Some(ParkReason::Fatal),
        Outcome::Success | Outcome::Ignored => None,
    }
}

/// The failure a deferred answer's trailers report, if any, judged by `classifier`.
pub(crate) fn trailers_failure(
    classifier: &dyn ClassifyResponse,
    status: StatusCode,
    trailers: Option<&http::HeaderMap>,
) -> Option<Failure> {
    let kind = outcome_kind(classifier.outcome_of_trailers(status, trailers))?;
    // The record quotes what the trailers said; the classifier judged it.
    let code = trailers
        .and_then(|t| t.get("grpc-status"))
        .and_then(|v| v.to_str().ok());
    Some(Failure {
        kind,
        status: Some(status.as_u16()),
        chain: vec![match (trailers, code) {
            (_, Some(code)) => format!("grpc-status {code} in the trailers"),
            (Some(_), None) => "grpc-status missing in the trailers".to_owned(),
            (None, None) => "the answer ended without trailers".to_owned(),
        }],
    })
}

/// A final error's kind, from the error and its sources:
///
/// | found in the chain | kind |
/// |---|---|
/// | a rampart rejection ([`Rejected::find`]): [`CircuitOpen`](rampart_core::rejection::CircuitOpen), [`BulkheadFull`](rampart_core::rejection::BulkheadFull), [`Elapsed`](rampart_core::error::Elapsed) (every rampart timeout, e.g. a retry whose last attempt timed out) | [`CircuitOpen`](ParkReason::CircuitOpen), [`BulkheadFull`](ParkReason::BulkheadFull), [`Timeout`](ParkReason::Timeout) |
/// | `tower::timeout::error::Elapsed`, `tokio::time::error::Elapsed`, an `io::Error` of kind `TimedOut` | [`Timeout`](ParkReason::Timeout) |
/// | anything else (a transport error) | [`Transient`](ParkReason::Transient) |
pub fn error_kind(err: &(dyn Error + 'static)) -> ParkReason {
    match Rejected::find(err).map(|r| r.kind()) {
        Some(RejectionKind::CircuitOpen) => return ParkReason::CircuitOpen,
        Some(RejectionKind::BulkheadFull) => return ParkReason::BulkheadFull,
        Some(RejectionKind::Timeout) => return ParkReason::Timeout,
        // A rejection kind this crate does not know yet: a refusal worth another try.
        Some(_) => return ParkReason::Transient,
        None => {}
    }
    if find::<tower::timeout::error::Elapsed>(err).is_some()
        || find::<tokio::time::error::Elapsed>(err).is_some()
        || find::<std::io::Error>(err).is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
    {
        return ParkReason::Timeout;
    }
    ParkReason::Transient
}

/// The set of [`ParkReason`]s a layer parks.
///
/// By default every kind but [`Fatal`](ParkReason::Fatal): final transient failures, an open
/// circuit, a full bulkhead and timeouts are parked; a `4xx` that the same request will meet
/// again is returned as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParkOn(u8);

impl Default for ParkOn {
    fn default() -> Self {
        Self::NONE
            .with(ParkReason::Transient)
            .with(ParkReason::CircuitOpen)
            .with(ParkReason::BulkheadFull)
            .with(ParkReason::Timeout)
    }
}

impl ParkOn {
    /// No kind.
    pub const NONE: ParkOn = ParkOn(0);

    /// Every kind, fatal failures included.
    pub const ALL: ParkOn = ParkOn(0b1_1111);

    /// The set with `kind` too.
    pub const fn with(self, kind: ParkReason) -> Self {
        Self(self.0 | kind.bit())
    }

    /// The set without `kind`.
    pub const fn without(self, kind: ParkReason) -> Self {
        Self(self.0 & !kind.bit())
    }

    /// `true` if `kind` is parked.
    pub const fn contains(self, kind: ParkReason) -> bool {
        self.0 & kind.bit() != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: StatusCode, grpc: Option<&str>) -> Option<ParkReason> {
        let mut h = http::HeaderMap::new();
        if let Some(code) = grpc {
            h.insert("content-type", "application/grpc".parse().unwrap());
            if !code.is_empty() {
                h.insert("grpc-status", code.parse().unwrap());
            }
        }
        DeadLetterClassifier::new()
            .outcome_of_head(status, &h)
            .and_then(outcome_kind)
    }

    #[test]
    fn http_statuses_map_to_kinds() {
        assert_eq!(head(StatusCode::OK, None), None);
        assert_eq!(head(StatusCode::NOT_MODIFIED, None), None);
        assert_eq!(
            head(StatusCode::INTERNAL_SERVER_ERROR, None),
            Some(ParkReason::Transient)
        );
        assert_eq!(
            head(StatusCode::TOO_MANY_REQUESTS, None),
            Some(ParkReason::Transient)
        );
        assert_eq!(head(StatusCode::NOT_FOUND, None), Some(ParkReason::Fatal));
    }

    #[test]
    fn grpc_statuses_in_the_head_map_to_kinds_and_a_streaming_answer_defers() {
        assert_eq!(head(StatusCode::OK, Some("0")), None);
        assert_eq!(
            head(StatusCode::OK, Some("14")),
            Some(ParkReason::Transient)
        );
        assert_eq!(
            head(StatusCode::OK, Some("13")),
            Some(ParkReason::Transient)
        );
        assert_eq!(head(StatusCode::OK, Some("4")), Some(ParkReason::Transient));
        assert_eq!(head(StatusCode::OK, Some("3")), Some(ParkReason::Fatal));
        let mut grpc = http::HeaderMap::new();
        grpc.insert("content-type", "application/grpc".parse().unwrap());
        assert_eq!(
            DeadLetterClassifier::new().outcome_of_head(StatusCode::OK, &grpc),
            None,
            "no grpc-status in the head: the trailers will tell"
        );
        let c = DeadLetterClassifier::new();
        let failure = trailers_failure(&c, StatusCode::OK, None).expect("no trailers: UNKNOWN");
        assert_eq!(failure.kind, ParkReason::Transient);
        let mut ok = http::HeaderMap::new();
        ok.insert("grpc-status", "0".parse().unwrap());
        assert!(trailers_failure(&c, StatusCode::OK, Some(&ok)).is_none());
    }

    #[test]
    fn default_set_parks_all_but_fatal() {
        let on = ParkOn::default();
        assert!(!on.contains(ParkReason::Fatal));
        for k in ParkReason::ALL {
            assert!(ParkOn::ALL.contains(k));
            assert_eq!(on.contains(k), k != ParkReason::Fatal);
            assert!(!ParkOn::ALL.without(k).contains(k));
        }
    }

    #[test]
    fn errors_are_recognised_through_wrappers() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        assert_eq!(error_kind(&io), ParkReason::Timeout);
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(error_kind(&reset), ParkReason::Transient);
        {
            use rampart_core::{error::PolicyError, rejection::*};
            let open = CircuitOpen::new(RejectedBy::Open, None);
            let err: rampart_core::error::BoxError =
                Box::new(PolicyError::<_, std::io::Error>::Rejected(open));
            assert_eq!(error_kind(&*err), ParkReason::CircuitOpen);
            let full = BulkheadFull::new(FullReason::QueueFull, "bulk".into(), Default::default());
            assert_eq!(error_kind(&full), ParkReason::BulkheadFull);
            let elapsed = rampart_core::error::Elapsed::new();
            assert_eq!(error_kind(&elapsed), ParkReason::Timeout);
        }
    }
}
