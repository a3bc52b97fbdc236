//! [`DeadLetterStore`]: where dead letters are kept, and the [`Filter`], [`Query`] and
//! [`Stats`] every store understands.

use std::{collections::BTreeMap, fmt, sync::Arc, time::SystemTime};

use crate::record::{DeadLetter, DeadLetterId, ParkReason, State};

use rampart_core::BoxFuture;

/// Keeps dead letters: where a [`DeadLetterLayer`](crate::DeadLetterLayer) parks them and a
/// [`Redrive`](crate::Redrive) finds them.
///
/// A store is used through `Arc<dyn DeadLetterStore>`, so that the layer, a redrive and the
/// `rampart` CLI can pick one at run time (`sqlite:PATH`, `redis://…`, `nats://…`). Its
/// methods return boxed futures for that reason; only `append` is on a request's path, and only
/// for a request that has already failed.
///
/// # Contract
///
/// Every implementation passes the conformance suite (`conformance::run`, feature
/// `test-util`):
///
/// - `append` returns `Ok` only once the record is durable, as the store defines it (the
///   embedded store: written and `fsync`ed). An id that is already stored is
///   [`StoreErrorKind::Conflict`]; a full store is [`StoreErrorKind::Full`], never a silent drop.
/// - `list` returns records in id order (oldest first: ids are UUID v7), after the `after`
///   cursor, at most `limit`, matching the filter.
/// - `update` is a compare-and-set: it replaces the stored record with the same id only if
///   the stored one's [`revision`](DeadLetter::revision) is still `record.revision`, and
///   stores it with `revision + 1`, in one atomic step. A record changed since it was read is
///   [`StoreErrorKind::Stale`] (nothing is written); an unknown id is
///   [`StoreErrorKind::NotFound`]. This is what lets two redrives (two processes, or the CLI
///   beside the application) share a store without sending a record twice or writing over
///   each other's outcome: the conformance suite checks it with concurrent writers.
/// - `delete` says whether the record was there; `purge` says how many it removed.
pub trait DeadLetterStore: Send + Sync + fmt::Debug + 'static {
    /// A short description for logs and errors, e.g. `sqlite:/var/lib/app/dlq.db`. Never
    /// holds a password.
    fn describe(&self) -> String;

    /// `true` if an appended record survives a crash of the process (the embedded store, Redis,
    /// NATS); `false` for one kept in memory only. A layer answers `202 Accepted` only for a
    /// record a durable store kept (see [`AcceptForLater`](crate::AcceptForLater)).
    fn is_durable(&self) -> bool {
        true
    }

    /// Stores `record`; `Ok` once it is durable.
    fn append<'a>(&'a self, record: &'a DeadLetter) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Stores every record of `records`, all or none where the store can promise that (the
    /// embedded store, in one transaction). By default, one `append` after another.
    fn append_batch<'a>(
        &'a self,
        records: &'a [DeadLetter],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            for r in records {
                self.append(r).await?;
            }
            Ok(())
        })
    }

    /// The record with `id`, if stored.
    fn get(&self, id: DeadLetterId) -> BoxFuture<'_, Result<Option<DeadLetter>, StoreError>>;

    /// A page of records, in id order.
    fn list<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<DeadLetter>, StoreError>>;

    /// Replaces the stored record with `record.id` if its revision is still
    /// `record.revision`, storing `record` with `revision + 1`; otherwise
    /// [`StoreErrorKind::Stale`] and nothing is written. See the [contract](DeadLetterStore#contract).
    fn update<'a>(&'a self, record: &'a DeadLetter) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Removes the record with `id`; `true` if it was there.
    fn delete(&self, id: DeadLetterId) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Removes every record matching `filter`; how many were removed.
    fn purge<'a>(&'a self, filter: &'a Filter) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// Counts by state and by failure kind, and the oldest record.
    fn stats(&self) -> BoxFuture<'_, Result<Stats, StoreError>>;
}

impl<T: DeadLetterStore + ?Sized> DeadLetterStore for Arc<T> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn is_durable(&self) -> bool {
        (**self).is_durable()
    }
    fn append<'a>(&'a self, record: &'a DeadLetter) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).append(record)
    }
    fn append_batch<'a>(
        &'a self,
        records: &'a [DeadLetter],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).append_batch(records)
    }
    fn get(&self, id: DeadLetterId) -> BoxFuture<'_, Result<Option<DeadLetter>, StoreError>> {
        (**self).get(id)
    }
    fn list<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<DeadLetter>, StoreError>> {
        (**self).list(query)
    }
    fn update<'a>(&'a self, record: &'a DeadLetter) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).update(record)
    }
    fn delete(&self, id: DeadLetterId) -> BoxFuture<'_, Result<bool, StoreError>> {
        (**self).delete(id)
    }
    fn purge<'a>(&'a self, filter: &'a Filter) -> BoxFuture<'a, Result<u64, StoreError>> {
        (**self).purge(filter)
    }
    fn stats(&self) -> BoxFuture<'_, Result<Stats, StoreError>> {
        (**self).stats()
    }
}

