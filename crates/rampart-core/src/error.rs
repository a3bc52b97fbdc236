//! The shared error vocabulary.
//!
//! Every rampart rejection (an open circuit, a full bulkhead, an exhausted retry budget, …) is a
//! small typed value that callers find with [`find`], whatever layers wrapped it. Every
//! configuration mistake is a [`ConfigError`] that names the field and the allowed range.

use std::{borrow::Cow, error::Error, fmt, time::Duration};

/// A type-erased error, the error type of most tower stacks.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// A configuration value was out of range or inconsistent.
///
/// Returned by every rampart builder's `build()`; the message names the field and what it
/// allows, e.g. `invalid circuit breaker config: failure_rate_threshold must be in 0..=100 %, got 150`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    component: &'static str,
    field: &'static str,
    reason: Cow<'static, str>,
}

impl ConfigError {
    /// A new error for `field` of `component` (e.g. `"circuit breaker"`), with a reason that says
    /// what is allowed and what was given.
    pub fn new(
        component: &'static str,
        field: &'static str,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            component,
            field,
            reason: reason.into(),
        }
    }

    /// The name of the offending configuration field.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The component that was being configured.
    pub fn component(&self) -> &'static str {
        self.component
    }

    /// Why the value was refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} config: {} {}",
            self.component, self.field, self.reason
        )
    }
}

impl Error for ConfigError {}

/// An operation ran out of time: an attempt's timeout or a whole call's deadline.
///
/// Every rampart timeout is this type (or has it in its source chain), so one check finds
/// them all, e.g. to map them to `504` or `DEADLINE_EXCEEDED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Elapsed(());

impl Elapsed {
    /// The error.
    pub const fn new() -> Self {
        Self(())
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out")
    }
}

impl Error for Elapsed {}

/// A rejection made by a resilience policy rather than by the inner service.
///
/// Implemented by every rampart rejection type so that adapters (axum responses, tonic
/// `Status`, retry decisions) can treat them uniformly.
pub trait Rejection: Error + Send + Sync + 'static {
    /// How long the caller should wait before trying again, if the policy knows.
    fn retry_after(&self) -> Option<Duration>;
}

/// Finds an error of type `T` in `err` or anywhere in its [`source`](Error::source) chain.
///
/// ```
/// use rampart_core::error::{find, BoxError, ConfigError};
///
/// let err: BoxError = Box::new(ConfigError::new("demo", "field", "must be > 0"));
/// assert_eq!(find::<ConfigError>(&*err).unwrap().field(), "field");
/// assert!(find::<std::io::Error>(&*err).is_none());
/// ```
pub fn find<'a, T: Error + 'static>(err: &'a (dyn Error + 'static)) -> Option<&'a T> {
    chain(err).find_map(|e| e.downcast_ref::<T>())
}

/// `err` and then each of its [`source`](Error::source)s in turn: the one walk of an error
/// chain that [`find`], [`chain_text`] and `rejection::Rejected::find` share.
///
/// ```
/// use rampart_core::error::{chain, BoxError};
///
/// let err: BoxError = Box::new(std::io::Error::other("reset"));
/// assert_eq!(chain(&*err).count(), 1);
/// ```
pub fn chain<'a>(
    err: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |e: &&'a (dyn Error + 'static)| (*e).source())
}

/// The messages of `err` and its sources, outermost first, with the repeats dropped (a
/// wrapper that prints its source's message adds nothing): what a record or a log keeps of
/// an error.
///
/// ```
/// use rampart_core::error::chain_text;
///
/// let err = std::io::Error::other("connection reset");
/// assert_eq!(chain_text(&err), ["connection reset"]);
/// ```
pub fn chain_text(err: &(dyn Error + 'static)) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in chain(err) {
        let text = e.to_string();
        if out.last() != Some(&text) {
            out.push(text);
        }
    }
    out
}

