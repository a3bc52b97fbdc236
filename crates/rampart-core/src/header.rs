//! The header names rampart's layers agree on, written once.
//!
//! Plain `&str` constants, so they serve `http::HeaderName::from_static`, a `HeaderMap`
//! lookup and a `tonic` metadata key alike.

/// `Idempotency-Key` (IETF draft `httpapi-idempotency-key-header`), lowercase as HTTP/2 sends
/// it: the key a retry layer puts on every attempt of one logical request, the server-side
/// idempotency layer dedupes by, and a redrive sends again.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// `grpc-retry-pushback-ms` (gRFC A6): how many milliseconds the client should wait before it
/// retries; a negative or unparsable value means "do not retry". Sent by rampart's tonic
/// mapping of a rejection, read by the retry layer.
pub const GRPC_RETRY_PUSHBACK_MS: &str = "grpc-retry-pushback-ms";
