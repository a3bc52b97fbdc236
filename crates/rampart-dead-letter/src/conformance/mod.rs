//! The store conformance suite: what every [`DeadLetterStore`] must do, as one async function
//! that panics (with what failed) on the first broken promise.
//!
//! ```no_run
//! # async fn demo() {
//! use rampart_dead_letter::{conformance, MemoryStore};
//!
//! conformance::run(&MemoryStore::bounded(10_000).unwrap()).await;
//! # }
//! ```
//!
//! The store must start empty (give each run its own file, key prefix or stream).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test helper: panics are its reports

mod drain;

use std::time::{Duration, SystemTime};

pub use drain::concurrent_drains;

use bytes::Bytes;

use crate::{
    record::{
        DeadLetter, DeadLetterId, Failure, Header, ParkReason, Payload, RecordedBody, State,
        Target, system_time_from_millis, unix_millis,
    },
    store::{DeadLetterStore, Filter, Query, StoreErrorKind},
};

/// A record for tests: number `i`, with a binary header, a body, and a failure kind and
/// service that vary with `i` (`i % 3` picks transient, timeout or circuit-open; odd numbers
/// are service `b`, even ones `a`).
pub fn record(i: u32) -> DeadLetter {
    let kind = [
        ParkReason::Transient,
        ParkReason::Timeout,
        ParkReason::CircuitOpen,
    ][(i % 3) as usize];
    let mut r = DeadLetter::new(
        if i.is_multiple_of(2) { "a" } else { "b" },
        Target {
            method: "POST".into(),
            uri: format!("http://127.0.0.1:9/orders/{i}"),
            headers: vec![
                Header {
                    name: "content-type".into(),
                    value: Payload(Bytes::from_static(b"application/json")),
                    redacted: false,
                },
                Header {
                    name: "x-binary".into(),
                    value: Payload(Bytes::from_static(&[0xc3, 0x28, 0xff])),
                    redacted: false,
                },
                Header {
                    name: "authorization".into(),
                    value: Payload(Bytes::from_static(
                        rampart_core::redact::REDACTED.as_bytes(),
                    )),
                    redacted: true,
                },
            ],
            body: RecordedBody::whole(Bytes::from(format!("{{\"order\":{i}}}"))),
            query_redacted: false,
        },
        Failure {
            kind,
            status: (kind == ParkReason::Transient).then_some(503),
            chain: vec![format!("failure {i}"), "cause".into()],
        },
    );
    r.idempotency_key = Some(format!("key-{i}"));
    r.attempts = 3;
    // Whole milliseconds, as every store keeps them.
    let t = system_time_from_millis(unix_millis(SystemTime::now()));
    r.first_failed_at = t - Duration::from_secs(u64::from(100 - i.min(100)));
    r.last_failed_at = t;
    r.updated_at = t;
    r
}

