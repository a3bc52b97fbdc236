//! [`Redrive`]: sends parked requests again, through a service you give it (typically the same
//! client stack), and records each outcome.

mod builder;
mod outcome;
mod send;

use std::{collections::HashMap, fmt, sync::Arc};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use rampart_core::error::BoxError;
use tokio::task::{Id as TaskId, JoinSet};
use tower_service::Service;

use builder::Inner;
pub use builder::{DEFAULT_LEASE, RedriveBuilder};
pub use outcome::{Progress, RedriveOutcome, Skip, Summary};
pub use send::rebuild;

use crate::{
    record::{DeadLetterId, State},
    store::{Filter, Query, StoreError},
};

/// What a [`Redrive`] (and a [`Drain`](crate::Drain)) sends records through: a cloneable
/// `Service<http::Request<B>>` answering `http::Response<ResB>`, whose error becomes a
/// [`BoxError`] and whose future is `Send`. Implemented for every such service; it names the
/// bounds once.
pub trait RedriveService<B, ResB>:
    Service<Request<B>, Response = Response<ResB>, Error: Into<BoxError>, Future: Send>
    + Clone
    + Send
    + 'static
{
}

impl<S, B, ResB> RedriveService<B, ResB> for S where
    S: Service<Request<B>, Response = Response<ResB>, Error: Into<BoxError>, Future: Send>
        + Clone
        + Send
        + 'static
{
}

/// The body of an answer a redrive reads: `Send`, with an error that becomes a [`BoxError`].
/// Implemented for every such body.
pub trait AnswerBody: Body<Error: Into<BoxError>> + Send + 'static {}

impl<T> AnswerBody for T where T: Body<Error: Into<BoxError>> + Send + 'static {}

/// Sends parked requests again, through a service you give it (typically the same client
/// stack), and records each outcome.
///
/// The service takes `http::Request<B>` for any body `B: From<Bytes>` (axum's `Body`,
/// reqwest's `Body`, http-body-util's `Full<Bytes>`), and returns `http::Response<_>`.
///
/// For each record: it is read afresh and claimed (its state becomes `redriving` under a
/// [lease](RedriveBuilder::lease), in one compare-and-set on its revision, so that of several
/// redrives sharing a store exactly one sends it); the request is rebuilt (method, URI,
/// headers less the redacted ones, body, and the original `Idempotency-Key`, so a server-side
/// idempotency layer runs the work at most once however often it is redriven); it is sent,
/// within four fifths of the lease; a response that is not a failure marks it `delivered`, a
/// failure puts it back to `pending` with the new failure and one more redrive counted, and
/// after [`max_redrives`](RedriveBuilder::max_redrives) it is `given_up` and the alert hook
/// fires. Each outcome is written with a compare-and-set on the claim's revision too.
///
/// A gRPC response (`content-type: application/grpc…`) whose head carries no `grpc-status` is
/// read to its trailers, and judged by the `grpc-status` there: a `200` whose trailers say
/// `UNAVAILABLE` is a failure, not a delivery.
///
/// Pacing: at most [`rate`](RedriveBuilder::rate) sends per second, at most
/// [`concurrency`](RedriveBuilder::concurrency) at once.
///
/// # Several redrives, crashes and cancellation
///
/// - Two redrives of one store at once (two processes, or the `rampart` CLI beside the
///   application) send each record once: the one whose claim lands first sends it, the other
///   reports it [skipped](Skip::Contended) (or [leased](Skip::Leased)). Every store proves this
///   in the conformance suite.
/// - A redrive that crashes, is cancelled (its future dropped, Ctrl-C in the CLI) or loses its
///   store mid-way leaves the records it had claimed `redriving` under its lease. Once the
///   lease has run out they are claimable again, and [`Redrive::all`] takes them, with their
///   redrive count kept. A request that was sent but whose outcome was not recorded is sent
///   again then, with the same idempotency key.
/// - A store error on one record does not stop the others: it is reported as
///   [`RedriveOutcome::Errored`] and counted in [`Summary::errors`]. A service that panics is
///   reported the same way. Only a failure to list records ends a run early (after the sends
///   in flight have finished and been recorded).
///
/// # Trade-offs
///
/// - Leases are wall-clock times, shared between processes: redrivers whose clocks disagree by
///   more than a fifth of the lease may overlap. The idempotency key makes an overlap harmless
///   at a server that honours it.
/// - Claiming costs a read and a compare-and-set per record before each send, and another
///   compare-and-set after it: three store round trips per record (one before this design).
/// - A record whose body was truncated cannot be resent whole: it is given up at once, and the
///   alert hook fires.
pub struct Redrive<S> {
    inner: Arc<Inner>,
    service: S,
}

