//! The HTTP classifier.

use std::ops::RangeInclusive;

use http::{Response, StatusCode};

use super::{Classify, Outcome, Record, failure_kind_of};
use crate::error::ConfigError;

/// A set of HTTP status codes (100..=999) as a fixed bitmap: lookups are one load and one mask,
/// and building one never allocates.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatusSet([u64; 16]);

impl StatusSet {
    pub(crate) const EMPTY: StatusSet = StatusSet([0; 16]);

    pub(crate) const fn with_range(mut self, from: u16, to: u16) -> Self {
        let mut s = from;
        while s <= to {
            self.0[(s / 64) as usize] |= 1u64 << (s % 64);
            s += 1;
        }
        self
    }

    #[inline]
    pub(crate) const fn contains(&self, status: u16) -> bool {
        status < 1024 && self.0[(status / 64) as usize] & (1u64 << (status % 64)) != 0
    }
}

impl std::fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries((100u16..1000).filter(|s| self.contains(*s)))
            .finish()
    }
}

const DEFAULT_FAILURES: StatusSet = StatusSet::EMPTY
    .with_range(500, 599)
    .with_range(408, 408)
    .with_range(429, 429);
const DEFAULT_TRANSIENT: StatusSet = StatusSet::EMPTY
    .with_range(408, 408)
    .with_range(429, 429)
    .with_range(502, 504);
const DEFAULT_IGNORED: StatusSet = StatusSet::EMPTY.with_range(400, 499);

/// Classifies `http::Response<B>` results by status code.
///
/// | result | outcome |
/// |---|---|
/// | an error (`Err`) for a request that could not be sent as it is: an invalid URI, a builder error, a misuse of the protocol ([`failure_kind_of`]) | fatal failure |
/// | any other error (`Err`): refused, reset, timed out, … | transient failure |
/// | 408, 429, 502, 503, 504 | transient failure |
/// | 500, 501, 505–599 | fatal failure |
/// | other 4xx | ignored: the client's fault, not the server's health |
/// | everything else | success |
///
/// Every set can be replaced through [`HttpClassifier::builder`]. A status in both the failure
/// and the ignored set is a failure.
///
/// ```
/// use rampart_core::classify::{Classify, HttpClassifier, Outcome};
///
/// // Treat 404 as a failure too (a backend that lost its data), and 500 as transient.
/// let classifier = HttpClassifier::builder()
///     .failure_statuses([404..=404, 500..=599])
///     .transient_statuses([500..=504])
///     .build()
///     .unwrap();
/// let not_found = http::Response::builder().status(404).body(()).unwrap();
/// assert_eq!(classifier.outcome_of(Ok::<_, &()>(&not_found)), Some(Outcome::FATAL));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct HttpClassifier {
    failures: StatusSet,
    transient: StatusSet,
    ignored: StatusSet,
}

impl Default for HttpClassifier {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClassifier {
    /// The default classifier (see the type's docs).
    pub const fn new() -> Self {
        Self {
            failures: DEFAULT_FAILURES,
            transient: DEFAULT_TRANSIENT,
            ignored: DEFAULT_IGNORED,
        }
    }

    /// A builder starting from the defaults.
    pub fn builder() -> HttpClassifierBuilder {
        HttpClassifierBuilder {
            failures: Vec::new(),
            transient: Vec::new(),
            ignored: Vec::new(),
            set_failures: false,
            set_transient: false,
            set_ignored: false,
        }
    }

    /// The outcome of a response with this status.
    #[inline]
    pub const fn outcome_of_status(&self, status: StatusCode) -> Outcome {
        let s = status.as_u16();
        if self.failures.contains(s) {
            if self.transient.contains(s) {
                Outcome::TRANSIENT
            } else {
                Outcome::FATAL
            }
        } else if self.ignored.contains(s) {
            Outcome::Ignored
        } else {
            Outcome::Success
        }
    }
}

/// By the status alone: a head always tells.
impl super::ClassifyResponse for HttpClassifier {
    #[inline]
    fn outcome_of_head(&self, status: StatusCode, _: &http::HeaderMap) -> Option<Outcome> {
        Some(self.outcome_of_status(status))
    }

    #[inline]
    fn outcome_of_trailers(&self, status: StatusCode, _: Option<&http::HeaderMap>) -> Outcome {
        self.outcome_of_status(status)
    }
}

impl<B, E> Classify<Response<B>, E> for HttpClassifier
where
    B: 'static,
    E: 'static,
{
    type Response<R: Record> = Response<B>;

    #[inline]
    fn outcome_of(&self, result: Result<&Response<B>, &E>) -> Option<Outcome> {
        Some(match result {
            Ok(res) => self.outcome_of_status(res.status()),
            Err(e) => Outcome::Failure(failure_kind_of(e)),
        })
    }

    #[inline]
    fn classify<R: Record>(
        &self,
        result: Result<Response<B>, E>,
        recorder: R,
    ) -> Result<Response<B>, E> {
        recorder.record(match &result {
            Ok(res) => self.outcome_of_status(res.status()),
            Err(e) => Outcome::Failure(failure_kind_of(e)),
        });
        result
    }

    #[inline]
    fn classify_now<R: Record>(
        &self,
        result: Result<Response<B>, E>,
    ) -> Result<(Outcome, Result<Response<B>, E>), Result<Response<B>, E>> {
        let outcome = match &result {
            Ok(res) => self.outcome_of_status(res.status()),
            Err(e) => Outcome::Failure(failure_kind_of(e)),
        };
        Ok((outcome, result))
    }
}

/// Builds an [`HttpClassifier`]; every set left untouched keeps its default.
#[derive(Debug, Clone)]
pub struct HttpClassifierBuilder {
    failures: Vec<RangeInclusive<u16>>,
    transient: Vec<RangeInclusive<u16>>,
    ignored: Vec<RangeInclusive<u16>>,
    set_failures: bool,
    set_transient: bool,
    set_ignored: bool,
}

impl HttpClassifierBuilder {
    /// Replaces the statuses that count as failures (default: 408, 429, 500–599).
    pub fn failure_statuses(
        mut self,
        ranges: impl IntoIterator<Item = RangeInclusive<u16>>,
    ) -> Self {
        self.failures = ranges.into_iter().collect();
        self.set_failures = true;
        self
    }

