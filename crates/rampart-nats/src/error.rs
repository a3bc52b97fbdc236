//! How NATS failures become [`StoreError`]s, and URLs made safe to show.

use std::time::Duration;

use async_nats::{ConnectError, ConnectErrorKind};
use rampart_core::error::chain_line;
use rampart_dead_letter::{StoreError, StoreErrorKind};

/// The kind of a NATS failure during an operation, read from its message (async-nats reports
/// the server's JetStream errors as text in a chain of sources): a bucket over its byte limit
/// or a server out of storage is [`StoreErrorKind::Full`]; everything else (a timeout, no
/// connection, no JetStream answering) is [`StoreErrorKind::Unavailable`].
pub(crate) fn kind_of(err: &(dyn std::error::Error + 'static)) -> StoreErrorKind {
    let text = chain_line(err).to_lowercase();
    if [
        "maximum bytes exceeded",
        "maximum messages exceeded",
        "insufficient resources",
        "insufficient storage",
    ]
    .iter()
    .any(|s| text.contains(s))
    {
        StoreErrorKind::Full
    } else {
        StoreErrorKind::Unavailable
    }
}

/// The store error for a failed operation.
pub(crate) fn from_nats(
    store: &str,
    what: &str,
    err: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    StoreError::new(store, kind_of(&err)).with_source(format!("{what}: {}", chain_line(&err)))
}

/// The store error for a failed connection: a URL or credentials that are wrong are
/// [`StoreErrorKind::Config`]; a server that does not answer is
/// [`StoreErrorKind::Unavailable`].
pub(crate) fn from_connect(store: &str, err: ConnectError) -> StoreError {
    let kind = match err.kind() {
        ConnectErrorKind::ServerParse
        | ConnectErrorKind::Authentication
        | ConnectErrorKind::AuthorizationViolation
        | ConnectErrorKind::Tls => StoreErrorKind::Config,
        _ => StoreErrorKind::Unavailable,
    };
    StoreError::new(store, kind).with_source(format!("connect: {}", chain_line(&err)))
}

/// No answer within `limit`.
pub(crate) fn timed_out(store: &str, what: &str, limit: Duration) -> StoreError {
    StoreError::new(store, StoreErrorKind::Unavailable)
        .with_source(format!("{what}: no answer within {limit:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_is_full_and_a_timeout_unavailable() {
        let full = std::io::Error::other("nats: maximum bytes exceeded");
        assert_eq!(kind_of(&full), StoreErrorKind::Full);
        let slow = std::io::Error::other("timed out");
        assert_eq!(kind_of(&slow), StoreErrorKind::Unavailable);
    }
}
