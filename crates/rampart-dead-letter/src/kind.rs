//! Which failures are parked: how a final response or error becomes a [`FailureKind`], and
//! the set of kinds a layer parks ([`ParkOn`]).

use std::error::Error;

use http::StatusCode;
use rampart_core::{
    error::find,
    rejection::{Rejected, RejectionKind},
};

use crate::record::{Failure, FailureKind};

/// A final response's kind: `5xx`, `408` and `429` are transient failures, other `4xx` are
/// fatal, anything else is not a failure.
///
/// A final `500` is parked (the server may recover); a `400` is not by default (the same
/// request will be refused again).
pub fn status_kind(status: StatusCode) -> Option<FailureKind> {
    match status.as_u16() {
        408 | 429 | 500..=599 => Some(FailureKind::Transient),
        400..=499 => Some(FailureKind::Fatal),
        _ => None,
    }
}

/// A final gRPC response's kind, from its head: a `grpc-status` header (a trailers-only
/// response, which is how a gRPC server answers a call that fails before any message) other
/// than `0` is a failure: `UNAVAILABLE`, `RESOURCE_EXHAUSTED`, `ABORTED`, `UNKNOWN`,
/// `INTERNAL` and `DATA_LOSS` are transient, `DEADLINE_EXCEEDED` is a timeout, the rest
/// (`INVALID_ARGUMENT`, `NOT_FOUND`, `PERMISSION_DENIED`, …) fatal. Without one, the HTTP status
/// decides ([`status_kind`]).
///
/// This judges the head. A failure whose `grpc-status` arrives only in the trailers, after
/// messages, is seen by the response body instead ([`DeadLetterBody`](crate::DeadLetterBody)),
/// which parks the request in the background once the trailers come.
pub fn grpc_response_kind(status: StatusCode, headers: &http::HeaderMap) -> Option<FailureKind> {
    let Some(code) = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u16>().ok())
    else {
        return status_kind(status);
    };
    match code {
        0 => None,
        4 => Some(FailureKind::Timeout),
        2 | 8 | 10 | 13 | 14 | 15 => Some(FailureKind::Transient),
        _ => Some(FailureKind::Fatal),
    }
}

/// `true` for a gRPC response (`content-type: application/grpc…`).
pub(crate) fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// The failure a gRPC answer's trailers report, if any (no `grpc-status` at all is a failure
/// too: gRPC clients read it as `UNKNOWN`).
pub(crate) fn grpc_trailers_failure(
    status: StatusCode,
    trailers: &http::HeaderMap,
) -> Option<Failure> {
    let code = trailers.get("grpc-status").and_then(|v| v.to_str().ok());
    let kind = match code {
        Some(_) => grpc_response_kind(status, trailers)?,
        None => FailureKind::Transient,
    };
    Some(Failure {
        kind,
        status: Some(status.as_u16()),
        chain: vec![format!(
            "grpc-status {} in the trailers",
            code.unwrap_or("missing")
        )],
    })
}

/// Judges a final response: by its status alone, or by its head.
#[derive(Clone, Copy)]
pub(crate) enum Judge {
    Status(fn(StatusCode) -> Option<FailureKind>),
    Head(fn(StatusCode, &http::HeaderMap) -> Option<FailureKind>),
}

impl Judge {
    pub(crate) fn kind(self, status: StatusCode, headers: &http::HeaderMap) -> Option<FailureKind> {
        match self {
            Judge::Status(f) => f(status),
            Judge::Head(f) => f(status, headers),
        }
    }
}