/// Runs every check against `store`, which must start empty. Leaves it empty.
pub async fn run(store: &dyn DeadLetterStore) {
    let name = store.describe();
    assert!(
        store.stats().await.unwrap().total == 0,
        "{name}: the conformance suite needs an empty store"
    );

    // append + get: the record comes back field for field.
    let records: Vec<DeadLetter> = (0..12).map(record).collect();
    for r in &records[..6] {
        store.append(r).await.unwrap();
    }
    store.append_batch(&records[6..]).await.unwrap();
    let got = store
        .get(records[4].id)
        .await
        .unwrap()
        .expect("appended record");
    assert_eq!(
        got, records[4],
        "{name}: get returns the record as appended"
    );
    assert!(
        store.get(DeadLetterId::new()).await.unwrap().is_none(),
        "{name}: get of an unknown id is None"
    );

    // An id stored twice is a conflict, and the first record stays.
    let mut dup = records[0].clone();
    dup.service = "other".into();
    let err = store.append(&dup).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Conflict, "{name}: {err}");
    assert_eq!(store.get(dup.id).await.unwrap().unwrap().service, "a");

    // list: id order, paging with a cursor, filters.
    let all = store.list(&Query::new(Filter::all(), 100)).await.unwrap();
    let ids: Vec<_> = all.iter().map(|r| r.id).collect();
    let expected: Vec<_> = records.iter().map(|r| r.id).collect();
    assert_eq!(ids, expected, "{name}: list is in id order");
    let page1 = store.list(&Query::new(Filter::all(), 5)).await.unwrap();
    assert_eq!(page1.len(), 5);
    let page2 = store
        .list(&Query::new(Filter::all(), 5).after(page1[4].id))
        .await
        .unwrap();
    assert_eq!(page2[0].id, records[5].id, "{name}: the cursor pages on");
    let last = store
        .list(&Query::new(Filter::all(), 5).after(records[10].id))
        .await
        .unwrap();
    assert_eq!(last.len(), 1, "{name}: the last page is short");

    let timeouts = store
        .list(&Query::new(Filter::all().kind(ParkReason::Timeout), 100))
        .await
        .unwrap();
    assert_eq!(timeouts.len(), 4, "{name}: filter by kind");
    assert!(
        timeouts
            .iter()
            .all(|r| r.failure.kind == ParkReason::Timeout)
    );
    let b = store
        .list(&Query::new(
            Filter::all().service("b").kind(ParkReason::Transient),
            100,
        ))
        .await
        .unwrap();
    assert_eq!(
        b.iter().map(|r| r.target.uri.clone()).collect::<Vec<_>>(),
        vec!["http://127.0.0.1:9/orders/3", "http://127.0.0.1:9/orders/9"],
        "{name}: filters combine"
    );
    let paged_filter = store
        .list(&Query::new(Filter::all().service("a"), 2).after(records[2].id))
        .await
        .unwrap();
    assert_eq!(
        paged_filter.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![records[4].id, records[6].id],
        "{name}: a filtered page starts after the cursor"
    );

    // update: state and counts change; an unknown id is NotFound.
    let mut changed = records[1].clone();
    changed.state = State::Delivered;
    changed.redrive_count = 2;
    changed.updated_at += Duration::from_secs(1);
    store.update(&changed).await.unwrap();
    changed.revision += 1;
    assert_eq!(
        store.get(changed.id).await.unwrap().unwrap(),
        changed,
        "{name}: an update stores the record at the next revision"
    );
    // A write from the same (now old) read is refused, and changes nothing.
    let mut late = records[1].clone();
    late.state = State::Pending;
    let err = store.update(&late).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Stale, "{name}: {err}");
    assert_eq!(store.get(changed.id).await.unwrap().unwrap(), changed);
    let mut given_up = records[2].clone();
    given_up.state = State::GivenUp;
    store.update(&given_up).await.unwrap();
    let err = store.update(&record(99)).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::NotFound, "{name}: {err}");
    let delivered = store
        .list(&Query::new(Filter::all().state(State::Delivered), 100))
        .await
        .unwrap();
    assert_eq!(delivered.len(), 1, "{name}: filter by state after update");

    // stats: by state, by kind, oldest pending.
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.total, 12);
    assert_eq!(stats.in_state(State::Pending), 10);
    assert_eq!(stats.in_state(State::Delivered), 1);
    assert_eq!(stats.in_state(State::GivenUp), 1);
    assert_eq!(stats.backlog(), 10);
    assert_eq!(stats.by_kind.get(&ParkReason::CircuitOpen), Some(&4));
    assert_eq!(
        stats.oldest_pending,
        Some(records[0].first_failed_at),
        "{name}: the oldest pending record's first failure"
    );

    // delete and purge.
    assert!(store.delete(records[3].id).await.unwrap());
    assert!(
        !store.delete(records[3].id).await.unwrap(),
        "{name}: deleted twice"
    );
    assert!(store.get(records[3].id).await.unwrap().is_none());
    let purged = store
        .purge(&Filter::all().state(State::Delivered))
        .await
        .unwrap();
    assert_eq!(purged, 1, "{name}: purge by state");
    let purged = store.purge(&Filter::all()).await.unwrap();
    assert_eq!(purged, 10, "{name}: purge everything else");
    assert_eq!(store.stats().await.unwrap(), Default::default());
}

