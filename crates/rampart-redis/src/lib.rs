//! Redis backends for rampart: [`RedisDeadLetterStore`], a
//! [`DeadLetterStore`](rampart_dead_letter::DeadLetterStore) on Redis (5.0 or later), with a
//! Redis Stream as a durable feed of new dead letters.
//!
//! ```no_run
//! use rampart_dead_letter::{DeadLetterStore, Filter, Query, State};
//! use rampart_redis::RedisDeadLetterStore;
//!
//! # async fn demo() -> Result<(), rampart_dead_letter::StoreError> {
//! let store = RedisDeadLetterStore::builder("redis://127.0.0.1:6379/0")
//!     .prefix("billing:dlq")
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
//! For a prefix `P` (default `rampart:dlq`) the store keeps five keys, each readable with
//! `redis-cli`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:records` | hash | record id → the record's JSON ([format](rampart_dead_letter::record)), its current version |
//! | `P:ids` | sorted set | every id, score 0: `ZRANGEBYLEX` pages them in id order (ids are UUID v7, whose text sorts as they do) |
//! | `P:counts` | hash | `total`, `state:<state>`, `kind:<kind>`: the counts [`stats`](rampart_dead_letter::DeadLetterStore::stats) returns in O(1) |
//! | `P:pending` | sorted set | ids of pending and redriving records, scored by first failure (Unix ms): the age of the backlog |
//! | `P:stream` | stream | one entry per appended record, fields `id` and `record` (the JSON as appended) |
//!
//! Every change is one Lua script, so it is atomic: `append` checks the id (a stored id is
//! [`Conflict`](rampart_dead_letter::StoreErrorKind::Conflict)) and the optional
//! [`max_records`](RedisDeadLetterStoreBuilder::max_records) before it writes, then writes the
//! record, the index, the counters and the stream entry together. `append_batch` does the same
//! for the whole batch in one script: all records or none. `get`, `update` and `delete` are
//! O(1); `list` pages the index, applying the filter as it goes (a selective filter reads
//! more pages); `purge` scans the same way and removes a record only if it is still exactly as
//! it was read. Change the keys only through the store: the counters are kept by its scripts.
//!
//! # A feed for workers
//!
//! The stream gives consumers a durable, replayable feed of new dead letters, e.g. a worker
//! group that alerts on them or redrives them:
//!
//! ```text
//! XGROUP CREATE rampart:dlq:stream alerting $ MKSTREAM
//! XREADGROUP GROUP alerting worker-1 COUNT 10 BLOCK 5000 STREAMS rampart:dlq:stream >
//! XACK rampart:dlq:stream alerting <entry-id>
//! ```
//!
//! An entry holds the record as appended; a consumer that acts on a record reads its current
//! version with `get` (`None`: it was deleted or purged since). Updates and deletes add no
//! entries. The stream is trimmed to about
//! [`stream_max_len`](RedisDeadLetterStoreBuilder::stream_max_len) entries (100 000 by default):
//! a consumer that falls further behind misses entries, never records.
//!
//! # Durability
//!
//! `append` returns `Ok` once Redis has acknowledged the write: the record is in the server's
//! memory. What survives a crash of the server then depends on its persistence: with
//! `appendonly yes` and `appendfsync always`, everything acknowledged; with the usual
//! `appendfsync everysec`, all but about the last second; with RDB snapshots only (or none),
//! everything since the last snapshot is lost. For a dead-letter queue, run Redis with the
//! append-only file. [`wait_for_replicas`](RedisDeadLetterStoreBuilder::wait_for_replicas)
//! also makes `append` wait until replicas have the write (Redis `WAIT`), so that a failover
//! keeps it.
//!
//! When Redis does not answer within the response timeout, or the connection drops, an
//! operation fails with [`Unavailable`](rampart_dead_letter::StoreErrorKind::Unavailable) and
//! the connection is re-established in the background. An `append` that failed so may still
//! have been stored: appending the same record again then reports `Conflict`.
//!
//! Redis out of memory (`maxmemory` with `noeviction`, the only policy a dead-letter queue
//! should run with) is [`Full`](rampart_dead_letter::StoreErrorKind::Full). TLS (`rediss://`)
//! is not built in.

mod builder;
mod error;
mod scripts;
mod store;

pub use builder::RedisDeadLetterStoreBuilder;
pub use store::RedisDeadLetterStore;
