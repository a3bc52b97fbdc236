//! What the layer did with a request ([`IdempotencyOutcome`], in the response's extensions) and the
//! problem+json answers it gives ([`IdempotencyProblem`]).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use rampart_core::body::ReplayBody;

use crate::key::KeyError;

/// Why the layer answered a request itself, with an RFC 9457 `application/problem+json` body
/// (`type`, `title`, `status`, `detail`).
///
/// The `type` is the layer's [problem type base](crate::IdempotencyBuilder::problem_type_base) followed
/// by [`slug`](Self::slug).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdempotencyProblem {
    /// `400`: the route requires a key and the request has none.
    MissingKey,
    /// `400`: the key header is malformed.
    InvalidKey(KeyError),
    /// `400`: a caller function is configured and found no identity in the request.
    UnidentifiedCaller,
    /// `400`: the request body failed while it was being read.
    BodyUnreadable,
    /// `413`: the request body is larger than the layer reads to fingerprint it.
    BodyTooLarge,
    /// `409` with `Retry-After`: a request with the same key is still being processed.
    InFlight,
    /// `422`: the key was used before with a different request (method, path, body or
    /// fingerprinted headers).
    Mismatch,
    /// `503` with `Retry-After`: the store failed or is full, and the layer fails closed.
    Unavailable,
}

impl IdempotencyProblem {
    /// The response status.
    pub const fn status(self) -> StatusCode {
        match self {
            IdempotencyProblem::MissingKey
            | IdempotencyProblem::InvalidKey(_)
            | IdempotencyProblem::UnidentifiedCaller
            | IdempotencyProblem::BodyUnreadable => StatusCode::BAD_REQUEST,
            IdempotencyProblem::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            IdempotencyProblem::InFlight => StatusCode::CONFLICT,
            IdempotencyProblem::Mismatch => StatusCode::UNPROCESSABLE_ENTITY,
            IdempotencyProblem::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The last part of the problem `type`: `idempotency-key-missing`,
    /// `idempotency-key-invalid`, `caller-unidentified`, `request-body-unreadable`,
    /// `request-body-too-large`, `idempotency-key-in-use`, `idempotency-key-reused`,
    /// `idempotency-unavailable`.
    pub const fn slug(self) -> &'static str {
        match self {
            IdempotencyProblem::MissingKey => "idempotency-key-missing",
            IdempotencyProblem::InvalidKey(_) => "idempotency-key-invalid",
            IdempotencyProblem::UnidentifiedCaller => "caller-unidentified",
            IdempotencyProblem::BodyUnreadable => "request-body-unreadable",
            IdempotencyProblem::BodyTooLarge => "request-body-too-large",
            IdempotencyProblem::InFlight => "idempotency-key-in-use",
            IdempotencyProblem::Mismatch => "idempotency-key-reused",
            IdempotencyProblem::Unavailable => "idempotency-unavailable",
        }
    }

    /// The `title`: a short summary, the same for every occurrence.
    pub const fn title(self) -> &'static str {
        match self {
            IdempotencyProblem::MissingKey => "Idempotency key is missing",
            IdempotencyProblem::InvalidKey(_) => "Idempotency key is invalid",
            IdempotencyProblem::UnidentifiedCaller => "Caller could not be identified",
            IdempotencyProblem::BodyUnreadable => "Request body could not be read",
            IdempotencyProblem::BodyTooLarge => "Request body is too large",
            IdempotencyProblem::InFlight => "A request is outstanding for this idempotency key",
            IdempotencyProblem::Mismatch => "Idempotency key is already used",
            IdempotencyProblem::Unavailable => "Idempotency is unavailable",
        }
    }