/// `err` and each source whose message it does not already include, joined by `: ` on one
/// line: an error for a person to read (a CLI's last words, a store error's detail).
///
/// ```
/// use rampart_core::error::chain_line;
///
/// #[derive(Debug)]
/// struct Connect(std::io::Error);
/// impl std::fmt::Display for Connect {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("could not connect")
///     }
/// }
/// impl std::error::Error for Connect {
///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
///         Some(&self.0)
///     }
/// }
///
/// let err = Connect(std::io::Error::other("connection refused"));
/// assert_eq!(chain_line(&err), "could not connect: connection refused");
/// ```
pub fn chain_line(err: &(dyn Error + 'static)) -> String {
    let mut out = err.to_string();
    for e in chain(err).skip(1) {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

/// Like [`find`], for a `Send + Sync` error such as a [`BoxError`].
pub fn find_in<'a, T: Error + 'static>(
    err: &'a (dyn Error + Send + Sync + 'static),
) -> Option<&'a T> {
    find::<T>(err)
}

/// The error of a rampart service: the policy's own rejection `R`, or the inner service's error
/// `E` untouched.
///
/// Each pattern names it for its rejection (`BreakerError<E>` is `PolicyError<CircuitOpen, E>`).
/// An enum rather than a `BoxError`, so that a rejection never allocates. It is transparent for
/// inner errors (same `Display`, same `source`), and a rejection's `source` is the rejection
/// itself, so [`find`] finds it through any number of layers and boxes. To join a `BoxError`
/// stack, map with [`PolicyError::into_box`].
///
/// `PolicyError<R, E>` implements [`Error`] when `E` does. Over an inner service whose error is
/// already a [`BoxError`] (tower's `Timeout`, `Buffer`, `LoadShed`), which does not implement
/// `Error` itself, add `.map_err(PolicyError::into_box)` (e.g. with `ServiceBuilder::map_err`)
/// to get a `BoxError` stack back; axum's `HandleErrorLayer` and tonic clients want one anyway.
#[derive(Debug)]
pub enum PolicyError<R, E> {
    /// The policy rejected the call; the inner service was not called (or not to completion).
    Rejected(R),
    /// The inner service failed.
    Inner(E),
}

impl<R, E> PolicyError<R, E> {
    /// The rejection, if this is one.
    pub fn rejection(&self) -> Option<&R> {
        match self {
            PolicyError::Rejected(r) => Some(r),
            PolicyError::Inner(_) => None,
        }
    }

    /// The inner error, if this is one.
    pub fn into_inner(self) -> Option<E> {
        match self {
            PolicyError::Inner(e) => Some(e),
            PolicyError::Rejected(_) => None,
        }
    }

    /// A `BoxError`: the rejection itself (downcastable) or the inner error. Allocates only for
    /// the box, as every `BoxError` stack does.
    pub fn into_box(self) -> BoxError
    where
        R: Error + Send + Sync + 'static,
        E: Into<BoxError>,
    {
        match self {
            PolicyError::Rejected(r) => Box::new(r),
            PolicyError::Inner(e) => e.into(),
        }
    }
}

impl<R: fmt::Display, E: fmt::Display> fmt::Display for PolicyError<R, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::Rejected(r) => r.fmt(f),
            PolicyError::Inner(e) => e.fmt(f),
        }
    }
}

impl<R: Error + 'static, E: Error + 'static> Error for PolicyError<R, E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            PolicyError::Rejected(r) => Some(r),
            PolicyError::Inner(e) => e.source(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("outer")
        }
    }
    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn find_walks_the_source_chain() {
        let err: BoxError = Box::new(Outer(std::io::Error::other("inner")));
        let io = find_in::<std::io::Error>(&*err).expect("io error in chain");
        assert_eq!(io.to_string(), "inner");
        assert!(find_in::<ConfigError>(&*err).is_none());
    }

    #[test]
    fn config_error_names_field_and_range() {
        let e = ConfigError::new(
            "circuit breaker",
            "failure_rate_threshold",
            "must be in 0..=100 %, got 150",
        );
        assert_eq!(
            e.to_string(),
            "invalid circuit breaker config: failure_rate_threshold must be in 0..=100 %, got 150"
        );
        assert_eq!(e.field(), "failure_rate_threshold");
    }
}
