//! Errors by kind: a request the client could not even send (a programmer's error) is fatal,
//! everything the network or the server did is transient.

use std::{
    any::Any,
    error::Error,
    fmt::{self, Write as _},
    io,
};

use super::FailureKind;

/// The kind of failure an error is: [`Fatal`](FailureKind::Fatal) when it says that the
/// request itself is wrong, so that sending it again cannot help; otherwise
/// [`Transient`](FailureKind::Transient).
///
/// This is the rule [`ResultClassifier`](super::ResultClassifier) and
/// [`HttpClassifier`](super::HttpClassifier) judge a service's errors by. `E` is the service's
/// error type: the rule sees inside it when it is one of
///
/// - a boxed error (`Box<dyn Error + Send + Sync>`, tower's `BoxError`; also without `Sync`
///   or `Send`), whatever it holds;
/// - `std::io::Error`, `http::Error` and `http::uri::InvalidUri`;
/// - `hyper::Error` (with this crate's `hyper` feature) and hyper-util's legacy client error
///   (with `hyper-util`);
///
/// and otherwise, not knowing the type, counts the error as transient (what every error
/// counted as before). For an error type of your own, call [`failure_kind_of_error`] from a
/// [`classify_fn`](super::classify_fn).
///
/// ```
/// use rampart_core::classify::{FailureKind, failure_kind_of};
///
/// type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// let bad_uri: BoxError = "http://exa mple".parse::<http::Uri>().unwrap_err().into();
/// assert_eq!(failure_kind_of(&bad_uri), FailureKind::Fatal);
///
/// let refused: BoxError = std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into();
/// assert_eq!(failure_kind_of(&refused), FailureKind::Transient);
/// ```
pub fn failure_kind_of<E: 'static>(err: &E) -> FailureKind {
    as_error(err).map_or(FailureKind::Transient, failure_kind_of_error)
}

/// The kind of failure `err` is, judged by the errors of its [`source`](Error::source) chain,
/// outermost first; the first that tells decides:
///
/// | error | kind |
/// |---|---|
/// | `io::Error` of kind `InvalidInput` or `Unsupported` | fatal |
/// | any other `io::Error` (refused, reset, timed out, unexpected end, …) | transient |
/// | `http::Error`, or an invalid URI, URI parts, header name or value, method or status code | fatal: a request that could not be built |
/// | hyper: a CONNECT request with a body, an upgrade that was never set up, an unexpected header | fatal: misuse of the protocol |
/// | hyper-util's legacy client: a request it refuses (`UserAbsoluteUriRequired`, `UserUnsupportedVersion`, `UserUnsupportedRequestMethod`) or a URL its connector refuses (scheme missing or not `http`, host missing) | fatal |
/// | a chain where none of these tells | transient |
///
/// hyper's and hyper-util's errors are opaque types, recognised here by their messages (what
/// their `Display` writes, read without allocating), so this crate depends on neither; the
/// workspace's tests send such requests through the real clients, so a release that changes a
/// message is caught there. An error recognised this way counts as transient again, the safe
/// side, until the rule follows.
pub fn failure_kind_of_error(err: &(dyn Error + 'static)) -> FailureKind {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(kind) = kind_here(e) {
            return kind;
        }
        next = e.source();
    }
    FailureKind::Transient
}

/// The error inside `err`, for the types [`failure_kind_of`] knows.
fn as_error<E: 'static>(err: &E) -> Option<&(dyn Error + 'static)> {
    let any = err as &dyn Any;
    if let Some(e) = any.downcast_ref::<Box<dyn Error + Send + Sync>>() {
        return Some(&**e);
    }
    if let Some(e) = any.downcast_ref::<Box<dyn Error + Send>>() {
        return Some(&**e);
    }
    if let Some(e) = any.downcast_ref::<Box<dyn Error>>() {
        return Some(&**e);
    }
    if let Some(e) = any.downcast_ref::<io::Error>() {
        return Some(e);
    }
    #[cfg(feature = "http")]
    {
        if let Some(e) = any.downcast_ref::<http::Error>() {
            return Some(e);
        }
        if let Some(e) = any.downcast_ref::<http::uri::InvalidUri>() {
            return Some(e);
        }
    }
    #[cfg(feature = "hyper")]
    if let Some(e) = any.downcast_ref::<hyper::Error>() {
        return Some(e);
    }
    #[cfg(feature = "hyper-util")]
    if let Some(e) = any.downcast_ref::<hyper_util::client::legacy::Error>() {
        return Some(e);
    }
    None
}

