//! The response headers the layer sets: [`IDEMPOTENT_REPLAYED`] and [`IDEMPOTENCY_STORED`].
//! (The request header, `Idempotency-Key`, is rampart-core's
//! [`IDEMPOTENCY_KEY`](rampart_core::header::IDEMPOTENCY_KEY).)

use http::HeaderName;

/// The response header of a replay: `Idempotent-Replayed: true`.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The response header of a keyed request that ran but whose response was **not** stored:
/// `Idempotency-Stored: false`. A retry with the same key will run the request again.
///
/// Set when the status is not stored (5xx, `408`, `429` by default), when the response body
/// is over the store limit, when the body failed while it was being read, when the store
/// failed or the lease was lost, and when the layer failed open.
pub const IDEMPOTENCY_STORED: HeaderName = HeaderName::from_static("idempotency-stored");