    /// Replaces which failure statuses are transient, i.e. worth retrying
    /// (default: 408, 429, 502–504).
    pub fn transient_statuses(
        mut self,
        ranges: impl IntoIterator<Item = RangeInclusive<u16>>,
    ) -> Self {
        self.transient = ranges.into_iter().collect();
        self.set_transient = true;
        self
    }

    /// Replaces the statuses that are ignored, neither success nor failure (default: 400–499).
    pub fn ignored_statuses(
        mut self,
        ranges: impl IntoIterator<Item = RangeInclusive<u16>>,
    ) -> Self {
        self.ignored = ranges.into_iter().collect();
        self.set_ignored = true;
        self
    }

    /// Validates the ranges (each within 100..=999, start ≤ end; transient statuses must be
    /// failures) and builds the classifier.
    pub fn build(self) -> Result<HttpClassifier, ConfigError> {
        fn set(
            field: &'static str,
            ranges: &[RangeInclusive<u16>],
            given: bool,
            default: StatusSet,
        ) -> Result<StatusSet, ConfigError> {
            if !given {
                return Ok(default);
            }
            let mut s = StatusSet::EMPTY;
            for r in ranges {
                let (a, b) = (*r.start(), *r.end());
                if !(100..=999).contains(&a) || !(100..=999).contains(&b) || a > b {
                    return Err(ConfigError::new(
                        "http classifier",
                        field,
                        format!(
                            "ranges must lie within 100..=999 with start <= end, got {a}..={b}"
                        ),
                    ));
                }
                s = s.with_range(a, b);
            }
            Ok(s)
        }
        let failures = set(
            "failure_statuses",
            &self.failures,
            self.set_failures,
            DEFAULT_FAILURES,
        )?;
        let transient = set(
            "transient_statuses",
            &self.transient,
            self.set_transient,
            DEFAULT_TRANSIENT,
        )?;
        let ignored = set(
            "ignored_statuses",
            &self.ignored,
            self.set_ignored,
            DEFAULT_IGNORED,
        )?;
        // A transient status outside the failure set would be unreachable: say so.
        let mut stray = transient;
        for (s, f) in stray.0.iter_mut().zip(failures.0.iter()) {
            *s &= !f;
        }
        if self.set_transient && stray != StatusSet::EMPTY {
            return Err(ConfigError::new(
                "http classifier",
                "transient_statuses",
                format!("must be a subset of failure_statuses; not failures: {stray:?}"),
            ));
        }
        Ok(HttpClassifier {
            failures,
            transient: StatusSet(std::array::from_fn(|i| transient.0[i] & failures.0[i])),
            ignored,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(c: &HttpClassifier, status: u16) -> Outcome {
        let res = Response::builder().status(status).body(()).unwrap();
        Classify::<_, ()>::outcome_of(c, Ok(&res)).unwrap()
    }

    #[test]
    fn defaults() {
        let c = HttpClassifier::default();
        for s in [408, 429, 502, 503, 504] {
            assert_eq!(outcome(&c, s), Outcome::TRANSIENT, "{s}");
        }
        for s in [500, 501, 505, 599] {
            assert_eq!(outcome(&c, s), Outcome::FATAL, "{s}");
        }
        for s in [400, 401, 404, 409, 422, 499] {
            assert_eq!(outcome(&c, s), Outcome::Ignored, "{s}");
        }
        for s in [100, 200, 204, 301, 304] {
            assert_eq!(outcome(&c, s), Outcome::Success, "{s}");
        }
        let err: Result<&Response<()>, &&str> = Err(&"connection reset");
        assert_eq!(c.outcome_of(err), Some(Outcome::TRANSIENT));
    }

    #[test]
    fn configurable_ranges() {
        let c = HttpClassifier::builder()
            .failure_statuses([500..=599, 404..=404])
            .transient_statuses([500..=500])
            .ignored_statuses([])
            .build()
            .unwrap();
        assert_eq!(outcome(&c, 404), Outcome::FATAL);
        assert_eq!(outcome(&c, 500), Outcome::TRANSIENT);
        assert_eq!(outcome(&c, 503), Outcome::FATAL);
        assert_eq!(outcome(&c, 429), Outcome::Success);
        assert_eq!(outcome(&c, 400), Outcome::Success);
    }

    #[test]
    #[allow(clippy::reversed_empty_ranges)] // an empty range is one of the mistakes tested
    fn bad_ranges_name_the_field() {
        let err = HttpClassifier::builder()
            .failure_statuses([600..=50])
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "failure_statuses");
        let err = HttpClassifier::builder()
            .ignored_statuses([0..=99])
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "ignored_statuses");
        let err = HttpClassifier::builder()
            .failure_statuses([500..=599])
            .transient_statuses([429..=429])
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "transient_statuses");
        assert!(err.to_string().contains("429"), "{err}");
    }
}