/// A store that refuses everything with [`StoreErrorKind::Unavailable`], and counts the
/// attempts: for testing fallbacks.
#[derive(Debug, Default)]
pub struct FailingStore {
    calls: std::sync::atomic::AtomicU64,
}

impl FailingStore {
    /// A store that always fails.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many times it was asked for anything.
    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn fail<T>(&self) -> Result<T, crate::StoreError> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Err(
            crate::StoreError::new(self.describe(), StoreErrorKind::Unavailable)
                .with_source("connection refused"),
        )
    }
}

impl DeadLetterStore for FailingStore {
    fn describe(&self) -> String {
        "failing".into()
    }
    fn append<'a>(
        &'a self,
        _: &'a DeadLetter,
    ) -> rampart_core::BoxFuture<'a, Result<(), crate::StoreError>> {
        Box::pin(async move { self.fail() })
    }
    fn get(
        &self,
        _: DeadLetterId,
    ) -> rampart_core::BoxFuture<'_, Result<Option<DeadLetter>, crate::StoreError>> {
        Box::pin(async move { self.fail() })
    }
    fn list<'a>(
        &'a self,
        _: &'a Query,
    ) -> rampart_core::BoxFuture<'a, Result<Vec<DeadLetter>, crate::StoreError>> {
        Box::pin(async move { self.fail() })
    }
    fn update<'a>(
        &'a self,
        _: &'a DeadLetter,
    ) -> rampart_core::BoxFuture<'a, Result<(), crate::StoreError>> {
        Box::pin(async move { self.fail() })
    }
    fn delete(
        &self,
        _: DeadLetterId,
    ) -> rampart_core::BoxFuture<'_, Result<bool, crate::StoreError>> {
        Box::pin(async move { self.fail() })
    }
    fn purge<'a>(
        &'a self,
        _: &'a Filter,
    ) -> rampart_core::BoxFuture<'a, Result<u64, crate::StoreError>> {
        Box::pin(async move { self.fail() })
    }
    fn stats(&self) -> rampart_core::BoxFuture<'_, Result<crate::Stats, crate::StoreError>> {
        Box::pin(async move { self.fail() })
    }
}

/// `n` appends at once, each from its own task: every one succeeds and every record is stored
/// whole, in id order. Needs a multi-threaded tokio runtime to mean much; the store must start
/// empty, and is left holding the `n` records.
pub async fn concurrent_appends(store: std::sync::Arc<dyn DeadLetterStore>, n: u32) {
    let name = store.describe();
    let records: Vec<DeadLetter> = (0..n).map(record).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for r in records.clone() {
        let store = store.clone();
        tasks.spawn(async move { store.append(&r).await });
    }
    while let Some(result) = tasks.join_next().await {
        result
            .expect("an appending task")
            .unwrap_or_else(|e| panic!("{name}: a concurrent append failed: {e}"));
    }
    let mut expected = records;
    expected.sort_by_key(|r| r.id);
    let stored = store
        .list(&Query::new(Filter::all(), n as usize + 1))
        .await
        .unwrap();
    assert_eq!(
        stored, expected,
        "{name}: every concurrent append is stored whole"
    );
    assert_eq!(store.stats().await.unwrap().total, u64::from(n));
}

