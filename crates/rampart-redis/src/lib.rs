//! Redis backends for rampart, on Redis 5.0 or later, one feature each (all on by default):
//!
//! - [`RedisDeadLetterStore`] (feature `dead-letter`), a [`DeadLetterStore`](rampart_dead_letter::DeadLetterStore)
//!   with a Redis Stream as a durable feed of new dead letters;
//! - [`RedisIdempotencyStore`] (feature `idempotency`), an [`IdempotencyStore`](rampart_idempotency::IdempotencyStore)
//!   that every replica of a service shares, so that a retry landing on another replica is
//!   still answered from the first response: see [Idempotency store](#idempotency-store);
//! - [`RedisRateLimiter`] (feature `rate-limit`), one rate limit shared by every replica, and
//!   [`RedisBudgetStore`], cost budgets kept across restarts;
//! - [`RedisBreakerState`] (feature `breaker`), circuit-breaker state every replica shares
//!   (rampart-circuit-breaker's [`SharedBreakers`](rampart_circuit_breaker::shared::SharedBreakers)):
//!   see its [layout](RedisBreakerState#layout).
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
//! # Dead letters: layout
//!
//! For a prefix `P` (default `rampart:dlq`) the store keeps five keys, each readable with
//! `redis-cli`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:records` | hash | record id → the record's JSON ([format](rampart_dead_letter::DeadLetter#format-version-1)), its current version |
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
//! # Dead letters: a feed for workers
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
//! # Dead letters: durability
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
//!
//! # Idempotency store
//!
//! [`RedisIdempotencyStore`] keeps the leases and stored responses of rampart-idempotency's
//! `IdempotencyLayer` in Redis, so that every replica behind a load balancer sees the same
//! ones: a request runs once, whichever replica its retries reach.
//!
//! ```no_run
//! use std::sync::Arc;
//! use rampart_idempotency::{IdempotencyLayer, KeyPolicy};
//! use rampart_redis::RedisIdempotencyStore;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisIdempotencyStore::builder("redis://127.0.0.1:6379/0")
//!     .prefix("billing:idem")
//!     .connect()
//!     .await?;
//! let charges = IdempotencyLayer::builder(Arc::new(store))
//!     .name("charges")
//!     .policy(KeyPolicy::Required)
//!     .build()?;
//! # let _ = charges;
//! # Ok(())
//! # }
//! ```
//!
//! Each entry is one hash at `<prefix>:<StoreKey>` (prefix `rampart:idem` by default;
//! [`entry_key`](RedisIdempotencyStore::entry_key)), e.g. `rampart:idem:g:order-42`, with the
//! fields `fp` (the request's fingerprint, hex), `token` (the lease's token, hex) while the
//! request runs, and `resp` (the encoded [`StoredResponse`](rampart_idempotency::StoredResponse))
//! once it completed. Its lifetime is the key's expiry: the lease TTL while in flight, the
//! retention once completed; Redis removes expired entries itself, with no sweeper.
//!
//! ## Round trips
//!
//! Each operation is one Lua script (`EVALSHA`; the scripts are loaded on
//! [`connect`](RedisIdempotencyStoreBuilder::connect)), so it is atomic and costs **one round
//! trip**:
//!
//! | request | round trips |
//! |---|---|
//! | a replay (`begin` finds the response) | 1 |
//! | a conflict (`409`) or a mismatch (`422`) | 1 |
//! | a first execution (`begin` takes the lease, `complete` stores the response) | 2 |
//! | an execution whose response is not stored (`begin`, `release`) | 2 |
//!
//! `begin` takes the lease as `SET NX PX` would (created only if absent, with the lease TTL in
//! milliseconds), and in the same script tells a replay, a conflict (with the lease's `PTTL`)
//! and a mismatch apart. `complete` stores the response and sets the retention only while the
//! lease is still the caller's and nothing is stored; `release` deletes the entry under the
//! same condition. If Redis lost the scripts (a restart, `SCRIPT FLUSH`), the next call loads
//! its script again: two more round trips, once.
//!
//! ## What Redis must be configured with
//!
//! - **`maxmemory-policy noeviction`** (the default). An evicted lease lets a concurrent retry
//!   run the request a second time, and every entry has an expiry, so the `volatile-*`
//!   policies evict leases as readily as the `allkeys-*` ones (`volatile-ttl` picks them
//!   first: their TTLs are the shortest). `connect` logs a warning when
//!   `CONFIG GET maxmemory-policy` says otherwise. With `noeviction`, Redis at `maxmemory`
//!   refuses new entries: `begin` fails with
//!   [`Full`](rampart_idempotency::StoreErrorKind::Full), which the layer answers with `503`,
//!   and no stored entry is ever dropped early. Size `maxmemory` for your peak keyed-request
//!   rate × the retention × the size of an entry: its encoded response plus about 170 bytes
//!   for a short key, and about 300 once the response is over 64 bytes (Redis' `MEMORY USAGE`:
//!   1 328 bytes for a 1 000-byte response).
//! - **Persistence, as your exactly-once needs it.** A Redis that restarts without its data
//!   forgets every lease and stored response: a retry of a request that completed before the
//!   restart runs again. With `appendonly yes` and `appendfsync everysec`, about the last
//!   second is at risk; with RDB snapshots only, everything since the last snapshot. Replication
//!   is asynchronous: a failover can lose the latest writes the same way.
//! - Nothing else under the prefix: [`clear`](RedisIdempotencyStore::clear) removes every key
//!   that starts with `<prefix>:`, and a key of another type there is reported as corrupt.
//!
//! Redis Cluster and Sentinel are not built in: the store talks to the one server at its URL.
//!
//! ## Failures
//!
//! An operation that finds the connection refused or dropped fails at once, and one that gets
//! no answer within the [response timeout](RedisIdempotencyStoreBuilder::response_timeout)
//! (1 s by default) fails then, both with
//! [`Unavailable`](rampart_idempotency::StoreErrorKind::Unavailable) (the layer then fails
//! closed with `503`, or open if told to); the connection is re-established in the
//! background. A `begin` that timed out may still have taken its lease: the lease expires
//! after its TTL. An entry that cannot be read back (bytes that do not decode, a key of
//! another type under the prefix, a lease whose expiry was removed) is
//! [`Corrupt`](rampart_idempotency::StoreErrorKind::Corrupt). The store's
//! [`describe`](rampart_idempotency::IdempotencyStore::describe) (in every error) names the
//! server, database and prefix, never a password.

