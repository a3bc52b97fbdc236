//! [`Redrive`]: sends parked requests again, through a service you give it (typically the same
//! client stack), and records each outcome.
//!
//! For each record: its state becomes `redriving`; the request is rebuilt (method, URI,
//! headers less the redacted ones, body, and the original `Idempotency-Key`, so a server-side
//! idempotency layer runs the work at most once however often it is redriven); it is sent; a
//! response that is not a failure marks it `delivered`, a failure puts it back to `pending` with
//! the new failure and one more redrive counted, and after [`max_redrives`](RedriveBuilder::max_redrives)
//! it is `given_up` and the alert hook fires.
//!
//! Pacing: at most [`rate`](RedriveBuilder::rate) sends per second, at most
//! [`concurrency`](RedriveBuilder::concurrency) at once.
//!
//! # Trade-offs
//!
//! - The `redriving` state is a marker, not a lock: two redrives of one store at once may
//!   send a record twice. The idempotency key makes that harmless at a server that honours
//!   it; run one redrive per store at a time otherwise.
//! - A record left `redriving` by a crash is not picked by [`Redrive::all`] (which takes
//!   `pending` ones); redrive it by id or with a filter on `redriving`.
//! - A record whose body was truncated cannot be resent whole: it is given up at once, and the
//!   alert hook fires.

use std::{
    fmt,
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use rampart_core::error::{BoxError, ConfigError};
use tower::ServiceExt as _;
use tower_service::Service;

use crate::{
    kind::{Judge, status_kind},
    record::{DeadLetter, DeadLetterId, Failure, State},
    store::{DeadLetterStore, Filter, Query, StoreError, StoreErrorKind},
};

/// What happened to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Sent, and the response was not a failure: the record is `delivered`.
    Delivered {
        /// The response's status.
        status: u16,
    },
    /// Sent, and it failed again: back to `pending`.
    Failed {
        /// How, the last time.
        failure: Failure,
    },
    /// It failed again (or could not be sent at all) and has been redriven the maximum number
    /// of times: `given_up`.
    GivenUp {
        /// Why.
        failure: Failure,
    },
    /// Not sent: the record was already `delivered` or `given_up`.
    Skipped {
        /// Its state.
        state: State,
    },
}

/// Counts of a redrive over many records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records looked at.
    pub seen: u64,
    /// Delivered.
    pub delivered: u64,
    /// Failed again, still pending.
    pub failed: u64,
    /// Given up.
    pub given_up: u64,
    /// Skipped (already delivered or given up).
    pub skipped: u64,
}

impl Summary {
    fn add(&mut self, outcome: &Outcome) {
        self.seen += 1;
        match outcome {
            Outcome::Delivered { .. } => self.delivered += 1,
            Outcome::Failed { .. } => self.failed += 1,
            Outcome::GivenUp { .. } => self.given_up += 1,
            Outcome::Skipped { .. } => self.skipped += 1,
        }
    }
}

type AlertFn = Arc<dyn Fn(&DeadLetter) + Send + Sync>;

/// Configures a [`Redrive`].
pub struct RedriveBuilder<S> {
    store: Arc<dyn DeadLetterStore>,
    service: S,
    rate: Option<f64>,
    concurrency: usize,
    max_redrives: u32,
    key_header: HeaderName,
    on_give_up: Option<AlertFn>,
    judge: Judge,
}

impl<S> fmt::Debug for RedriveBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedriveBuilder")
            .field("store", &self.store.describe())
            .field("rate", &self.rate)
            .field("concurrency", &self.concurrency)
            .field("max_redrives", &self.max_redrives)
            .finish_non_exhaustive()
    }
}

impl<S> RedriveBuilder<S> {
    /// At most `per_second` sends per second (unlimited by default). Must be finite and > 0.
    pub fn rate(mut self, per_second: f64) -> Self {
        self.rate = Some(per_second);
        self
    }

    /// At most `n` sends at once (4 by default). Must be in 1..=1024.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Gives a record up after `n` failed redrives (5 by default). Must be at least 1.
    pub fn max_redrives(mut self, n: u32) -> Self {
        self.max_redrives = n;
        self
    }

    /// The header the idempotency key goes in (`Idempotency-Key` by default).
    pub fn key_header(mut self, name: HeaderName) -> Self {
        self.key_header = name;
        self
    }

    /// Judges a redriven request's response by its status and headers instead of its status
    /// alone, e.g. with [`grpc_response_kind`](crate::kind::grpc_response_kind) for gRPC
    /// records (whose failures come back as `200` with a `grpc-status`).
    pub fn response_kind(
        mut self,
        f: fn(http::StatusCode, &http::HeaderMap) -> Option<crate::FailureKind>,
    ) -> Self {
        self.judge = Judge::Head(f);
        self
    }

    /// Called with each record as it is given up: the alert hook (page someone, open a
    /// ticket). Runs on the redrive's task: keep it quick.
    pub fn on_give_up(mut self, f: impl Fn(&DeadLetter) + Send + Sync + 'static) -> Self {
        self.on_give_up = Some(Arc::new(f));
        self
    }

