//! How rampart's errors travel through reqwest-middleware (the crate docs' "Errors"), and
//! [`find`].

use std::error::Error;

use rampart_core::{error::chain, rejection::Rejected};
use reqwest_middleware::Error as MiddlewareError;

/// Wraps a rampart error as reqwest-middleware's `Error::Middleware`, so that it stays
/// findable through the source chain (see the crate docs' "Errors").
pub(crate) fn middleware_error<E>(err: E) -> MiddlewareError
where
    E: Error + Send + Sync + 'static,
{
    let message = err.to_string();
    match MiddlewareError::middleware(err) {
        MiddlewareError::Middleware(e) => MiddlewareError::Middleware(e.context(message)),
        other => other,
    }
}

/// Finds an error of type `T` anywhere in a reqwest-middleware error: in the chain of an
/// `Error::Middleware` (its top error included), and in an `Error::Reqwest` (the
/// `reqwest::Error` itself included), looking inside every nested reqwest-middleware error
/// on the way (a retry's last error, a dead letter's original error).
///
/// ```
/// use rampart_circuit_breaker::{CircuitOpen, RejectedBy};
/// use rampart_reqwest::find;
///
/// let err = reqwest_middleware::Error::middleware(CircuitOpen::new(RejectedBy::Open, None));
/// assert_eq!(find::<CircuitOpen>(&err).unwrap().rejected_by(), RejectedBy::Open);
/// assert!(find::<std::io::Error>(&err).is_none());
/// ```
pub fn find<T: Error + 'static>(err: &MiddlewareError) -> Option<&T> {
    find_map(err, |e| e.downcast_ref::<T>())
}

/// The first rampart rejection ([`Rejected::of`]) anywhere in a reqwest-middleware error,
/// looked for as [`find`] looks.
pub(crate) fn find_rejection(err: &MiddlewareError) -> Option<Rejected> {
    find_map(err, Rejected::of)
}

/// The first `Some` that `f` gives for an error in `err`: the walk [`find`],
/// [`find_rejection`] and the classifier share.
pub(crate) fn find_map<'a, T>(
    err: &'a MiddlewareError,
    f: impl Fn(&'a (dyn Error + 'static)) -> Option<T> + Copy,
) -> Option<T> {
    match err {
        MiddlewareError::Middleware(e) => e.chain().find_map(|e| find_here(e, f)),
        MiddlewareError::Reqwest(e) => chain(e).find_map(|e| find_here(e, f)),
    }
}

/// `f` of `err` itself, or, if `err` is a reqwest-middleware error, of what it wraps (which
/// its transparent `source` skips).
fn find_here<'a, T>(
    err: &'a (dyn Error + 'static),
    f: impl Fn(&'a (dyn Error + 'static)) -> Option<T> + Copy,
) -> Option<T> {
    if let Some(found) = f(err) {
        return Some(found);
    }
    match err.downcast_ref::<MiddlewareError>()? {
        MiddlewareError::Middleware(e) => e.chain().find_map(|e| find_here(e, f)),
        MiddlewareError::Reqwest(e) => f(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_circuit_breaker::{CircuitOpen, RejectedBy};
    use rampart_core::error::{Elapsed, find as core_find};
    use rampart_retry::{LastError, RetryError, policy::GiveUp};

    fn open() -> CircuitOpen {
        CircuitOpen::new(RejectedBy::Open, None)
    }

    #[test]
    fn a_wrapped_rejection_is_found_every_way_and_keeps_its_message() {
        let err = middleware_error(open());
        assert_eq!(err.to_string(), open().to_string());
        assert!(core_find::<CircuitOpen>(&err).is_some(), "std source chain");
        assert!(find::<CircuitOpen>(&err).is_some());
        let MiddlewareError::Middleware(a) = &err else {
            panic!("a middleware error")
        };
        assert!(a.downcast_ref::<CircuitOpen>().is_some(), "anyhow downcast");
    }

    #[test]
    fn found_through_a_retry_error_around_it() {
        let inner = middleware_error(open());
        let err = middleware_error(RetryError::new(
            3,
            GiveUp::AttemptsExhausted,
            LastError::Inner(inner),
        ));
        assert!(core_find::<CircuitOpen>(&err).is_some());
        assert!(find::<CircuitOpen>(&err).is_some());
        assert_eq!(
            find::<RetryError<MiddlewareError>>(&err)
                .unwrap()
                .attempts(),
            3
        );
        let timed_out = middleware_error(RetryError::<MiddlewareError>::new(
            1,
            GiveUp::AttemptsExhausted,
            LastError::TimedOut(std::time::Duration::from_secs(1)),
        ));
        assert!(find::<Elapsed>(&timed_out).is_some());
        assert!(find::<CircuitOpen>(&timed_out).is_none());
    }
}
