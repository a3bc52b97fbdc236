//! Dead letters for tower: a request that finally fails is parked in a durable store, where
//! it can be inspected and redriven. Nothing is lost.
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use rampart_core::body::ReplayBody;
//! use rampart_dead_letter::{DeadLetterLayer, DeadLetterStore, MemoryStore, Filter, Query, DEAD_LETTER_ID};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = Arc::new(MemoryStore::bounded(10_000).unwrap());
//! let client = ServiceBuilder::new()
//!     .layer(DeadLetterLayer::builder("billing", store.clone()).build().unwrap())
//!     // … retries, breaker, bulkhead, then the transport; here an upstream that is down:
//!     .service(service_fn(|_req: http::Request<ReplayBody<Full<Bytes>>>| async {
//!         let mut res = http::Response::new(Full::new(Bytes::new()));
//!         *res.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
//!         Ok::<_, std::convert::Infallible>(res)
//!     }));
//!
//! let req = http::Request::post("http://billing.internal/charge")
//!     .header("idempotency-key", "order-42")
//!     .body(Full::new(Bytes::from_static(b"{\"amount\":5}")))
//!     .unwrap();
//! let res = client.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 503);
//!
//! // The failure was parked, and the response says as what.
//! let parked = store.list(&Query::new(Filter::all(), 10)).await.unwrap();
//! assert_eq!(res.headers()[DEAD_LETTER_ID], parked[0].id.to_string().as_str());
//! assert_eq!(parked[0].idempotency_key.as_deref(), Some("order-42"));
//! # }
//! ```
//!
//! - [`DeadLetterLayer`]: parks final failures, and answers with the failure annotated
//!   ([`ReturnFailure`], the default) or `202 Accepted` ([`AcceptForLater`]). Which failures
//!   are parked: [`ParkOn`], [`DeadLetterClassifier`] and [`error_kind`].
//! - [`DeadLetter`]: the record, in a versioned JSON format (see [its format](DeadLetter#format-version-1)).
//! - [`DeadLetterStore`]: where records are kept; [`MemoryStore`] (bounded, not durable), the
//!   embedded [`SqliteStore`] (feature `sqlite`, on by default: one SQLite file readable with
//!   `sqlite3`, fsynced, with group commit; see [`SqliteStore`]), Redis Streams in `rampart-redis`
//!   and NATS JetStream in `rampart-nats`.
//! - [`Redrive`]: sends parked requests again, paced, with their original idempotency key.
//! - The `rampart` CLI (crate `rampart-cli`): `rampart dlq list|show|stats|redrive|purge`.
//!
//! # Where it goes in a stack
//!
//! Outermost, with the idempotency key set outside it (the whole stack is the workspace's one
//! [recommended client stack](https://github.com/rampart-rs/rampart#the-recommended-client-stack) table):
//!
//! - Outside the retries, so that only a request every attempt failed is parked, once, with
//!   the number of attempts (a rampart retry inside notes them in an
//!   [`AttemptCounter`](rampart_core::attempt::AttemptCounter) the layer puts in the request).
//! - Inside the key layer, so that the record holds the key every attempt carried, and a
//!   redrive sends it again: a server-side idempotency layer then runs the work at most once.
//!   A key injected inside this layer is not seen by it.
//! - Outside the breaker and the bulkhead, so that their rejections are parked too (as
//!   `circuit_open` and `bulkhead_full`).
//!
//! # When the store fails
//!
//! A [`secondary`](DeadLetterBuilder::secondary) store takes the record when the primary fails (logged
//! at `warn`, counted in `rampart_dead_letter_fallbacks_total`). If that fails too, the caller
//! gets a [`ParkFailed`] error carrying the original failure and every store's error. A
//! failure is never dropped silently.
//!
//! A primary append that timed out may have landed all the same, and the secondary then keeps
//! a second copy (labelled [`FALLBACK_FROM`]). Redrive the secondary with
//! [`RedriveBuilder::primary`] set: a copy the primary also holds is removed instead of sent,
//! so the request goes out once.
//!
//! # Secrets
//!
//! A record is kept at rest, possibly for days, and read by people: nothing in it should let
//! them (or whoever reads the store) call the service as the caller. By default
//! ([`rampart_core::redact`], the same rules in the layer, [`Parker`], the logs and the CLI):
//!
//! - Credential headers are withheld (`"[redacted]"`, and not resent by a redrive):
//!   `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`, `X-Api-Key`, `Api-Key`,
//!   `X-Auth-Token`, `X-Amz-Security-Token`, `X-Goog-Api-Key`, … and any header whose name
//!   holds `token`, `secret`, `password`, `session`, `credential` or `signature`. Add names with
//!   [`redact`](DeadLetterBuilder::redact); record one anyway with [`keep_header`](DeadLetterBuilder::keep_header).
//! - The URI loses its user info (`user:pass@`, which reqwest keeps in a URL) and its
//!   fragment, and every query value is masked, its key kept (`?token=[redacted]&page=2`):
//!   API keys, tokens and presigned signatures travel in queries. Keep the values of harmless
//!   keys with [`keep_query`](DeadLetterBuilder::keep_query) (or all with
//!   [`keep_query_values`](DeadLetterBuilder::keep_query_values)). **A record whose query was masked
//!   cannot be redriven** (its URI is not the one sent; [`Redrive`] gives it up at once and
//!   says why): keep the keys your requests need.
//! - Error texts lose the user info and query values of every URL they quote (transport
//!   errors quote the URL).
//! - Log lines name a request by its path only.
//!
//! What is not covered: secrets in the path (`/hooks/T000/B000/XXXX`) or in the body. A body
//! is recorded as sent, so that it can be resent; keep secret-bearing bodies out of the store
//! with [`max_body`](DeadLetterBuilder::max_body)`(0)` (such records cannot be redriven) or a store you
//! protect as you protect the secrets.
//!
//! # Costs
//!
//! On every request, failing or not, the layer reads the body into memory up to
//! [`max_body`](DeadLetterBuilder::max_body) (64 KiB) and keeps a copy of the request head (method, URI,
//! headers) until the response: that is what lets it record a request that has already been
//! consumed. Recording, redaction, hashing and the store write happen only for a request that
//! failed.
//!
//! # Metrics
//!
//! | name | labels | what |
//! |---|---|---|
//! | `rampart_dead_letter_parked_total` | `name` (the layer's service), `kind` | records stored |
//! | `rampart_dead_letter_fallbacks_total` | `name`, `kind` | records the secondary store took |
//! | `rampart_dead_letter_park_failures_total` | `name`, `kind` | failures no store kept |
//! | `rampart_dead_letter_redriven_total` | `outcome` | redrives: `delivered`, `failed`, `given_up`, `rejected` (refused by a layer of the redrive's own service, released untouched), `error` (the store failed for the record, or the service panicked) |