    /// Checks the settings, naming the field that is out of range.
    pub fn build(self) -> Result<Redrive<S>, ConfigError> {
        const C: &str = "redrive";
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0)
        {
            return Err(ConfigError::new(
                C,
                "rate",
                format!("must be a finite number of sends per second > 0, got {r}"),
            ));
        }
        if !(1..=1024).contains(&self.concurrency) {
            return Err(ConfigError::new(
                C,
                "concurrency",
                format!("must be in 1..=1024, got {}", self.concurrency),
            ));
        }
        if self.max_redrives == 0 {
            return Err(ConfigError::new(
                C,
                "max_redrives",
                "must be at least 1, got 0",
            ));
        }
        Ok(Redrive {
            inner: Arc::new(Inner {
                store: self.store,
                interval: self.rate.map(|r| Duration::from_secs_f64(1.0 / r)),
                concurrency: self.concurrency,
                max_redrives: self.max_redrives,
                key_header: self.key_header,
                on_give_up: self.on_give_up,
                judge: self.judge,
            }),
            service: self.service,
        })
    }
}

struct Inner {
    store: Arc<dyn DeadLetterStore>,
    interval: Option<Duration>,
    concurrency: usize,
    max_redrives: u32,
    key_header: HeaderName,
    on_give_up: Option<AlertFn>,
    judge: Judge,
}

/// Sends parked requests again through a service. See the [module docs](self).
///
/// The service takes `http::Request<B>` for any body `B: From<Bytes>` (axum's `Body`,
/// reqwest's `Body`, http-body-util's `Full<Bytes>`), and returns `http::Response<_>`.
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
            .finish_non_exhaustive()
    }
}

impl Redrive<()> {
    /// A builder: records from `store`, sent through `service`.
    pub fn builder<S>(store: Arc<dyn DeadLetterStore>, service: S) -> RedriveBuilder<S> {
        RedriveBuilder {
            store,
            service,
            rate: None,
            concurrency: 4,
            max_redrives: 5,
            key_header: HeaderName::from_static("idempotency-key"),
            on_give_up: None,
            judge: Judge::Status(status_kind),
        }
    }
}

/// Progress of a redrive over many records, reported after each record.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// The record just done.
    pub id: DeadLetterId,
    /// What happened to it.
    pub outcome: &'a Outcome,
    /// Counts so far.
    pub summary: &'a Summary,
}

impl<S> Redrive<S> {
    /// Redrives the record `id`, whatever its state but `delivered` or `given_up`.
    pub async fn one<B, ResB>(&self, id: DeadLetterId) -> Result<Outcome, StoreError>
    where
        S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send,
        B: From<Bytes> + Send + 'static,
    {
        let Some(record) = self.inner.store.get(id).await? else {
            return Err(
                StoreError::new(self.inner.store.describe(), StoreErrorKind::NotFound)
                    .with_source(format!("no dead letter {id}")),
            );
        };
        redrive_record(&self.inner, self.service.clone(), record).await
    }