    /// The metrics label of this answer (the `outcome` of
    /// `rampart_idempotency_requests_total`): `missing_key`, `bad_key`, `no_caller`,
    /// `body_unreadable`, `body_too_large`, `conflict`, `mismatch`, `unavailable`.
    pub const fn as_str(self) -> &'static str {
        match self {
            IdempotencyProblem::MissingKey => "missing_key",
            IdempotencyProblem::InvalidKey(_) => "bad_key",
            IdempotencyProblem::UnidentifiedCaller => "no_caller",
            IdempotencyProblem::BodyUnreadable => "body_unreadable",
            IdempotencyProblem::BodyTooLarge => "body_too_large",
            IdempotencyProblem::InFlight => "conflict",
            IdempotencyProblem::Mismatch => "mismatch",
            IdempotencyProblem::Unavailable => "unavailable",
        }
    }

    /// The `detail`: what happened to this request, and what to do.
    fn detail(self, header: &str, max_body: usize) -> String {
        match self {
            IdempotencyProblem::MissingKey => format!(
                "This operation is idempotent and requires an {header} header; send a unique \
                 key per logical request and reuse it on every retry."
            ),
            IdempotencyProblem::InvalidKey(e) => format!(
                "The {header} header is not valid: {e}. A key is 1 to 255 visible ASCII \
                 characters, bare or as a quoted string."
            ),
            IdempotencyProblem::UnidentifiedCaller => {
                "The request does not identify its caller, which \
                 this operation needs to scope idempotency keys."
                    .to_owned()
            }
            IdempotencyProblem::BodyUnreadable => {
                "The request body failed while it was being read.".to_owned()
            }
            IdempotencyProblem::BodyTooLarge => format!(
                "Requests with an {header} header may have a body of at most {max_body} bytes."
            ),
            IdempotencyProblem::InFlight => format!(
                "A request with the same {header} is being processed. Retry after the \
                 Retry-After delay to get its response."
            ),
            IdempotencyProblem::Mismatch => format!(
                "This {header} was already used for a different request. A key must not be \
                 reused across different payloads of an operation: use a new key."
            ),
            IdempotencyProblem::Unavailable => {
                "The idempotency store is unavailable, so the request \
                 was not processed. Retry with the same key after the Retry-After delay."
                    .to_owned()
            }
        }
    }

    /// The problem+json response.
    pub(crate) fn response<B>(
        self,
        type_base: &str,
        header: &str,
        max_body: usize,
        retry_after: Option<u64>,
    ) -> Response<ReplayBody<B>> {
        let body = rampart_core::problem::Problem::new(
            format!("{type_base}{}", self.slug()),
            self.title(),
            self.status().as_u16(),
        )
        .detail(self.detail(header, max_body))
        .to_json();
        let mut res = Response::new(ReplayBody::Buffered {
            data: Some(Bytes::from(body)),
            trailers: None,
        });
        *res.status_mut() = self.status();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(rampart_core::problem::CONTENT_TYPE),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(secs) = retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res.extensions_mut()
            .insert(IdempotencyOutcome::Rejected(self));
        res
    }
}

/// What the layer did with a keyed request, in the response's extensions, for the layers
/// outside it (access logs, say). Requests the layer passes through untouched (other methods,
/// no key on an optional route) carry none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdempotencyOutcome {
    /// The request ran; `stored` says whether its response was stored for replays.
    Executed {
        /// `false` when a retry will run the request again (a 5xx, a response over the size
        /// limit, a store failure); the response then has `Idempotency-Stored: false`.
        stored: bool,
    },
    /// The stored response of an earlier request was replayed.
    Replayed,
    /// The layer answered with a problem.
    Rejected(IdempotencyProblem),
    /// The store failed and the layer fails open: the request ran without deduplication.
    Unprotected,
}

impl IdempotencyOutcome {
    /// The `outcome` label of `rampart_idempotency_requests_total`: `executed`, `replayed`,
    /// `unprotected`, or the problem's (see [`IdempotencyProblem::as_str`]).
    pub const fn as_str(self) -> &'static str {
        match self {
            IdempotencyOutcome::Executed { .. } => "executed",
            IdempotencyOutcome::Replayed => "replayed",
            IdempotencyOutcome::Rejected(p) => p.as_str(),
            IdempotencyOutcome::Unprotected => "unprotected",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_rfc_9457_json() {
        let res = IdempotencyProblem::InFlight.response::<()>(
            "https://example.com/p/",
            "Idempotency-Key",
            10,
            Some(2),
        );
        assert_eq!(res.status(), 409);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        assert_eq!(res.headers()["retry-after"], "2");
        assert_eq!(
            res.extensions().get(),
            Some(&IdempotencyOutcome::Rejected(IdempotencyProblem::InFlight))
        );
        let ReplayBody::Buffered {
            data: Some(body), ..
        } = res.into_body()
        else {
            panic!("a buffered body")
        };
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["type"], "https://example.com/p/idempotency-key-in-use");
        assert_eq!(json["status"], 409);
        assert_eq!(json["title"], IdempotencyProblem::InFlight.title());
        assert!(json["detail"].as_str().unwrap().contains("Idempotency-Key"));
    }

    #[test]
    fn statuses() {
        assert_eq!(IdempotencyProblem::MissingKey.status(), 400);
        assert_eq!(
            IdempotencyProblem::InvalidKey(KeyError::Empty).status(),
            400
        );
        assert_eq!(IdempotencyProblem::BodyTooLarge.status(), 413);
        assert_eq!(IdempotencyProblem::Mismatch.status(), 422);
        assert_eq!(IdempotencyProblem::Unavailable.status(), 503);
        assert_eq!(
            IdempotencyOutcome::Rejected(IdempotencyProblem::Mismatch).as_str(),
            "mismatch"
        );
    }
}
