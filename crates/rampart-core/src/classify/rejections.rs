//! What a circuit breaker makes of a rampart rejection from a layer inside it (the one rule,
//! [`outcome_of_rejection`], and its tower adapter [`IgnoreRejections`]), and what a retry
//! layer makes of one ([`retry_outcome_of_rejection`], [`RetryRejections`]).

use std::error::Error;

use super::{Classify, Outcome, Record};
use crate::{
    error::PolicyError,
    rejection::{Rejected, RejectionKind},
};

/// What a breaker counts for a rampart rejection made by a layer inside it. Both adapters
/// apply this one rule: the tower breaker through [`IgnoreRejections`], rampart-reqwest's
/// breaker through its classifier's default.
///
/// | rejection | outcome | why |
/// |---|---|---|
/// | [`BulkheadFull`](RejectionKind::BulkheadFull) | [`Outcome::Ignored`] | the caller's own overload: the call never reached the dependency |
/// | [`CircuitOpen`](RejectionKind::CircuitOpen) (a breaker further in: per host, say) | [`Outcome::Ignored`] | the inner breaker has counted the failures already; counting them again would trip this one on a single bad host |
/// | [`Timeout`](RejectionKind::Timeout) (a per-attempt timeout further in) | [`Outcome::TRANSIENT`] | the dependency was too slow: the failure a breaker is for |
/// | [`RateLimited`](RejectionKind::RateLimited), [`BudgetExhausted`](RejectionKind::BudgetExhausted) (a client-side limit further in) | [`Outcome::Ignored`] | the caller's own throttling: the call never reached the dependency |
///
/// A rejection of a kind this crate does not know (a type of your own that implements
/// [`Rejection`](crate::error::Rejection)) is a local decision too: ignored.
///
/// ```
/// use rampart_core::classify::{Outcome, outcome_of_rejection};
/// use rampart_core::rejection::RejectionKind;
///
/// assert_eq!(outcome_of_rejection(RejectionKind::BulkheadFull), Outcome::Ignored);
/// assert_eq!(outcome_of_rejection(RejectionKind::Timeout), Outcome::TRANSIENT);
/// ```
pub const fn outcome_of_rejection(kind: RejectionKind) -> Outcome {
    match kind {
        RejectionKind::BulkheadFull | RejectionKind::CircuitOpen => Outcome::Ignored,
        RejectionKind::Timeout => Outcome::TRANSIENT,
        RejectionKind::RateLimited | RejectionKind::BudgetExhausted => Outcome::Ignored,
    }
}

