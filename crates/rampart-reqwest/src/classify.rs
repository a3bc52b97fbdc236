//! [`ReqwestClassifier`]: rampart-core's outcome classification for reqwest's results.

use rampart_core::{
    classify::{
        Classify, FailureKind, HttpClassifier, Outcome, Record, failure_kind_of_error,
        outcome_of_rejection, retry_outcome_of_rejection,
    },
    rejection::RejectionKind,
};
use reqwest::Response;
use reqwest_middleware::Error;

use crate::error::{find, find_map, find_rejection};

/// Judges a reqwest call's result: a response by its status, with a rampart-core
/// [`HttpClassifier`], and an error by what it is.
///
/// | result | outcome |
/// |---|---|
/// | a response | the [`HttpClassifier`]'s verdict on its status |
/// | a local rampart rejection from a middleware further in (an open circuit, a full bulkhead: [`Rejected::of`](rampart_core::rejection::Rejected::of)) | [`rejections`](Self::rejections): by default rampart-core's [`outcome_of_rejection`], ignored |
/// | a deadline that passed further in (an [`Elapsed`](rampart_core::error::Elapsed) in the chain) | transient: the host was too slow |
/// | a request that could not be built (`reqwest::Error::is_builder`: an invalid URL, a scheme reqwest does not speak) or a redirect loop (`is_redirect`) | fatal: a programmer error, never retried |
/// | an error in the chain that rampart-core judges fatal ([`failure_kind_of_error`]: an invalid URI, a request the connection refuses) | fatal |
/// | any other error (connect, reset, timeout, …) | transient |
///
/// [`new`](Self::new) is for the circuit breaker (rampart-core's default statuses; a
/// rejection by the bulkhead inside it is the caller's own overload, not the host's failure:
/// the same rule as the tower breaker's
/// [`IgnoreRejections`](rampart_core::classify::IgnoreRejections));
/// [`for_retry`](Self::for_retry) is for the retry (also `409` transient, as rampart-retry's
/// tower layer has it, and a rejection is worth another attempt). Any
/// [`Classify`] implementation over `reqwest::Response` and `reqwest_middleware::Error` works
/// in its place, e.g. one from [`classify_fn`](rampart_core::classify::classify_fn).
///
/// ```
/// use rampart_core::classify::{HttpClassifier, Outcome};
/// use rampart_reqwest::ReqwestClassifier;
///
/// // Count 404 as a failure too (a backend that lost its data).
/// let statuses = HttpClassifier::builder().failure_statuses([404..=404, 500..=599]).build().unwrap();
/// let classifier = ReqwestClassifier::new().statuses(statuses);
/// assert_eq!(classifier.outcome_of_status(http::StatusCode::NOT_FOUND), Outcome::FATAL);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ReqwestClassifier {
    statuses: HttpClassifier,
    rejections: Rejections,
}

/// How a local rampart rejection further in is judged.
#[derive(Debug, Clone, Copy)]
enum Rejections {
    /// Always this outcome.
    Fixed(Outcome),
    /// rampart-core's rule for a retry layer: another attempt, unless it can never pass.
    Retry,
}

impl Default for ReqwestClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ReqwestClassifier {
    /// rampart-core's default [`HttpClassifier`] (408, 429, 502–504 transient; 500, 501,
    /// 505–599 fatal; other 4xx ignored), and rampart-core's rule for rampart rejections
    /// (a full bulkhead or an open circuit further in ignored, a deadline further in
    /// transient): for the circuit breaker.
    pub const fn new() -> Self {
        Self {
            statuses: HttpClassifier::new(),
            rejections: Rejections::Fixed(Outcome::Ignored),
        }
    }

    /// rampart-retry's [`http_retry_classifier`](rampart_retry::protocol::http_retry_classifier)
    /// (the defaults plus `409` transient), and rampart rejections judged by rampart-core's
    /// [`retry_outcome_of_rejection`] (transient, so retried after the wait they name, but a
    /// call that costs more than a whole limit's burst or budget fatal): for the retry.
    pub fn for_retry() -> Self {
        Self {
            statuses: rampart_retry::protocol::http_retry_classifier(),
            rejections: Rejections::Retry,
        }
    }

    /// Judges statuses with `statuses` instead.
    pub const fn statuses(mut self, statuses: HttpClassifier) -> Self {
        self.statuses = statuses;
        self
    }

    /// The outcome of a local rampart rejection (an open circuit, a full bulkhead) from a
    /// middleware further in. A deadline that passed further in is not one: it is always a
    /// transient failure.
    pub const fn rejections(mut self, outcome: Outcome) -> Self {
        self.rejections = Rejections::Fixed(outcome);
        self
    }

    /// The outcome of a response with `status`.
    pub const fn outcome_of_status(&self, status: http::StatusCode) -> Outcome {
        self.statuses.outcome_of_status(status)
    }

    /// The outcome of `result`; see the type's docs.
    pub fn outcome(&self, result: Result<&Response, &Error>) -> Outcome {
        match result {
            Ok(res) => self.statuses.outcome_of_status(res.status()),
            Err(e) => self.outcome_of_error(e),
        }
    }