impl<S> fmt::Debug for Redrive<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redrive")
            .field("store", &self.inner.store.describe())
            .field("concurrency", &self.inner.concurrency)
            .field("max_redrives", &self.inner.max_redrives)
            .field("lease", &self.inner.lease)
            .field("owner", &self.inner.owner)
            .finish_non_exhaustive()
    }
}

impl Redrive<()> {
    /// A builder: records from `store`, sent through `service`.
    pub fn builder<S>(store: Arc<dyn crate::DeadLetterStore>, service: S) -> RedriveBuilder<S> {
        RedriveBuilder::new(store, service)
    }
}

impl<S> Redrive<S> {
    /// The name this redrive's leases carry (a process id and a random part).
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// Redrives the record `id`, if it is claimable: `pending`, or `redriving` under a lease
    /// that has run out. A record that is `delivered`, `given_up` or held by another redrive
    /// is [skipped](RedriveOutcome::Skipped).
    ///
    /// `Err` if the record is not in the store, or the store failed for it.
    pub async fn one<B, ResB>(&self, id: DeadLetterId) -> Result<RedriveOutcome, StoreError>
    where
        S: RedriveService<B, ResB>,
        B: From<Bytes> + Send + 'static,
        ResB: AnswerBody,
    {
        send::redrive_record(self.inner.clone(), self.service.clone(), id)
            .await
            .map_err(|(e, _)| e)
    }