/// The outcome of a rejection `r` that an inner layer returned as
/// [`PolicyError::Rejected`].
fn outcome_of_rejected(r: &(dyn Error + 'static)) -> Outcome {
    Rejected::find(r).map_or(Outcome::Ignored, |r| outcome_of_rejection(r.kind()))
}

/// Adapts a classifier to a service whose error is a [`PolicyError`]: the inner layer's
/// rejection is judged by [`outcome_of_rejection`] (a full bulkhead or an open breaker further
/// in is [`Outcome::Ignored`], since it says nothing about the dependency; a timeout further
/// in is a transient failure), and every other result by `C`.
///
/// A breaker *outside* a bulkhead (the recommended order) needs it: otherwise the bulkhead's
/// rejections, the caller's own overload, count as the dependency's failures and trip the
/// breaker. `CircuitBreakerLayer::ignore_rejections` wraps the layer's classifier in it.
///
/// # Why tower needs it and reqwest does not
///
/// A tower breaker sees its inner service's error only as a type parameter `E`, and a
/// classifier that works for every `E` (the breaker's default, [`HttpClassifier`](super::HttpClassifier))
/// cannot look inside one: Rust has no way to ask "is this `E` a `PolicyError`?" without a
/// bound every user's error type would have to meet. So the tower breaker counts every `Err`
/// unless it is told that its inner service is a rampart layer, by this adapter (whose impl
/// is for `PolicyError` errors only, so a stack it does not fit fails to compile rather than
/// misjudging). rampart-reqwest's error type is always the same, so its breaker applies the
/// rule by default. The rule itself is the same.
///
/// Only the rejection of the layer directly inside is seen here: a rejection from further in
/// arrives as that layer's [`PolicyError::Inner`], and `C` judges it (a bulkhead's
/// `Inner(DeadlineExceeded)` from a per-attempt timeout is an `Err`, so a failure, as it
/// should be).
///
/// ```
/// use rampart_core::classify::{Classify, HttpClassifier, IgnoreRejections, Outcome};
/// use rampart_core::error::{Elapsed, PolicyError};
/// use rampart_core::rejection::{BulkheadFull, FullReason};
///
/// let c = IgnoreRejections(HttpClassifier::default());
/// type E<R> = PolicyError<R, std::io::Error>;
/// type Res = http::Response<()>;
/// let full: E<BulkheadFull> = PolicyError::Rejected(BulkheadFull::new(FullReason::NoCapacity, "default".into(), std::time::Duration::ZERO));
/// let late: E<Elapsed> = PolicyError::Rejected(Elapsed::new());
/// let failed: E<Elapsed> = PolicyError::Inner(std::io::Error::other("reset"));
/// assert_eq!(Classify::<Res, _>::outcome_of(&c, Err(&full)), Some(Outcome::Ignored));
/// assert_eq!(Classify::<Res, _>::outcome_of(&c, Err(&late)), Some(Outcome::TRANSIENT));
/// assert_eq!(Classify::<Res, _>::outcome_of(&c, Err(&failed)), Some(Outcome::TRANSIENT));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct IgnoreRejections<C>(pub C);

/// Adapts a classifier to a service whose error is a [`PolicyError`], for a *retry* layer
/// outside it: a rejection of the layer directly inside is judged by
/// [`retry_outcome_of_rejection`] (worth another attempt, unless it can never pass), and
/// every other result by `C`. rampart-retry's `RetryLayer::honour_rejections` wraps the
/// layer's classifier in it, and its protocol so that the attempt waits what the rejection
/// names (a rate limit's `retry_after`).
///
/// ```
/// use rampart_core::classify::{Classify, ResultClassifier, RetryRejections, Outcome};
/// use rampart_core::error::PolicyError;
/// use rampart_core::rejection::{LimitInfo, LimitReason, LimitedBy, RateLimited};
/// use std::time::Duration;
///
/// let c = RetryRejections(ResultClassifier);
/// let info = LimitInfo { quota: 10, window: Duration::from_secs(1), remaining: 0, reset: Duration::from_millis(100) };
/// let over = RateLimited::new(LimitedBy::Rate, LimitReason::OverLimit, 1, Some(Duration::from_millis(100)), info);
/// let never = RateLimited::new(LimitedBy::Rate, LimitReason::CostTooHigh, 50, None, info);
/// type E = PolicyError<RateLimited, std::io::Error>;
/// let judge = |e: E| Classify::<(), _>::outcome_of(&c, Err(&e));
/// assert_eq!(judge(PolicyError::Rejected(over)), Some(Outcome::TRANSIENT));
/// assert_eq!(judge(PolicyError::Rejected(never)), Some(Outcome::FATAL));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryRejections<C>(pub C);

/// What a retry layer makes of a rampart rejection from a layer inside it: another attempt
/// (after the wait the rejection names, which the retry protocol reads) for every rejection
/// that may pass later, a fatal failure for one that never will.
///
/// | rejection | outcome | why |
/// |---|---|---|
/// | [`RateLimited`](RejectionKind::RateLimited), [`BudgetExhausted`](RejectionKind::BudgetExhausted) with a `retry_after` | [`Outcome::TRANSIENT`] | the limit has room again after the wait |
/// | the same without one ([`CostTooHigh`](crate::rejection::LimitReason::CostTooHigh)) | [`Outcome::FATAL`] | the call costs more than the whole burst or budget: it never fits |
/// | [`BulkheadFull`](RejectionKind::BulkheadFull), [`CircuitOpen`](RejectionKind::CircuitOpen), [`Timeout`](RejectionKind::Timeout) | [`Outcome::TRANSIENT`] | room, a closed circuit or a quicker answer may come (an open circuit says when it probes again) |
///
/// A rejection of a type this crate does not know is [`Outcome::Ignored`]: handed back, not
/// retried.
pub fn retry_outcome_of_rejection(r: &Rejected) -> Outcome {
    match r.kind() {
        RejectionKind::RateLimited | RejectionKind::BudgetExhausted
            if r.retry_after().is_none() =>
        {
            Outcome::FATAL
        }
        _ => Outcome::TRANSIENT,
    }
}

fn retry_outcome_of_rejected(r: &(dyn Error + 'static)) -> Outcome {
    Rejected::find(r).map_or(Outcome::Ignored, |r| retry_outcome_of_rejection(&r))
}

/// The `Classify` impl of an adapter that judges `PolicyError::Rejected` by `$judge` and
/// everything else by the classifier it wraps.
macro_rules! rejection_adapter {
    ($adapter:ident, $judge:path) => {
        impl<Res, R, E, C> Classify<Res, PolicyError<R, E>> for $adapter<C>
        where
            C: Classify<Res, E>,
            R: Error + 'static,
            E: 'static,
        {
            type Response<Rec: Record> = C::Response<Rec>;

            #[inline]
            fn outcome_of(&self, result: Result<&Res, &PolicyError<R, E>>) -> Option<Outcome> {
                match result {
                    Ok(res) => self.0.outcome_of(Ok(res)),
                    Err(PolicyError::Inner(e)) => self.0.outcome_of(Err(e)),
                    Err(PolicyError::Rejected(r)) => Some($judge(r)),
                }
            }

            fn classify<Rec: Record>(
                &self,
                result: Result<Res, PolicyError<R, E>>,
                recorder: Rec,
            ) -> Result<Self::Response<Rec>, PolicyError<R, E>> {
                match result {
                    Ok(res) => self
                        .0
                        .classify(Ok(res), recorder)
                        .map_err(PolicyError::Inner),
                    Err(PolicyError::Inner(e)) => self
                        .0
                        .classify(Err(e), recorder)
                        .map_err(PolicyError::Inner),
                    Err(PolicyError::Rejected(r)) => {
                        recorder.record($judge(&r));
                        Err(PolicyError::Rejected(r))
                    }
                }
            }

            #[inline]
            #[allow(clippy::type_complexity)]
            fn classify_now<Rec: Record>(
                &self,
                result: Result<Res, PolicyError<R, E>>,
            ) -> Result<
                (Outcome, Result<Self::Response<Rec>, PolicyError<R, E>>),
                Result<Res, PolicyError<R, E>>,
            > {
                match result {
                    Ok(res) => match self.0.classify_now::<Rec>(Ok(res)) {
                        Ok((o, r)) => Ok((o, r.map_err(PolicyError::Inner))),
                        Err(back) => Err(back.map_err(PolicyError::Inner)),
                    },
                    Err(PolicyError::Inner(e)) => match self.0.classify_now::<Rec>(Err(e)) {
                        Ok((o, r)) => Ok((o, r.map_err(PolicyError::Inner))),
                        Err(back) => Err(back.map_err(PolicyError::Inner)),
                    },
                    Err(PolicyError::Rejected(r)) => {
                        Ok(($judge(&r), Err(PolicyError::Rejected(r))))
                    }
                }
            }
        }
    };
}

rejection_adapter!(IgnoreRejections, outcome_of_rejected);
rejection_adapter!(RetryRejections, retry_outcome_of_rejected);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        classify::ResultClassifier,
        error::Elapsed,
        rejection::{BulkheadFull, CircuitOpen, FullReason, RejectedBy},
    };

    type E<R> = PolicyError<R, std::io::Error>;

    fn recorded<R: Error + 'static>(err: E<R>) -> Outcome {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
        let s = seen.clone();
        let out = Classify::<(), E<R>>::classify(
            &IgnoreRejections(ResultClassifier),
            Err(err),
            move |o| *s.lock().unwrap() = Some(o),
        );
        assert!(
            matches!(out, Err(PolicyError::Rejected(_))),
            "the rejection passes through"
        );
        seen.lock().unwrap().take().expect("recorded")
    }

    #[test]
    fn local_rejections_are_ignored_and_a_deadline_is_a_failure() {
        let full = BulkheadFull::new(
            FullReason::NoCapacity,
            "default".into(),
            std::time::Duration::ZERO,
        );
        let open = CircuitOpen::new(RejectedBy::Open, None);
        assert_eq!(recorded(PolicyError::Rejected(full)), Outcome::Ignored);
        assert_eq!(recorded(PolicyError::Rejected(open)), Outcome::Ignored);
        assert_eq!(
            recorded(PolicyError::Rejected(Elapsed::new())),
            Outcome::TRANSIENT
        );
        // A rejection type of the user's own: a local decision, ignored.
        let own = crate::error::ConfigError::new("demo", "field", "no");
        assert_eq!(recorded(PolicyError::Rejected(own)), Outcome::Ignored);
    }

    #[test]
    fn classify_now_and_outcome_of_follow_the_same_rule() {
        let c = IgnoreRejections(ResultClassifier);
        let late: E<Elapsed> = PolicyError::Rejected(Elapsed::new());
        assert_eq!(
            Classify::<(), _>::outcome_of(&c, Err(&late)),
            Some(Outcome::TRANSIENT)
        );
        let full: E<BulkheadFull> = PolicyError::Rejected(BulkheadFull::new(
            FullReason::NoCapacity,
            "default".into(),
            std::time::Duration::ZERO,
        ));
        let now = Classify::<(), _>::classify_now::<fn(Outcome)>(&c, Err(full));
        assert!(matches!(
            now,
            Ok((Outcome::Ignored, Err(PolicyError::Rejected(_))))
        ));
        let inner: E<Elapsed> = PolicyError::Inner(std::io::Error::other("reset"));
        assert_eq!(
            Classify::<(), _>::outcome_of(&c, Err(&inner)),
            Some(Outcome::TRANSIENT)
        );
    }
}
