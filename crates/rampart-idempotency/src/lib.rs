//! Server-side idempotency for axum and any tower HTTP server: a request with an
//! `Idempotency-Key` runs once; a retry gets the stored response back.
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Router, body::Body, routing::post};
//! use http::{HeaderName, Request, StatusCode};
//! use rampart_idempotency::{IdempotencyLayer, KeyPolicy, MemoryStore};
//! use tower::ServiceExt;
//!
//! async fn create_charge(body: String) -> (StatusCode, String) {
//!     // … charge the card, once …
//!     (StatusCode::CREATED, format!("{{\"charge\":{body}}}"))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let idempotency = IdempotencyLayer::builder(Arc::new(MemoryStore::bounded(100_000)?))
//!     .name("charges")
//!     .policy(KeyPolicy::Required)                               // 400 without a key
//!     .caller_header(HeaderName::from_static("x-api-key"))      // keys are per API key
//!     .build()?;
//!
//! let app: Router = Router::new().route("/charges", post(create_charge).layer(idempotency));
//!
//! let charge = || {
//!     Request::post("/charges")
//!         .header("x-api-key", "sk_test_1")
//!         .header("idempotency-key", "order-42")
//!         .body(Body::from("{\"amount\":500}"))
//!         .unwrap()
//! };
//! let first = app.clone().oneshot(charge()).await?;
//! assert_eq!(first.status(), StatusCode::CREATED);
//!
//! // The client's retry: not run again, answered from the store.
//! let retry = app.clone().oneshot(charge()).await?;
//! assert_eq!(retry.status(), StatusCode::CREATED);
//! assert_eq!(retry.headers()["idempotent-replayed"], "true");
//! # Ok(())
//! # }
//! ```
//!
//! It follows the IETF httpapi draft *The Idempotency-Key HTTP Header Field* and Stripe's
//! semantics: the key is a client-chosen string, sent on every retry of one logical request;
//! a retry of a completed request gets the first response back, a retry while the first is
//! still running gets `409`, and the same key on a different request gets `422`.
//!
//! # Lifecycle
//!
//! For a request whose method the layer covers (`POST` and `PATCH` by default;
//! [`methods`](IdempotencyBuilder::methods)) and whose key header parses:
//!
//! 1. The body is read into memory (up to [`max_request_body`](IdempotencyBuilder::max_request_body),
//!    1 MiB by default) and the request is [fingerprinted](Fingerprint): a SHA-256 of the
//!    method, path and query, body and [chosen headers](IdempotencyBuilder::fingerprint_header).
//! 2. One store call, [`begin`](IdempotencyStore::begin), decides:
//!
//!    | the store has | the answer |
//!    |---|---|
//!    | nothing (or an expired entry) | the request takes a **lease** and runs |
//!    | a stored response, same fingerprint | the stored response, with `Idempotent-Replayed: true` |
//!    | a lease, same fingerprint | `409 Conflict` problem+json with `Retry-After` |
//!    | anything, another fingerprint | `422 Unprocessable Content` problem+json |
//!
//! 3. The handler gets the whole body (from memory) and the key in its extensions
//!    ([`IdempotencyKey`](rampart_core::key::IdempotencyKey)).
//! 4. Its response is read into memory (up to
//!    [`max_response_body`](IdempotencyBuilder::max_response_body), 1 MiB) and stored with a second store
//!    call, [`complete`](IdempotencyStore::complete), kept for the
//!    [retention](IdempotencyBuilder::retention) (24 h). Then it is sent.
//! 5. A response that is not stored releases the lease
//!    ([`release`](IdempotencyStore::release)), so that a retry runs the request again, and
//!    carries [`Idempotency-Stored: false`](IDEMPOTENCY_STORED): a status that
//!    [is not stored](IdempotencyBuilder::store_if) (5xx, `408`, `429` by default), a body over the limit
//!    (sent whole, streaming past the limit), a body that failed, a store failure.
//!
//! A replay costs one store round trip; a first execution two.
//!
//! # Keys and per-route policy
//!
//! The key is read from `Idempotency-Key` ([`header`](IdempotencyBuilder::header)), as the draft's
//! quoted string (`"abc"`) or bare (`abc`): 1 to 255 visible ASCII characters (see [`parse_key`]).
//! A malformed key, or the header sent twice, gets `400` problem+json.
//!
//! The [`KeyPolicy`] is per layer: [`Required`](KeyPolicy::Required) (`400` without a key),
//! [`Optional`](KeyPolicy::Optional) (the default: no key, no deduplication) or
//! [`Off`](KeyPolicy::Off). In axum, give each route the layer it needs with
//! `MethodRouter::layer`; layers can share one store:
//!
//! ```
//! # use std::sync::Arc;
//! # use axum::{Router, routing::post};
//! # use rampart_idempotency::{IdempotencyLayer, IdempotencyStore, KeyPolicy, MemoryStore};
//! # async fn create_charge() {}
//! # async fn create_refund() {}
//! # async fn add_note() {}
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store: Arc<dyn IdempotencyStore> = Arc::new(MemoryStore::bounded(100_000)?);
//! let required = |name: &str| IdempotencyLayer::builder(store.clone())
//!     .name(name)
//!     .policy(KeyPolicy::Required);
//!
//! let app: Router = Router::new()
//!     .route("/charges", post(create_charge).layer(required("charges").build()?))
//!     .route("/refunds", post(create_refund).layer(required("refunds").build()?))
//!     .route("/notes", post(add_note).layer(
//!         IdempotencyLayer::builder(store.clone()).name("notes").build()?, // optional
//!     ));
//! # Ok(())
//! # }
//! ```
//!
//! `Router::layer` applies one layer to every route of a router (and `route_layer` to the
//! matched ones only). A key reused on another route is a different request (its path is in
//! the fingerprint): `422`.
//!
//! # Scoping: whose key is it?
//!
//! Entries are named by the key **and the caller** ([`StoreKey`]). Tell the layer who the
//! caller is with [`caller`](IdempotencyBuilder::caller) (any function of the request head, e.g. a user
//! id an authentication layer put in the extensions) or
//! [`caller_header`](IdempotencyBuilder::caller_header) (e.g. the API key). The same key from two callers
//! then names two entries, and one caller can never replay another's response. The identity
//! is hashed before it reaches the store. A keyed request with no identity gets `400`.
//!
//! **Without a caller (the default), keys are global**: two clients that pick the same key
//! (a guessable one like `1`, or one that leaked) get each other's responses, which may hold
//! personal data. Keep the default only behind one trusted client, or with keys that are
//! random and secret.
//!
//! # What is stored, what is replayed
//!
//! The status, the headers, the body (up to the limit) and the trailers, without the
//! hop-by-hop headers (`Connection` and those it names, `Keep-Alive`, `Proxy-*`, `TE`,
//! `Trailer`, `Transfer-Encoding`, `Upgrade`), without `Set-Cookie` unless
//! [`store_set_cookie`](IdempotencyBuilder::store_set_cookie), and without any
//! [excluded header](IdempotencyBuilder::exclude_header). See [`StoredResponse`]. A replay is that
//! response plus `Idempotent-Replayed: true`.
//!
//! # Bodies
//!
//! A keyed request's body is read whole before the handler runs (that is what the
//! fingerprint needs); a body over [`max_request_body`](IdempotencyBuilder::max_request_body) gets `413`
//! problem+json: without all of it the layer could not tell a retry from a different request,
//! and would either replay the wrong response or run twice. Requests the layer does not
//! handle are not read.
//!
//! A stored response's body is read whole before it is sent, because the headers say whether
//! it was stored. Streaming responses on keyed routes (server-sent events, downloads) start
//! after up to `max_response_body` bytes were produced; larger ones then stream on, unstored.
//!
//! Request and response bodies must be `Unpin` (axum's, hyper's and http-body-util's are).
//!
//! # Crashes and cancellation
//!
//! A lease expires after its [TTL](IdempotencyBuilder::lease_ttl) (60 s by default): a request whose
//! server crashed blocks its key (with `409`s) at most that long, then a retry runs it again.
//! A request still running when its lease expires can be run a second time by a retry, and
//! its own response is then not stored: make the TTL longer than your request timeout.
//!
//! When a keyed request's future is dropped while its handler runs (hyper drops it when the
//! client disconnects; a timeout outside this layer drops it too), its lease is released at
//! once, so the client's retry runs the request instead of waiting out the TTL. Once the
//! handler has returned, its work is done and a cancel no longer releases anything: the
//! response is read and stored by a task of its own (spawned on the current tokio runtime),
//! which goes on when the request's future is dropped, for at most the lease TTL. Meanwhile a
//! retry gets `409`; once stored, the stored response. (A task is spawned only for a
//! response not stored at once: a body still streaming, a networked store. Without a runtime
//! the layer stores on the request's own future, and a cancel then leaves the lease to its
//! TTL.) A handler cancelled halfway may have done part of its work; if a retry must not redo it, use
//! [`release_on_cancel(false)`](IdempotencyBuilder::release_on_cancel) (the lease then holds until its
//! TTL), or make the work transactional. With a networked store, a request cancelled while its
//! `begin` is on the wire may have taken a lease it never learns of: that lease expires after
//! its TTL. A release of a request cancelled after its `complete` reached the store is a no-op
//! (a completed entry is never released).
//!
//! # Stores
//!
//! - [`MemoryStore`]: in process, bounded in entries and bytes, with TTLs; evicts the oldest
//!   *completed* entries when full and never an in-flight lease (a store full of leases
//!   answers `503`).
//! - Redis (`rampart-redis`): shared by every replica.
//! - Your own: implement [`IdempotencyStore`] (three atomic operations) and run the
//!   conformance suite (`conformance::run`, feature `test-util`) against it.
//!
//! # When the store fails
//!
//! By default the layer **fails closed**: a keyed request whose `begin` fails gets `503`
//! problem+json with `Retry-After`, and does not run. No request ever runs twice because the
//! store was down. [`StoreFailure::FailOpen`] runs it instead, without deduplication (logged
//! at `warn`, counted as `unprotected`, answered with `Idempotency-Stored: false`). A full
//! store is overload and always gets `503`.
//!
//! If `complete` fails after the request ran, the response is still sent (with
//! `Idempotency-Stored: false`) and the lease is released: a retry will run the request again.
//! If `release` fails, the lease expires after its TTL.
//!
//! # Problem responses
//!
//! Every refusal is an RFC 9457 `application/problem+json` body (`type`, `title`, `status`,
//! `detail`) with `Cache-Control: no-store`; see [`IdempotencyProblem`]. The `type` is
//! [`problem_type_base`](IdempotencyBuilder::problem_type_base) + the slug:
//!
//! | status | slug | when |
//! |---|---|---|
//! | 400 | `idempotency-key-missing` | the route requires a key |
//! | 400 | `idempotency-key-invalid` | malformed key, or the header twice |
//! | 400 | `caller-unidentified` | a caller function found no identity |
//! | 400 | `request-body-unreadable` | the request body failed while read |
//! | 413 | `request-body-too-large` | body over `max_request_body` |
//! | 409 | `idempotency-key-in-use` | the key's first request is still running (`Retry-After`) |
//! | 422 | `idempotency-key-reused` | the key was used for a different request |
//! | 503 | `idempotency-unavailable` | the store failed (fail closed) or is full (`Retry-After`) |
//!
//! # Observability
//!
//! Every response of a keyed request carries an [`IdempotencyOutcome`] in its extensions. `tracing`
//! events (target `rampart::idempotency`): `debug` for each decision (replayed, conflict,
//! mismatch, refused, executed), `warn` for store failures and lost leases. Metrics, through
//! the `metrics` facade:
//!
//! | name | labels | what |
//! |---|---|---|
//! | `rampart_idempotency_requests_total` | `name`, `outcome` | requests the layer handled: `outcome` = `executed`, `replayed`, `conflict`, `mismatch`, `bad_key`, `missing_key`, `no_key` (optional route, no key: passed through), `no_caller`, `body_too_large`, `body_unreadable`, `unavailable`, `unprotected` |
//! | `rampart_idempotency_not_stored_total` | `name`, `reason` | executed requests not stored: `status`, `too_large`, `body_error`, `error` (the handler failed), `store_error`, `lease_lost`, `cancelled` |
//! | `rampart_idempotency_memory_evictions_total` | | completed entries a full [`MemoryStore`] evicted early |
//!
//! # Where it goes in a stack
//!
//! - **Inside authentication**, so that unauthenticated requests never take a lease, and a
//!   caller function can read the identity it set.
//! - **Inside compression** (tower-http's `CompressionLayer` outside this layer): the stored
//!   body is then the uncompressed one, and each replay is encoded for the client asking.
//!   With compression inside, a response encoded for one client's `Accept-Encoding` would be
//!   replayed to another.
//! - Outside rate limiting and load shedding is fine: their `429`/`503` are not stored.
//!
//! # Trade-offs
//!
//! - Exactly-once *effect* holds for retries that arrive while the entry lives: within the
//!   retention, and while the store keeps it (see eviction). Beyond that a retry runs again.
//! - Each in-flight keyed request holds its body in memory, and its response before sending.
//! - A stored response is what the first caller got: a replay days later shows the state of
//!   then (that is the point), including its `Date` if the handler set one.
//! - The fingerprint covers the bytes of the body: a client that re-serialises its JSON
//!   differently on a retry gets `422`. Send the same bytes.
//! - Requests the layer does not handle (other methods, no key on an optional route) cost one
//!   method check and a header lookup; keyed ones a body read, a SHA-256, a boxed future and
//!   the store's round trips (see the `idempotency` bench).
//!
//! # The two halves of the protocol
//!
//! As tower-http pairs setting a request id with propagating it, this crate holds both ends
//! of `Idempotency-Key`:
//!
//! | feature | half | layer |
//! |---|---|---|
//! | `server` (default) | dedupe by key, replay the stored response | [`IdempotencyLayer`] |
//! | `client` (default) | one key per logical request, outside the retries | [`IdempotencyKeyLayer`] |
//!
//! A client stack puts the key layer outermost (`ServiceBuilderExt::idempotency_keys` in the
//! `rampart` facade), so that every retry and every redrive of one request carries one key, and
//! the server's layer runs the work once.

