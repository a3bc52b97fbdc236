//! The header names rampart's layers agree on, written once.
//!
//! Plain `&str` constants, so they serve `http::HeaderName::from_static`, a `HeaderMap`
//! lookup and a `tonic` metadata key alike.

use std::time::Duration;

/// `Idempotency-Key` (IETF draft `httpapi-idempotency-key-header`), lowercase as HTTP/2 sends
/// it: the key a retry layer puts on every attempt of one logical request, the server-side
/// idempotency layer dedupes by, and a redrive sends again.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// `grpc-retry-pushback-ms` (gRFC A6): how many milliseconds the client should wait before it
/// retries; a negative or unparsable value means "do not retry". Sent by rampart's tonic
/// mapping of a rejection, read by the retry layer.
pub const GRPC_RETRY_PUSHBACK_MS: &str = "grpc-retry-pushback-ms";

/// A `Retry-After` value for `d`: whole seconds, rounded up, and at least 1 (a `0` would
/// invite a retry storm at once).
///
/// ```
/// use std::time::Duration;
/// use rampart_core::header::retry_after_secs;
///
/// assert_eq!(retry_after_secs(Duration::ZERO), 1);
/// assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
/// assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
/// ```
pub const fn retry_after_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + (d.subsec_nanos() > 0) as u64;
    if secs == 0 { 1 } else { secs }
}