#[cfg(feature = "breaker")]
mod breaker_state;
#[cfg(feature = "rate-limit")]
mod budget;
#[cfg(feature = "dead-letter")]
mod builder;
#[cfg(any(
    feature = "dead-letter",
    feature = "idempotency",
    feature = "rate-limit",
    feature = "breaker"
))]
mod connect;
#[cfg(any(
    feature = "dead-letter",
    feature = "idempotency",
    feature = "rate-limit"
))]
mod error;
#[cfg(feature = "health")]
mod health;
#[cfg(feature = "idempotency")]
mod idempotency;
#[cfg(feature = "rate-limit")]
mod rate_limit;
#[cfg(feature = "rate-limit")]
mod refusals;
#[cfg(feature = "dead-letter")]
mod scripts;
#[cfg(feature = "dead-letter")]
mod store;

#[cfg(feature = "breaker")]
pub use breaker_state::{RedisBreakerState, RedisBreakerStateBuilder};
#[cfg(feature = "rate-limit")]
pub use budget::{RedisBudgetStore, RedisBudgetStoreBuilder};
#[cfg(feature = "dead-letter")]
pub use builder::RedisDeadLetterStoreBuilder;
#[cfg(feature = "idempotency")]
pub use idempotency::{RedisIdempotencyStore, RedisIdempotencyStoreBuilder};
#[cfg(feature = "rate-limit")]
pub use rate_limit::{
    RateLimiterError, RateLimiterErrorKind, RedisFallback, RedisRateLimiter,
    RedisRateLimiterBuilder,
};
#[cfg(feature = "dead-letter")]
pub use store::RedisDeadLetterStore;
