//! Outcome classification: what counts as a success, a failure, or neither.
//!
//! A resilience policy never looks at a response itself; it asks a [`Classify`] implementation.
//! Three are provided:
//!
//! | classifier | for | failures by default |
//! |---|---|---|
//! | [`ResultClassifier`] | any `Result<T, E>` | every `Err`: fatal if the request could not be sent as it is ([`failure_kind_of`]), else transient |
//! | [`HttpClassifier`] | `http::Response<B>` | 5xx, 408, 429 and errors (as [`ResultClassifier`] judges them); other 4xx are ignored |
//! | [`GrpcClassifier`] | gRPC over `http::Response<B>` | `UNKNOWN`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `INTERNAL`, `UNAVAILABLE`, `DATA_LOSS` |
//!
//! and [`classify_fn`] turns a closure into one. [`IgnoreRejections`] adapts any of them to a
//! service behind another rampart layer, so that its rejections count neither way.
//!
//! # Outcomes
//!
//! - [`Outcome::Success`]: the dependency is healthy.
//! - [`Outcome::Failure`]: it is not; [`FailureKind`] says whether trying again may help.
//! - [`Outcome::Ignored`]: says nothing about the dependency's health — a client error such as a
//!   404 or a validation failure, or a call the client cancelled. Ignored calls are neither
//!   counted as successes nor as failures.
//!
//! # Deferred outcomes
//!
//! A streaming response (gRPC above all) only knows its outcome when the body ends: the
//! `grpc-status` arrives in the trailers. [`Classify::classify`] therefore hands the classifier a
//! [`Record`]er and lets it decide *when* to record: at once for a plain result, or at the end of
//! the stream by wrapping the body ([`GrpcBody`]). A recorder that is dropped without recording
//! means the caller gave up (cancellation); policies treat that as ignored.

use std::{fmt, marker::PhantomData};

mod errors;
#[cfg(feature = "grpc")]
mod grpc;
#[cfg(feature = "http")]
mod http;
mod rejections;

pub use self::errors::{failure_kind_of, failure_kind_of_error};
#[cfg(feature = "grpc")]
pub use self::grpc::{GrpcBody, GrpcClassifier, GrpcClassifierBuilder, GrpcCode, is_grpc};
#[cfg(feature = "http")]
pub use self::http::{HttpClassifier, HttpClassifierBuilder};
pub use self::rejections::{
    IgnoreRejections, RetryRejections, outcome_of_rejection, retry_outcome_of_rejection,
};

/// What one call says about the health of the thing it called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call succeeded.
    Success,
    /// The call failed in a way that counts against the dependency.
    Failure(FailureKind),
    /// The call says nothing about the dependency's health (client error, cancellation).
    Ignored,
}

impl Outcome {
    /// A transient failure.
    pub const TRANSIENT: Outcome = Outcome::Failure(FailureKind::Transient);
    /// A fatal failure.
    pub const FATAL: Outcome = Outcome::Failure(FailureKind::Fatal);

    /// `true` for [`Outcome::Failure`] of either kind.
    #[inline]
    pub const fn is_failure(self) -> bool {
        matches!(self, Outcome::Failure(_))
    }

    /// `true` for [`Outcome::Success`].
    #[inline]
    pub const fn is_success(self) -> bool {
        matches!(self, Outcome::Success)
    }

    /// `true` for a transient failure: one that trying again may fix.
    #[inline]
    pub const fn is_transient(self) -> bool {
        matches!(self, Outcome::Failure(FailureKind::Transient))
    }
}

/// Whether a failure may go away if the call is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// Overload, unavailability, a reset connection: worth retrying.
    Transient,
    /// A server bug or a broken contract: retrying will not help.
    Fatal,
}

/// Receives the outcome of one call, at most once.
///
/// Dropping a recorder without calling [`record`](Record::record) means the call was abandoned
/// (its future or its response body was dropped): implementations treat that as
/// [`Outcome::Ignored`] and release whatever the call held.
pub trait Record: Send + 'static {
    /// Records the outcome of the call.
    fn record(self, outcome: Outcome);
}