/// What `e` itself says, if anything.
fn kind_here(e: &(dyn Error + 'static)) -> Option<FailureKind> {
    if let Some(io) = e.downcast_ref::<io::Error>() {
        return Some(match io.kind() {
            io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported => FailureKind::Fatal,
            _ => FailureKind::Transient,
        });
    }
    #[cfg(feature = "http")]
    if e.is::<http::Error>()
        || e.is::<http::uri::InvalidUri>()
        || e.is::<http::uri::InvalidUriParts>()
        || e.is::<http::header::InvalidHeaderName>()
        || e.is::<http::header::InvalidHeaderValue>()
        || e.is::<http::method::InvalidMethod>()
        || e.is::<http::status::InvalidStatusCode>()
    {
        return Some(FailureKind::Fatal);
    }
    if FATAL_MESSAGES
        .iter()
        .any(|prefix| display_starts_with(e, prefix))
    {
        return Some(FailureKind::Fatal);
    }
    None
}

/// The messages of hyper's and hyper-util's errors that say the request was wrong (see
/// [`failure_kind_of_error`]): matched as prefixes of what the error displays.
const FATAL_MESSAGES: &[&str] = &[
    // hyper-util's legacy client: `client error (UserAbsoluteUriRequired)` and its siblings.
    "client error (User",
    // hyper-util's `HttpConnector`: scheme missing or not http, host missing.
    "invalid URL, ",
    // hyper (`Kind::User`): protocol misuse. Not `dispatch task is gone` or `user body write
    // aborted`, which are about the connection, nor the errors of the caller's own body or
    // service, which their source (in the chain) judges.
    "user sent CONNECT request with non-zero body",
    "user sent unexpected header",
    "no upgrade available",
    "upgrade expected but low level API in use",
];

/// Whether `e` displays as something starting with `prefix`; stops writing as soon as it knows.
fn display_starts_with(e: &dyn fmt::Display, prefix: &str) -> bool {
    struct Prefix<'a> {
        rest: &'a [u8],
        matched: bool,
    }
    impl fmt::Write for Prefix<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let n = s.len().min(self.rest.len());
            if s.as_bytes()[..n] != self.rest[..n] {
                return Err(fmt::Error);
            }
            self.rest = &self.rest[n..];
            if self.rest.is_empty() {
                self.matched = true;
                // Known: no need to hear the rest.
                return Err(fmt::Error);
            }
            Ok(())
        }
    }
    let mut w = Prefix {
        rest: prefix.as_bytes(),
        matched: false,
    };
    let _ = write!(w, "{e}");
    w.matched
}

#[cfg(test)]
mod tests {
    use super::*;

    type BoxError = Box<dyn Error + Send + Sync>;

    #[derive(Debug)]
    struct Wrapper(&'static str, Option<BoxError>);

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    fn boxed(e: impl Error + Send + Sync + 'static) -> BoxError {
        Box::new(e)
    }

    #[test]
    fn io_errors_by_kind() {
        for (kind, expected) in [
            (io::ErrorKind::ConnectionRefused, FailureKind::Transient),
            (io::ErrorKind::ConnectionReset, FailureKind::Transient),
            (io::ErrorKind::TimedOut, FailureKind::Transient),
            (io::ErrorKind::UnexpectedEof, FailureKind::Transient),
            (io::ErrorKind::InvalidInput, FailureKind::Fatal),
            (io::ErrorKind::Unsupported, FailureKind::Fatal),
        ] {
            let err = io::Error::from(kind);
            assert_eq!(failure_kind_of(&err), expected, "{kind:?}");
            assert_eq!(failure_kind_of(&boxed(err)), expected, "boxed {kind:?}");
        }
    }

    #[cfg(feature = "http")]
    #[test]
    fn a_request_that_could_not_be_built_is_fatal() {
        let invalid_uri = "http://exa mple".parse::<http::Uri>().unwrap_err();
        assert_eq!(failure_kind_of(&invalid_uri), FailureKind::Fatal);
        let builder = http::Request::builder()
            .header("bad\nname", "v")
            .body(())
            .unwrap_err();
        assert_eq!(failure_kind_of(&boxed(builder)), FailureKind::Fatal);
        let header = http::HeaderValue::from_bytes(b"\n").unwrap_err();
        assert_eq!(failure_kind_of(&boxed(header)), FailureKind::Fatal);
    }

    #[test]
    fn the_chain_is_read_outermost_first() {
        // A wrapper that says nothing, over a refused connection: transient.
        let refused = Wrapper(
            "request failed",
            Some(boxed(io::Error::from(io::ErrorKind::ConnectionRefused))),
        );
        assert_eq!(failure_kind_of(&boxed(refused)), FailureKind::Transient);
        // hyper-util's connector refusing a URL, under its client's error.
        let no_scheme = Wrapper(
            "client error (Connect)",
            Some(boxed(Wrapper("invalid URL, scheme is missing", None))),
        );
        assert_eq!(failure_kind_of(&boxed(no_scheme)), FailureKind::Fatal);
        let absolute = Wrapper("client error (UserAbsoluteUriRequired)", None);
        assert_eq!(failure_kind_of(&boxed(absolute)), FailureKind::Fatal);
        // The connection task gone is not the request's fault.
        let gone = Wrapper("dispatch task is gone", None);
        assert_eq!(failure_kind_of(&boxed(gone)), FailureKind::Transient);
    }

    #[test]
    fn an_error_type_it_does_not_know_is_transient() {
        #[derive(Debug)]
        struct Mine;
        assert_eq!(failure_kind_of(&Mine), FailureKind::Transient);
        assert_eq!(failure_kind_of(&"invalid URL, no"), FailureKind::Transient);
    }

    #[test]
    fn a_prefix_is_matched_across_writes_and_never_beyond_the_message() {
        struct Pieces;
        impl fmt::Display for Pieces {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("inv")?;
                f.write_str("alid URL")?;
                f.write_str(", host is missing")
            }
        }
        assert!(display_starts_with(&Pieces, "invalid URL, "));
        assert!(!display_starts_with(
            &Pieces,
            "invalid URL, host is missing!"
        ));
        assert!(!display_starts_with(&Pieces, "valid"));
        assert!(display_starts_with(&Pieces, ""));
    }
}
