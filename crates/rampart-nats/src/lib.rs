//! NATS backends for rampart (nats-server 2.9 or later, started with JetStream:
//! `nats-server -js`): [`NatsDeadLetterStore`], a
//! [`DeadLetterStore`](rampart_dead_letter::DeadLetterStore) on a JetStream key-value bucket,
//! and [`NatsBreakerState`], circuit-breaker state every replica shares (rampart-circuit-breaker's
//! [`SharedBreakers`](rampart_circuit_breaker::shared::SharedBreakers), watched, not polled: see
//! its [layout](NatsBreakerState#layout)).
//!
//! ```no_run
//! use rampart_dead_letter::{DeadLetterStore, Filter, Query, State};
//! use rampart_nats::NatsDeadLetterStore;
//!
//! # async fn demo() -> Result<(), rampart_dead_letter::StoreError> {
//! let store = NatsDeadLetterStore::builder("nats://127.0.0.1:4222")
//!     .bucket("billing_dlq")
//!     .connect()
//!     .await?;
//! println!("{} waiting", store.stats().await?.backlog());
//! for record in store.list(&Query::new(Filter::all().state(State::Pending), 50)).await? {
//!     println!("{} {} {}", record.id, record.target.method, record.target.uri);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! The records live in a key-value bucket (default `rampart_dlq`), which is the JetStream
//! stream `KV_<bucket>` with file storage, created on first connect: key = the record id,
//! value = the record's JSON ([format](rampart_dead_letter::DeadLetter#format-version-1)), one revision kept per
//! key. Read it with the `nats` CLI: `nats kv ls rampart_dlq`, `nats kv get rampart_dlq <id>`.
//!
//! - `append` creates the key: it fails if the key exists, which is
//!   [`Conflict`](rampart_dead_letter::StoreErrorKind::Conflict) (JetStream checks this
//!   atomically, with an expected last sequence of 0 for the subject).
//! - `update` writes a new revision only if the record is still at the revision just read, so
//!   it never brings back a record deleted meanwhile; an absent key is
//!   [`NotFound`](rampart_dead_letter::StoreErrorKind::NotFound).
//! - `delete` and `purge` remove the key's messages from the stream (a stream purge by
//!   subject), so no delete markers pile up.
//! - `list` reads every key (a headers-only pass), sorts them (ids are UUID v7, so sorting
//!   them sorts by id), and reads the page's records concurrently. `stats` and `purge` make one
//!   pass over every record. A key-value bucket has no ordered index: these cost O(records in
//!   the bucket) per call, fine for a dead-letter queue of thousands or tens of thousands of
//!   records. For larger backlogs prefer the Redis store, whose pages and counts do not grow
//!   with the backlog.
//!
//! Why a key-value bucket rather than a plain stream with one message per record: the bucket
//! gives O(1) `get` by id (direct get of the last message on the key's subject), a
//! compare-and-set `create`/`update`, and exactly one current version per record; a plain
//! stream would need an index of its own to find a record and to replace it.
//!
//! # A feed for workers
//!
//! Every `append` and `update` is a message on `$KV.<bucket>.<id>`
//! ([`subject`](NatsDeadLetterStore::subject)), so a JetStream consumer of the bucket's stream
//! (filter `$KV.<bucket>.>`, e.g. `nats kv watch rampart_dlq`) follows new and changed dead
//! letters; a consumer should `get` the record for its current version.
//!
//! # Durability
//!
//! `append` returns `Ok` once JetStream acknowledged the publish: the record is written to
//! the stream's file storage on the server (on a majority of the servers with
//! [`replicas`](NatsDeadLetterStoreBuilder::replicas) 3). nats-server flushes its files to disk
//! every two minutes by default (`sync_interval`); an acknowledged record survives a crash of
//! the server process, and a power loss of the machine only with `sync_interval: always` or
//! with replicas on other machines.
//!
//! When the server does not answer within the response timeout, an operation fails with
//! [`Unavailable`](rampart_dead_letter::StoreErrorKind::Unavailable); the client reconnects in
//! the background, and while it is not connected every write fails at once (rather than
//! waiting in the client's buffer, to be stored after it was reported as failed). An `append`
//! that failed while the connection was lost may still have been stored: appending the same
//! record again then reports `Conflict`. A record larger than the server's `max_payload`
//! (1 MiB by default) is refused with
//! [`Config`](rampart_dead_letter::StoreErrorKind::Config); a bucket over its
//! [`max_bytes`](NatsDeadLetterStoreBuilder::max_bytes) is
//! [`Full`](rampart_dead_letter::StoreErrorKind::Full). TLS (`tls://`) is supported with the
//! server's certificate checked against the system's roots.

mod breaker;
mod builder;
mod connect;
mod error;
mod store;

pub use breaker::{NatsBreakerState, NatsBreakerStateBuilder};
pub use builder::NatsDeadLetterStoreBuilder;
pub use store::NatsDeadLetterStore;
