//! How Redis failures become store errors ([`classify`], then each store's kinds), and URLs
//! made safe to show.

#[cfg(feature = "dead-letter")]
use std::time::Duration;

#[cfg(feature = "dead-letter")]
use rampart_dead_letter::{StoreError, StoreErrorKind};
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// What a Redis error means, whatever the store that met it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// A bad URL or setting, refused credentials, a missing permission.
    Config,
    /// Redis is out of memory (`maxmemory` with `noeviction`).
    OutOfMemory,
    /// A key holds another type than the store's.
    WrongType,
    /// Anything else: a connection refused or dropped, a server loading, a read-only replica.
    Unavailable,
}

/// Sorts `err` into a [`Class`].
pub(crate) fn classify(err: &RedisError) -> Class {
    let code = err.code();
    match err.kind() {
        ErrorKind::InvalidClientConfig
        | ErrorKind::AuthenticationFailed
        | ErrorKind::Server(ServerErrorKind::NoPerm) => Class::Config,
        _ if code == Some("OOM") => Class::OutOfMemory,
        _ if code == Some("WRONGTYPE") => Class::WrongType,
        _ if matches!(code, Some("NOAUTH" | "WRONGPASS")) => Class::Config,
        // A script's error carries the failed command's message.
        _ if err.to_string().contains("OOM command not allowed") => Class::OutOfMemory,
        _ if err.to_string().contains("WRONGTYPE") => Class::WrongType,
        _ => Class::Unavailable,
    }
}

#[cfg(feature = "dead-letter")]
/// The store error for a Redis error: a bad URL, refused credentials or a key of another type
/// are [`StoreErrorKind::Config`]; Redis out of memory (`maxmemory`) is
/// [`StoreErrorKind::Full`]; anything else (a connection refused or dropped, a server loading,
/// a read-only replica) is [`StoreErrorKind::Unavailable`].
pub(crate) fn from_redis(store: &str, err: RedisError) -> StoreError {
    let kind = match classify(&err) {
        Class::Config | Class::WrongType => StoreErrorKind::Config,
        Class::OutOfMemory => StoreErrorKind::Full,
        Class::Unavailable => StoreErrorKind::Unavailable,
    };
    StoreError::new(store, kind).with_source(err)
}

#[cfg(feature = "dead-letter")]
/// No answer within `limit`.
pub(crate) fn timed_out(store: &str, what: &str, limit: Duration) -> StoreError {
    StoreError::new(store, StoreErrorKind::Unavailable)
        .with_source(format!("{what}: no answer within {limit:?}"))
}

#[cfg(feature = "dead-letter")]
/// A reply that is not what the scripts return: another program changed the keys.
pub(crate) fn unexpected(store: &str, what: impl Into<String>) -> StoreError {
    StoreError::new(store, StoreErrorKind::Corrupt).with_source(what.into())
}

#[cfg(all(test, feature = "dead-letter"))]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_is_full_and_a_refused_connection_unavailable() {
        let oom = RedisError::from((
            ErrorKind::Extension,
            "OOM command not allowed when used memory > 'maxmemory'.",
        ));
        assert_eq!(from_redis("s", oom).kind(), StoreErrorKind::Full);
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(from_redis("s", io).kind(), StoreErrorKind::Unavailable);
        let cfg = RedisError::from((ErrorKind::InvalidClientConfig, "Redis URL did not parse"));
        assert_eq!(from_redis("s", cfg).kind(), StoreErrorKind::Config);
        let wrong = RedisError::from((
            ErrorKind::Extension,
            "WRONGTYPE Operation against a key holding the wrong kind of value script: 1f2e",
        ));
        assert_eq!(classify(&wrong), Class::WrongType);
        assert_eq!(from_redis("s", wrong).kind(), StoreErrorKind::Config);
    }
}