impl<F> Record for F
where
    F: FnOnce(Outcome) + Send + 'static,
{
    fn record(self, outcome: Outcome) {
        self(outcome)
    }
}

/// Decides the [`Outcome`] of a call from its result.
///
/// `Res` is the service's response type and `E` its error type.
pub trait Classify<Res, E>: Clone + Send + Sync + 'static {
    /// What the caller gets back: `Res` itself for classifiers that decide from the response
    /// head, or `Res` with a body that records at end of stream.
    type Response<R: Record>;

    /// The outcome as far as the result tells it now, or `None` if only the end of the response
    /// stream will tell (a gRPC response without `grpc-status` in its headers).
    fn outcome_of(&self, result: Result<&Res, &E>) -> Option<Outcome>;

    /// Classifies `result` and hands the outcome to `recorder`, now or when the response stream
    /// ends.
    fn classify<R: Record>(
        &self,
        result: Result<Res, E>,
        recorder: R,
    ) -> Result<Self::Response<R>, E>;

    /// Classifies `result` if its outcome is known now, returning the outcome with the response
    /// ready for the caller; hands `result` back untouched (`Err`) if only the end of the
    /// response stream will tell, for [`classify`](Self::classify) to finish.
    ///
    /// The fast path of adapters: no recorder needs to exist while the classifier is borrowed.
    #[allow(clippy::type_complexity)]
    fn classify_now<R: Record>(
        &self,
        result: Result<Res, E>,
    ) -> Result<(Outcome, Result<Self::Response<R>, E>), Result<Res, E>>;
}

/// Judges an HTTP response by its head and, when the head cannot tell, by its trailers: the
/// response-level half of a [`Classify`], for a layer that sees responses but is not a
/// classifier's caller in the usual way (the dead-letter layer and its redrive judge final
/// answers with it).
///
/// [`HttpClassifier`] decides from the status alone; [`GrpcClassifier`] (feature `grpc`) from
/// `grpc-status` in the headers of a trailers-only answer, else from the trailers when the
/// body ends.
///
/// ```
/// use http::{HeaderMap, StatusCode};
/// use rampart_core::classify::{ClassifyResponse, GrpcClassifier, HttpClassifier, Outcome};
///
/// let http = HttpClassifier::new();
/// assert_eq!(http.outcome_of_head(StatusCode::BAD_GATEWAY, &HeaderMap::new()), Some(Outcome::TRANSIENT));
///
/// let grpc = GrpcClassifier::new();
/// // A streaming answer: its status comes in the trailers.
/// assert_eq!(grpc.outcome_of_head(StatusCode::OK, &HeaderMap::new()), None);
/// let mut trailers = HeaderMap::new();
/// trailers.insert("grpc-status", "14".parse().unwrap());
/// assert_eq!(grpc.outcome_of_trailers(StatusCode::OK, Some(&trailers)), Outcome::TRANSIENT);
/// ```
#[cfg(feature = "http")]
pub trait ClassifyResponse: fmt::Debug + Send + Sync + 'static {
    /// The outcome as far as the head tells it, or `None` if only the trailers will tell.
    fn outcome_of_head(
        &self,
        status: ::http::StatusCode,
        headers: &::http::HeaderMap,
    ) -> Option<Outcome>;

    /// The outcome of a response whose head deferred, once its body ended: with its trailers,
    /// or `None` if it ended without any.
    fn outcome_of_trailers(
        &self,
        status: ::http::StatusCode,
        trailers: Option<&::http::HeaderMap>,
    ) -> Outcome;
}

/// Classifies `Ok` as success and an `Err` as a failure of the kind [`failure_kind_of`] says:
/// fatal for a request that could not be sent as it is (an invalid URI, a builder error, a
/// misuse of the protocol), transient otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResultClassifier;