#[cfg(feature = "client")]
mod client;
#[cfg(feature = "server")]
mod config;
#[cfg(feature = "server")]
mod fingerprint;
#[cfg(feature = "server")]
mod future;
#[cfg(feature = "server")]
mod headers;
#[cfg(feature = "server")]
mod key;
#[cfg(feature = "server")]
mod layer;
#[cfg(feature = "server")]
mod memory;
#[cfg(feature = "server")]
mod outcome;
#[cfg(feature = "server")]
mod response;
#[cfg(feature = "server")]
mod service;
#[cfg(feature = "server")]
mod store;

#[cfg(all(feature = "server", any(test, feature = "test-util")))]
pub mod conformance;

#[cfg(feature = "client")]
pub use client::{IdempotencyKeyLayer, KeyKind, MakeKey, SetIdempotencyKey, Sha256Key};
#[cfg(feature = "server")]
pub use config::{MAX_BODY_LIMIT, PROBLEM_TYPE_BASE, StoreFailure, default_store_if};
#[cfg(feature = "server")]
pub use fingerprint::Fingerprint;
#[cfg(feature = "server")]
pub use future::ResponseFuture;
#[cfg(feature = "server")]
pub use headers::{IDEMPOTENCY_STORED, IDEMPOTENT_REPLAYED};
#[cfg(feature = "server")]
pub use key::{KeyError, KeyPolicy, MAX_KEY_LEN, parse_key};
#[cfg(feature = "server")]
pub use layer::{IdempotencyBuilder, IdempotencyLayer};
#[cfg(feature = "server")]
pub use memory::{MemoryStats, MemoryStore, MemoryStoreBuilder};
#[cfg(feature = "server")]
pub use outcome::{IdempotencyOutcome, IdempotencyProblem};
#[cfg(feature = "server")]
pub use response::{DecodeError, StoredResponse};
#[cfg(feature = "server")]
pub use service::Idempotency;
#[cfg(feature = "server")]
pub use store::{
    Begin, BoxFuture, IdempotencyStore, Lease, LeaseToken, StoreError, StoreErrorKind, StoreKey,
};