/// Which records: every condition set must hold. The default matches every record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only records in this state.
    pub state: Option<State>,
    /// Only records that failed this way.
    pub kind: Option<ParkReason>,
    /// Only records parked by this service.
    pub service: Option<String>,
    /// Only records whose last failure was at or before this time.
    pub failed_before: Option<SystemTime>,
}

impl Filter {
    /// Every record.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only records in `state`.
    pub fn state(mut self, state: State) -> Self {
        self.state = Some(state);
        self
    }

    /// Only records that failed as `kind`.
    pub fn kind(mut self, kind: ParkReason) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Only records parked by `service`.
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.service = Some(service.into());
        self
    }

    /// Only records whose last failure was at or before `t`.
    pub fn failed_before(mut self, t: SystemTime) -> Self {
        self.failed_before = Some(t);
        self
    }

    /// `true` if `record` matches: what a store that scans records uses.
    pub fn matches(&self, record: &DeadLetter) -> bool {
        self.state.is_none_or(|s| record.state == s)
            && self.kind.is_none_or(|k| record.failure.kind == k)
            && self.service.as_deref().is_none_or(|s| record.service == s)
            && self
                .failed_before
                .is_none_or(|t| record.last_failed_at <= t)
    }
}

/// A page of a [`DeadLetterStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Which records.
    pub filter: Filter,
    /// Only records with a larger id (the last id of the previous page).
    pub after: Option<DeadLetterId>,
    /// At most this many.
    pub limit: usize,
}

impl Query {
    /// The first `limit` records matching `filter`.
    pub fn new(filter: Filter, limit: usize) -> Self {
        Self {
            filter,
            after: None,
            limit,
        }
    }

    /// The page after the record `id`.
    pub fn after(mut self, id: DeadLetterId) -> Self {
        self.after = Some(id);
        self
    }
}

/// What a store holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every record.
    pub total: u64,
    /// Records per state (states with none are left out).
    pub by_state: BTreeMap<State, u64>,
    /// Records per failure kind (kinds with none are left out).
    pub by_kind: BTreeMap<ParkReason, u64>,
    /// The earliest first failure among records still pending or redriving: the age of the
    /// backlog.
    pub oldest_pending: Option<SystemTime>,
}

impl Stats {
    /// Counts `records`: for stores that scan.
    pub fn count<'a>(records: impl IntoIterator<Item = &'a DeadLetter>) -> Self {
        let mut stats = Stats::default();
        for r in records {
            stats.add(r);
        }
        stats
    }

    /// Adds one record to the counts.
    pub fn add(&mut self, r: &DeadLetter) {
        self.total += 1;
        *self.by_state.entry(r.state).or_default() += 1;
        *self.by_kind.entry(r.failure.kind).or_default() += 1;
        if matches!(r.state, State::Pending | State::Redriving) {
            self.oldest_pending = Some(
                self.oldest_pending
                    .map_or(r.first_failed_at, |t| t.min(r.first_failed_at)),
            );
        }
    }

    /// Records in `state`.
    pub fn in_state(&self, state: State) -> u64 {
        self.by_state.get(&state).copied().unwrap_or(0)
    }

    /// Records waiting for a redrive (pending or being redriven): the backlog.
    pub fn backlog(&self) -> u64 {
        self.in_state(State::Pending) + self.in_state(State::Redriving)
    }
}

/// What went wrong in a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store could not be reached or did not answer (a server down, a disk error).
    Unavailable,
    /// The store is full; the record was not kept.
    Full,
    /// No record has that id.
    NotFound,
    /// A record with that id is already stored.
    Conflict,
    /// The record changed since it was read (its revision moved on): nothing was written.
    Stale,
    /// A stored record could not be read.
    Corrupt,
    /// The store was set up wrongly (a bad URL, a missing stream).
    Config,
}

impl StoreErrorKind {
    const fn as_str(self) -> &'static str {
        match self {
            StoreErrorKind::Unavailable => "unavailable",
            StoreErrorKind::Full => "full",
            StoreErrorKind::NotFound => "no such record",
            StoreErrorKind::Conflict => "record already stored",
            StoreErrorKind::Stale => "record changed since it was read",
            StoreErrorKind::Corrupt => "unreadable record",
            StoreErrorKind::Config => "misconfigured",
        }
    }
}

/// A dead-letter store failed: which store, what kind of failure, and the cause (rampart-core's
/// [`StoreError`](rampart_core::store::StoreError) with this crate's [`StoreErrorKind`]).
pub type StoreError = rampart_core::store::StoreError<StoreErrorKind>;

impl rampart_core::store::ErrorKind for StoreErrorKind {
    const STORE: &'static str = "dead-letter";

    fn describe(self) -> &'static str {
        self.as_str()
    }
}