impl<Res, E: 'static> Classify<Res, E> for ResultClassifier {
    type Response<R: Record> = Res;

    #[inline]
    fn outcome_of(&self, result: Result<&Res, &E>) -> Option<Outcome> {
        Some(match result {
            Ok(_) => Outcome::Success,
            Err(e) => Outcome::Failure(failure_kind_of(e)),
        })
    }

    #[inline]
    fn classify<R: Record>(&self, result: Result<Res, E>, recorder: R) -> Result<Res, E> {
        recorder.record(match &result {
            Ok(_) => Outcome::Success,
            Err(e) => Outcome::Failure(failure_kind_of(e)),
        });
        result
    }

    #[inline]
    fn classify_now<R: Record>(
        &self,
        result: Result<Res, E>,
    ) -> Result<(Outcome, Result<Res, E>), Result<Res, E>> {
        let outcome = match &result {
            Ok(_) => Outcome::Success,
            Err(e) => Outcome::Failure(failure_kind_of(e)),
        };
        Ok((outcome, result))
    }
}

/// A classifier made from a closure; see [`classify_fn`].
pub struct ClassifyFn<F, Res, E> {
    f: F,
    _marker: PhantomData<fn(&Res, &E)>,
}

/// Makes a classifier from a closure over `Result<&Res, &E>`.
///
/// ```
/// use rampart_core::classify::{classify_fn, Classify, Outcome};
///
/// // A Result<u32, String> where odd numbers mean "the backend is sick".
/// let c = classify_fn(|r: Result<&u32, &String>| match r {
///     Ok(n) if n % 2 == 1 => Outcome::FATAL,
///     Ok(_) => Outcome::Success,
///     Err(_) => Outcome::TRANSIENT,
/// });
/// assert_eq!(c.outcome_of(Ok(&3)), Some(Outcome::FATAL));
/// ```
pub fn classify_fn<F, Res, E>(f: F) -> ClassifyFn<F, Res, E>
where
    F: Fn(Result<&Res, &E>) -> Outcome,
{
    ClassifyFn {
        f,
        _marker: PhantomData,
    }
}

impl<F: Clone, Res, E> Clone for ClassifyFn<F, Res, E> {
    fn clone(&self) -> Self {
        Self {
            f: self.f.clone(),
            _marker: PhantomData,
        }
    }
}

impl<F, Res, E> fmt::Debug for ClassifyFn<F, Res, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassifyFn").finish_non_exhaustive()
    }
}

impl<F, Res, E> Classify<Res, E> for ClassifyFn<F, Res, E>
where
    F: Fn(Result<&Res, &E>) -> Outcome + Clone + Send + Sync + 'static,
    Res: 'static,
    E: 'static,
{
    type Response<R: Record> = Res;

    #[inline]
    fn outcome_of(&self, result: Result<&Res, &E>) -> Option<Outcome> {
        Some((self.f)(result))
    }

    #[inline]
    fn classify<R: Record>(&self, result: Result<Res, E>, recorder: R) -> Result<Res, E> {
        recorder.record((self.f)(result.as_ref()));
        result
    }

    #[inline]
    fn classify_now<R: Record>(
        &self,
        result: Result<Res, E>,
    ) -> Result<(Outcome, Result<Res, E>), Result<Res, E>> {
        Ok(((self.f)(result.as_ref()), result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn result_classifier_records_once_and_passes_result_through() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let out =
            ResultClassifier.classify(Err::<u8, &str>("boom"), move |o| s.lock().unwrap().push(o));
        assert_eq!(out, Err("boom"));
        let s = seen.clone();
        let out = ResultClassifier.classify(Ok::<u8, &str>(7), move |o| s.lock().unwrap().push(o));
        assert_eq!(out, Ok(7));
        assert_eq!(
            *seen.lock().unwrap(),
            vec![Outcome::TRANSIENT, Outcome::Success]
        );
    }

    #[test]
    fn outcome_predicates() {
        assert!(Outcome::TRANSIENT.is_failure() && Outcome::TRANSIENT.is_transient());
        assert!(Outcome::FATAL.is_failure() && !Outcome::FATAL.is_transient());
        assert!(!Outcome::Ignored.is_failure() && !Outcome::Ignored.is_success());
    }
}