mod answer;
mod body;
mod drain;
mod error;
mod errors;
mod head;
mod kind;
mod layer;
mod memory;
mod park;
mod record;
mod redrive;
mod service;
mod shared;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store;
mod write_failures;

#[cfg(any(test, feature = "test-util"))]
pub mod conformance;

pub use answer::{AcceptForLater, DEAD_LETTER_ID, OnParked, ParkedAs, ReturnFailure};
pub use body::DeadLetterBody;
pub use drain::{DEFAULT_POLL_INTERVAL, Drain, DrainBuilder, DrainHandle, DrainState, DrainStats};
pub use error::{FailedResponse, ParkFailed, Parked};
pub use errors::{ErrorCount, normalise_error, top_errors};
pub use kind::{DeadLetterClassifier, ParkOn, error_kind};
pub use layer::{DeadLetterBuilder, DeadLetterLayer, MAX_BODY_LIMIT};
pub use memory::MemoryStore;
pub use park::Parker;
/// The boxed, `Send` future a [`DeadLetterStore`]'s methods return (rampart-core's, for
/// implementing a store without depending on rampart-core).
pub use rampart_core::BoxFuture;
pub use record::{
    DeadLetter, DeadLetterId, Failure, Header, Lease, ParkReason, ParseIdError, Payload,
    RecordError, RecordedBody, State, Target, UnknownName, system_time_from_millis, unix_millis,
};
pub use redrive::{AnswerBody, RedriveService};
pub use redrive::{
    DEFAULT_LEASE, Progress, Redrive, RedriveBuilder, RedriveOutcome, Skip, Summary, rebuild,
};
pub use service::{DeadLetterService, ResponseFuture};
pub use shared::{FALLBACK_FROM, Final};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteStore, SqliteStoreBuilder};
pub use store::{DeadLetterStore, Filter, Query, Stats, StoreError, StoreErrorKind};
pub use write_failures::{WriteFailure, WriteFailures};