/// Compare-and-set under contention, then two [`Redrive`](crate::Redrive)s of the store at
/// once. Needs a multi-threaded tokio runtime, and an empty store (left holding 21 records).
///
/// - 8 tasks each try to update one record from the same read: exactly one wins, the others get
///   [`StoreErrorKind::Stale`], and the record ends at revision 1 with the winner's change.
/// - Two redrives run [`all`](crate::Redrive::all) at once over 20 pending records, through an
///   upstream that answers a request's first send `200` and any later one `503`: every record
///   is sent exactly once, and ends `delivered` with one redrive counted (a second send would
///   have written `pending` over `delivered`).
pub async fn concurrent_redrives(store: std::sync::Arc<dyn DeadLetterStore>) {
    use std::{
        collections::HashMap,
        sync::{Arc, Mutex},
    };

    let name = store.describe();
    assert_eq!(
        store.stats().await.unwrap().total,
        0,
        "{name}: needs an empty store"
    );

    // Compare-and-set: one winner among writers that read the same revision.
    let contested = record(100);
    store.append(&contested).await.unwrap();
    let read = store.get(contested.id).await.unwrap().unwrap();
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..8u32 {
        let store = store.clone();
        let mut r = read.clone();
        writers.spawn(async move {
            r.labels.insert("writer".into(), i.to_string());
            r.redrive_count = i + 1;
            store.update(&r).await.map(|()| i)
        });
    }
    let mut winners = Vec::new();
    while let Some(done) = writers.join_next().await {
        match done.expect("a writing task") {
            Ok(i) => winners.push(i),
            Err(e) => assert_eq!(e.kind(), StoreErrorKind::Stale, "{name}: {e}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "{name}: exactly one of 8 concurrent updates from one read wins"
    );
    let stored = store.get(contested.id).await.unwrap().unwrap();
    assert_eq!(stored.revision, 1, "{name}");
    assert_eq!(
        stored.redrive_count,
        winners[0] + 1,
        "{name}: the winner's change"
    );
    let mut done = stored;
    done.state = State::Delivered;
    store.update(&done).await.unwrap();

    // Two redrives at once.
    let records: Vec<DeadLetter> = (0..20).map(record).collect();
    store.append_batch(&records).await.unwrap();
    let sends: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let upstream = {
        let sends = sends.clone();
        tower::service_fn(move |req: http::Request<Bytes>| {
            let sends = sends.clone();
            async move {
                let n = {
                    let mut sends = sends.lock().unwrap();
                    let n = sends.entry(req.uri().to_string()).or_insert(0);
                    *n += 1;
                    *n
                };
                // Let the other redrive run in between.
                tokio::task::yield_now().await;
                let mut res = http::Response::new(String::new());
                if n > 1 {
                    *res.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                }
                Ok::<_, std::convert::Infallible>(res)
            }
        })
    };
    let redrive = |upstream| {
        crate::Redrive::builder(store.clone(), upstream)
            .concurrency(4)
            .build()
            .unwrap()
    };
    let (a, b) = (redrive(upstream.clone()), redrive(upstream));
    let a = tokio::spawn(async move { a.all(|_| {}).await });
    let b = tokio::spawn(async move { b.all(|_| {}).await });
    let (sa, sb) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    assert_eq!(sa.errors + sb.errors, 0, "{name}: {sa:?} {sb:?}");
    assert_eq!(
        sa.delivered + sb.delivered,
        20,
        "{name}: each record delivered by one of the two: {sa:?} {sb:?}"
    );
    let sends = sends.lock().unwrap().clone();
    assert_eq!(sends.len(), 20, "{name}: every record sent");
    assert!(
        sends.values().all(|&n| n == 1),
        "{name}: every record sent exactly once: {sends:?}"
    );
    for r in &records {
        let now = store.get(r.id).await.unwrap().unwrap();
        assert_eq!(now.state, State::Delivered, "{name}: {}", r.id);
        assert_eq!(now.redrive_count, 1, "{name}: {}", r.id);
        assert!(
            now.lease.is_none(),
            "{name}: a finished record holds no lease"
        );
    }
}

/// A gRPC answer as a server that has sent a message reports its status: `200`,
/// `content-type: application/grpc`, one message, then `grpc-status: code` in the trailers.
pub fn grpc_answer(code: &'static str) -> http::Response<GrpcAnswerBody> {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static(code));
    let mut res = http::Response::new(GrpcAnswerBody {
        frames: vec![
            http_body::Frame::trailers(trailers),
            http_body::Frame::data(Bytes::from_static(b"\0\0\0\0\x02hi")),
        ],
    });
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    res
}

/// The body of [`grpc_answer`]: one data frame, then the trailers.
#[derive(Debug)]
pub struct GrpcAnswerBody {
    frames: Vec<http_body::Frame<Bytes>>,
}

impl http_body::Body for GrpcAnswerBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.frames.pop().map(Ok))
    }
}