    fn outcome_of_error(&self, err: &Error) -> Outcome {
        match (find_rejection(err), self.rejections) {
            (Some(r), _) if r.kind() == RejectionKind::Timeout => {
                return outcome_of_rejection(RejectionKind::Timeout);
            }
            (Some(_), Rejections::Fixed(outcome)) => return outcome,
            (Some(r), Rejections::Retry) => return retry_outcome_of_rejection(&r),
            (None, _) => {}
        }
        match find::<reqwest::Error>(err) {
            Some(e) if e.is_builder() || e.is_redirect() => Outcome::FATAL,
            // What rampart-core says of the errors under it (an invalid URI, a refused
            // request deeper in the chain), as the tower classifiers judge errors.
            _ if find_map(err, |e| {
                (failure_kind_of_error(e) == FailureKind::Fatal).then_some(())
            })
            .is_some() =>
            {
                Outcome::FATAL
            }
            _ => Outcome::TRANSIENT,
        }
    }
}

impl Classify<Response, Error> for ReqwestClassifier {
    type Response<R: Record> = Response;

    #[inline]
    fn outcome_of(&self, result: Result<&Response, &Error>) -> Option<Outcome> {
        Some(self.outcome(result))
    }

    fn classify<R: Record>(
        &self,
        result: Result<Response, Error>,
        recorder: R,
    ) -> Result<Response, Error> {
        recorder.record(self.outcome(result.as_ref()));
        result
    }

    #[allow(clippy::type_complexity)]
    fn classify_now<R: Record>(
        &self,
        result: Result<Response, Error>,
    ) -> Result<(Outcome, Result<Response, Error>), Result<Response, Error>> {
        Ok((self.outcome(result.as_ref()), result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::middleware_error;
    use rampart_core::{
        error::Elapsed,
        rejection::{BulkheadFull, CircuitOpen, FullReason, RejectedBy},
    };

    #[test]
    fn rejections_are_ignored_for_the_breaker_and_transient_for_the_retry() {
        let open = middleware_error(CircuitOpen::new(RejectedBy::Open, None));
        assert_eq!(
            ReqwestClassifier::new().outcome(Err(&open)),
            Outcome::Ignored
        );
        assert_eq!(
            ReqwestClassifier::for_retry().outcome(Err(&open)),
            Outcome::TRANSIENT
        );
        let other = Error::middleware(std::io::Error::other("reset"));
        assert_eq!(
            ReqwestClassifier::new().outcome(Err(&other)),
            Outcome::TRANSIENT
        );
    }

    #[test]
    fn the_breaker_ignores_a_full_bulkhead_but_counts_a_deadline_as_the_tower_breaker_does() {
        let full = middleware_error(BulkheadFull::new(
            FullReason::QueueFull,
            "default".into(),
            std::time::Duration::ZERO,
        ));
        let late = middleware_error(Elapsed::new());
        let breaker = ReqwestClassifier::new();
        assert_eq!(breaker.outcome(Err(&full)), Outcome::Ignored);
        assert_eq!(breaker.outcome(Err(&late)), Outcome::TRANSIENT);
        // Told to count local rejections, a deadline stays a failure whatever it is told.
        let ignoring = breaker.rejections(Outcome::Ignored);
        assert_eq!(ignoring.outcome(Err(&late)), Outcome::TRANSIENT);
        let counting = breaker.rejections(Outcome::TRANSIENT);
        assert_eq!(counting.outcome(Err(&full)), Outcome::TRANSIENT);
    }

    #[test]
    fn a_request_that_could_not_be_sent_as_it_is_is_fatal() {
        let c = ReqwestClassifier::for_retry();
        // reqwest refuses to build it.
        let builder = reqwest::Client::new()
            .get("http://exa mple/")
            .build()
            .unwrap_err();
        assert!(builder.is_builder());
        assert_eq!(c.outcome(Err(&Error::Reqwest(builder))), Outcome::FATAL);
        // A middleware further in found the request invalid.
        let invalid = middleware_error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no host",
        ));
        assert_eq!(c.outcome(Err(&invalid)), Outcome::FATAL);
        let uri = Error::middleware("exa mple".parse::<http::Uri>().unwrap_err());
        assert_eq!(c.outcome(Err(&uri)), Outcome::FATAL);
        let refused =
            Error::middleware(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(c.outcome(Err(&refused)), Outcome::TRANSIENT);
    }

    #[test]
    fn statuses_follow_the_http_classifier() {
        let c = ReqwestClassifier::new();
        assert_eq!(
            c.outcome_of_status(http::StatusCode::SERVICE_UNAVAILABLE),
            Outcome::TRANSIENT
        );
        assert_eq!(
            c.outcome_of_status(http::StatusCode::INTERNAL_SERVER_ERROR),
            Outcome::FATAL
        );
        assert_eq!(
            c.outcome_of_status(http::StatusCode::NOT_FOUND),
            Outcome::Ignored
        );
        assert_eq!(
            c.outcome_of_status(http::StatusCode::CONFLICT),
            Outcome::Ignored
        );
        assert_eq!(
            ReqwestClassifier::for_retry().outcome_of_status(http::StatusCode::CONFLICT),
            Outcome::TRANSIENT
        );
    }
}