/// A final error's kind, from the error and its sources:
///
/// | found in the chain | kind |
/// |---|---|
/// | a rampart rejection ([`Rejected::find`]): [`CircuitOpen`](rampart_core::rejection::CircuitOpen), [`BulkheadFull`](rampart_core::rejection::BulkheadFull), [`Elapsed`](rampart_core::error::Elapsed) (every rampart timeout, e.g. a retry whose last attempt timed out) | [`CircuitOpen`](FailureKind::CircuitOpen), [`BulkheadFull`](FailureKind::BulkheadFull), [`Timeout`](FailureKind::Timeout) |
/// | `tower::timeout::error::Elapsed`, `tokio::time::error::Elapsed`, an `io::Error` of kind `TimedOut` | [`Timeout`](FailureKind::Timeout) |
/// | anything else (a transport error) | [`Transient`](FailureKind::Transient) |
pub fn error_kind(err: &(dyn Error + 'static)) -> FailureKind {
    match Rejected::find(err).map(|r| r.kind()) {
        Some(RejectionKind::CircuitOpen) => return FailureKind::CircuitOpen,
        Some(RejectionKind::BulkheadFull) => return FailureKind::BulkheadFull,
        Some(RejectionKind::Timeout) => return FailureKind::Timeout,
        // A rejection kind this crate does not know yet: a refusal worth another try.
        Some(_) => return FailureKind::Transient,
        None => {}
    }
    if find::<tower::timeout::error::Elapsed>(err).is_some()
        || find::<tokio::time::error::Elapsed>(err).is_some()
        || find::<std::io::Error>(err).is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
    {
        return FailureKind::Timeout;
    }
    FailureKind::Transient
}

/// The set of [`FailureKind`]s a layer parks.
///
/// By default every kind but [`Fatal`](FailureKind::Fatal): final transient failures, an open
/// circuit, a full bulkhead and timeouts are parked; a `4xx` that the same request will meet
/// again is returned as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParkOn(u8);

impl Default for ParkOn {
    fn default() -> Self {
        Self::NONE
            .with(FailureKind::Transient)
            .with(FailureKind::CircuitOpen)
            .with(FailureKind::BulkheadFull)
            .with(FailureKind::Timeout)
    }
}

impl ParkOn {
    /// No kind.
    pub const NONE: ParkOn = ParkOn(0);

    /// Every kind, fatal failures included.
    pub const ALL: ParkOn = ParkOn(0b1_1111);

    /// The set with `kind` too.
    pub const fn with(self, kind: FailureKind) -> Self {
        Self(self.0 | kind.bit())
    }

    /// The set without `kind`.
    pub const fn without(self, kind: FailureKind) -> Self {
        Self(self.0 & !kind.bit())
    }

    /// `true` if `kind` is parked.
    pub const fn contains(self, kind: FailureKind) -> bool {
        self.0 & kind.bit() != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        assert_eq!(status_kind(StatusCode::OK), None);
        assert_eq!(status_kind(StatusCode::NOT_MODIFIED), None);
        assert_eq!(
            status_kind(StatusCode::INTERNAL_SERVER_ERROR),
            Some(FailureKind::Transient)
        );
        assert_eq!(
            status_kind(StatusCode::TOO_MANY_REQUESTS),
            Some(FailureKind::Transient)
        );
        assert_eq!(status_kind(StatusCode::NOT_FOUND), Some(FailureKind::Fatal));
    }

    #[test]
    fn grpc_statuses_in_the_head_map_to_kinds() {
        let head = |code: &str| {
            let mut h = http::HeaderMap::new();
            h.insert("grpc-status", code.parse().unwrap());
            h
        };
        assert_eq!(grpc_response_kind(StatusCode::OK, &head("0")), None);
        assert_eq!(
            grpc_response_kind(StatusCode::OK, &head("14")),
            Some(FailureKind::Transient)
        );
        assert_eq!(
            grpc_response_kind(StatusCode::OK, &head("4")),
            Some(FailureKind::Timeout)
        );
        assert_eq!(
            grpc_response_kind(StatusCode::OK, &head("3")),
            Some(FailureKind::Fatal)
        );
        // No grpc-status: the HTTP status decides.
        assert_eq!(
            grpc_response_kind(StatusCode::OK, &http::HeaderMap::new()),
            None
        );
        assert_eq!(
            grpc_response_kind(StatusCode::BAD_GATEWAY, &http::HeaderMap::new()),
            Some(FailureKind::Transient)
        );
    }

    #[test]
    fn default_set_parks_all_but_fatal() {
        let on = ParkOn::default();
        assert!(!on.contains(FailureKind::Fatal));
        for k in FailureKind::ALL {
            assert!(ParkOn::ALL.contains(k));
            assert_eq!(on.contains(k), k != FailureKind::Fatal);
            assert!(!ParkOn::ALL.without(k).contains(k));
        }
    }

    #[test]
    fn errors_are_recognised_through_wrappers() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        assert_eq!(error_kind(&io), FailureKind::Timeout);
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(error_kind(&reset), FailureKind::Transient);
        {
            use rampart_core::{error::PolicyError, rejection::*};
            let open = CircuitOpen::new(RejectedBy::Open, None);
            let err: rampart_core::error::BoxError =
                Box::new(PolicyError::<_, std::io::Error>::Rejected(open));
            assert_eq!(error_kind(&*err), FailureKind::CircuitOpen);
            let full = BulkheadFull::new(FullReason::QueueFull, "bulk".into(), Default::default());
            assert_eq!(error_kind(&full), FailureKind::BulkheadFull);
            let elapsed = rampart_core::error::Elapsed::new();
            assert_eq!(error_kind(&elapsed), FailureKind::Timeout);
        }
    }
}