    /// Redrives every claimable record: the `pending` ones, then the `redriving` ones whose
    /// lease has run out (left by a redrive that crashed or was cancelled). Records held by a
    /// live lease are reported [skipped](Skip::Leased).
    pub async fn all<B, ResB>(
        &self,
        progress: impl FnMut(Progress<'_>),
    ) -> Result<Summary, StoreError>
    where
        S: RedriveService<B, ResB>,
        B: From<Bytes> + Send + 'static,
        ResB: AnswerBody,
    {
        self.all_while(progress, || true).await
    }

    /// [`all`](Self::all), taking no new record once `keep_going` says `false` (the sends in
    /// flight finish and are reported; the records not reached stay as they are).
    pub(crate) async fn all_while<B, ResB>(
        &self,
        progress: impl FnMut(Progress<'_>),
        keep_going: impl Fn() -> bool,
    ) -> Result<Summary, StoreError>
    where
        S: RedriveService<B, ResB>,
        B: From<Bytes> + Send + 'static,
        ResB: AnswerBody,
    {
        self.run(
            &[
                Filter::all().state(State::Pending),
                Filter::all().state(State::Redriving),
            ],
            progress,
            keep_going,
        )
        .await
    }

    /// Redrives every record matching `filter`, oldest first, paced and at most
    /// `concurrency` at once, calling `progress` after each. Records are read a page at a
    /// time, so a large backlog is not loaded at once; each is read again before it is
    /// claimed, and only a claimable one is sent.
    ///
    /// A store error on one record is reported for it ([`RedriveOutcome::Errored`]) and the run goes
    /// on. `Err` only if a page of records cannot be listed: the run then stops taking new
    /// records, lets the sends in flight finish (each reported), and returns the error.
    pub async fn matching<B, ResB>(
        &self,
        filter: Filter,
        progress: impl FnMut(Progress<'_>),
    ) -> Result<Summary, StoreError>
    where
        S: RedriveService<B, ResB>,
        B: From<Bytes> + Send + 'static,
        ResB: AnswerBody,
    {
        self.run(&[filter], progress, || true).await
    }

    async fn run<B, ResB>(
        &self,
        filters: &[Filter],
        mut progress: impl FnMut(Progress<'_>),
        keep_going: impl Fn() -> bool,
    ) -> Result<Summary, StoreError>
    where
        S: RedriveService<B, ResB>,
        B: From<Bytes> + Send + 'static,
        ResB: AnswerBody,
    {
        let mut run = Run {
            summary: Summary::default(),
            tasks: JoinSet::new(),
            ids: HashMap::new(),
        };
        let mut next_send = tokio::time::Instant::now();
        let mut listing = Ok(());
        'filters: for filter in filters {
            // The sends of the previous filter first: a record this run has claimed is
            // `redriving` until its send is done, and is not to be met again as another's.
            while !run.tasks.is_empty() {
                run.join_one(&self.inner, &mut progress).await;
            }
            let mut query = Query::new(filter.clone(), 256);
            loop {
                let page = match self.inner.store.list(&query).await {
                    Ok(page) => page,
                    Err(e) => {
                        listing = Err(e);
                        break 'filters;
                    }
                };
                let Some(last) = page.last() else { break };
                query.after = Some(last.id);
                for record in page {
                    while run.tasks.len() >= self.inner.concurrency {
                        run.join_one(&self.inner, &mut progress).await;
                    }
                    if let Some(every) = self.inner.interval {
                        tokio::time::sleep_until(next_send).await;
                        next_send = rampart_core::clock::saturating_add(
                            tokio::time::Instant::now().max(next_send),
                            every,
                        );
                    }
                    if !keep_going() {
                        break 'filters;
                    }
                    let id = record.id;
                    let fut = send::redrive_record(self.inner.clone(), self.service.clone(), id);
                    let task = run.tasks.spawn(fut);
                    run.ids.insert(task.id(), id);
                }
            }
        }
        while !run.tasks.is_empty() {
            run.join_one(&self.inner, &mut progress).await;
        }
        listing.map(|()| run.summary)
    }
}

/// A run's sends in flight, and what it has counted.
struct Run {
    summary: Summary,
    tasks: JoinSet<Result<RedriveOutcome, (StoreError, bool)>>,
    ids: HashMap<TaskId, DeadLetterId>,
}

impl Run {
    /// Waits for one send to finish, and reports it.
    async fn join_one(&mut self, inner: &Inner, progress: &mut impl FnMut(Progress<'_>)) {
        let Some(done) = self.tasks.join_next_with_id().await else {
            return;
        };
        let (task, outcome) = match done {
            Ok((task, Ok(outcome))) => (task, outcome),
            Ok((task, Err((error, sent)))) => (task, errored(inner, error.to_string(), sent)),
            // The task is gone, so its record keeps its claim (if it made one) until the lease
            // runs out.
            Err(join) if join.is_panic() => (
                join.id(),
                errored(
                    inner,
                    "the service panicked while the record was redriven".into(),
                    true,
                ),
            ),
            Err(join) => (
                join.id(),
                errored(inner, "the record's redrive was cancelled".into(), true),
            ),
        };
        let Some(id) = self.ids.remove(&task) else {
            return;
        };
        if let RedriveOutcome::Errored { error, sent } = &outcome {
            tracing::warn!(
                target: "rampart::dead_letter",
                %id, %error, sent,
                "redrive of a dead letter failed; it is left to its lease"
            );
        }
        self.summary.add(&outcome);
        progress(Progress {
            id,
            outcome: &outcome,
            summary: &self.summary,
        });
    }
}

fn errored(inner: &Inner, error: String, sent: bool) -> RedriveOutcome {
    inner.count("error");
    RedriveOutcome::Errored { error, sent }
}