    /// Redrives every `pending` record.
    pub async fn all<B, ResB>(
        &self,
        progress: impl FnMut(Progress<'_>),
    ) -> Result<Summary, StoreError>
    where
        S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send,
        B: From<Bytes> + Send + 'static,
    {
        self.matching(Filter::all().state(State::Pending), progress)
            .await
    }

    /// Redrives every record matching `filter`, oldest first, paced and at most
    /// `concurrency` at once, calling `progress` after each. Records are read a page at a
    /// time, so a large backlog is not loaded at once.
    ///
    /// Stops at the first store error (the records done so far keep their new state).
    pub async fn matching<B, ResB>(
        &self,
        filter: Filter,
        mut progress: impl FnMut(Progress<'_>),
    ) -> Result<Summary, StoreError>
    where
        S: Service<Request<B>, Response = Response<ResB>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send,
        B: From<Bytes> + Send + 'static,
    {
        let mut summary = Summary::default();
        let mut query = Query::new(filter, 256);
        let mut tasks = tokio::task::JoinSet::new();
        let mut next_send = tokio::time::Instant::now();
        loop {
            let page = self.inner.store.list(&query).await?;
            let Some(last) = page.last() else { break };
            query.after = Some(last.id);
            for record in page {
                while tasks.len() >= self.inner.concurrency {
                    let done = join(&mut tasks).await?;
                    report(&mut summary, &mut progress, done);
                }
                if let Some(every) = self.inner.interval {
                    tokio::time::sleep_until(next_send).await;
                    next_send = tokio::time::Instant::now().max(next_send) + every;
                }
                let id = record.id;
                let fut = redrive_record(&self.inner, self.service.clone(), record);
                tasks.spawn(async move { (id, fut.await) });
            }
        }
        while !tasks.is_empty() {
            let done = join(&mut tasks).await?;
            report(&mut summary, &mut progress, done);
        }
        Ok(summary)
    }
}

async fn join(
    tasks: &mut tokio::task::JoinSet<(DeadLetterId, Result<Outcome, StoreError>)>,
) -> Result<(DeadLetterId, Outcome), StoreError> {
    match tasks.join_next().await {
        Some(Ok((id, Ok(outcome)))) => Ok((id, outcome)),
        Some(Ok((_, Err(e)))) => Err(e),
        // A panicking service: re-raise it rather than hide it.
        Some(Err(join)) => std::panic::resume_unwind(join.into_panic()),
        None => unreachable!("joined only while tasks run"),
    }
}

fn report(
    summary: &mut Summary,
    progress: &mut impl FnMut(Progress<'_>),
    (id, outcome): (DeadLetterId, Outcome),
) {
    summary.add(&outcome);
    progress(Progress {
        id,
        outcome: &outcome,
        summary,
    });
}

/// Rebuilds the request of `record`; `Err` if it cannot be resent whole.
pub fn rebuild<B: From<Bytes>>(
    record: &DeadLetter,
    key_header: &HeaderName,
) -> Result<Request<B>, String> {
    if record.target.body.truncated {
        return Err("the body was truncated when it was recorded; it cannot be resent".into());
    }
    let mut req = Request::builder()
        .method(record.target.method.as_str())
        .uri(record.target.uri.as_str());
    for h in record.target.headers.iter().filter(|h| !h.redacted) {
        req = req.header(h.name.as_str(), h.value.0.as_ref());
    }
    let mut req = req
        .body(B::from(record.target.body.data.0.clone()))
        .map_err(|e| format!("the recorded request is not valid HTTP: {e}"))?;
    if let Some(key) = &record.idempotency_key
        && !req.headers().contains_key(key_header)
    {
        let v = HeaderValue::from_str(key)
            .map_err(|_| format!("the recorded idempotency key {key:?} is not a header value"))?;
        req.headers_mut().insert(key_header.clone(), v);
    }
    Ok(req)
}

fn redrive_record<S, B, ResB>(
    inner: &Arc<Inner>,
    service: S,
    mut record: DeadLetter,
) -> impl Future<Output = Result<Outcome, StoreError>> + Send + 'static
where
    S: Service<Request<B>, Response = Response<ResB>> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: From<Bytes> + Send + 'static,
{
    let inner = inner.clone();
    async move {
        if matches!(record.state, State::Delivered | State::GivenUp) {
            return Ok(Outcome::Skipped {
                state: record.state,
            });
        }
        let store = &inner.store;
        let request = match rebuild::<B>(&record, &inner.key_header) {
            Ok(req) => req,
            Err(why) => {
                let failure = Failure {
                    kind: record.failure.kind,
                    status: None,
                    chain: vec![format!("cannot redrive: {why}")],
                };
                return give_up(&inner, record, failure).await;
            }
        };
        record.state = State::Redriving;
        record.updated_at = SystemTime::now();
        store.update(&record).await?;
        tracing::debug!(target: "rampart::dead_letter", id = %record.id, "redriving");

        let result = service
            .oneshot(request)
            .await
            .map(|res| (res.status(), inner.judge.kind(res.status(), res.headers())))
            .map_err(Into::<BoxError>::into);
        record.redrive_count += 1;
        let now = SystemTime::now();
        let failure = match result {
            Ok((status, kind)) => match kind {
                None => {
                    record.state = State::Delivered;
                    record.updated_at = now;
                    store.update(&record).await?;
                    tracing::info!(
                        target: "rampart::dead_letter",
                        id = %record.id, status = status.as_u16(), "dead letter delivered"
                    );
                    metrics::counter!("rampart_dead_letter_redriven_total", "outcome" => "delivered")
                        .increment(1);
                    return Ok(Outcome::Delivered {
                        status: status.as_u16(),
                    });
                }
                Some(kind) => Failure::from_status(kind, status),
            },
            Err(e) => Failure::from_error(crate::kind::error_kind(&*e), &*e),
        };
        record.last_failed_at = now;
        if record.redrive_count >= inner.max_redrives {
            return give_up(&inner, record, failure).await;
        }
        record.failure = failure.clone();
        record.state = State::Pending;
        record.updated_at = now;
        store.update(&record).await?;
        tracing::info!(
            target: "rampart::dead_letter",
            id = %record.id, redrives = record.redrive_count, kind = %failure.kind,
            "redrive failed; dead letter pending again"
        );
        metrics::counter!("rampart_dead_letter_redriven_total", "outcome" => "failed").increment(1);
        Ok(Outcome::Failed { failure })
    }
}

async fn give_up(
    inner: &Inner,
    mut record: DeadLetter,
    failure: Failure,
) -> Result<Outcome, StoreError> {
    record.failure = failure.clone();
    record.state = State::GivenUp;
    record.updated_at = SystemTime::now();
    inner.store.update(&record).await?;
    tracing::warn!(
        target: "rampart::dead_letter",
        id = %record.id, redrives = record.redrive_count, reason = ?failure.chain.first(),
        "dead letter given up"
    );
    metrics::counter!("rampart_dead_letter_redriven_total", "outcome" => "given_up").increment(1);
    if let Some(alert) = &inner.on_give_up {
        alert(&record);
    }
    Ok(Outcome::GivenUp { failure })
}
