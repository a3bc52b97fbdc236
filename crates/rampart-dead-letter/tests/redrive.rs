#![allow(clippy::unwrap_used)]
//! Redrive: parked requests are sent again, paced, with their idempotency key, and each
//! record's state follows the outcome.

use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use rampart_dead_letter::{
    BoxFuture, DeadLetter, DeadLetterStore, MemoryStore, Redrive, RedriveOutcome, Skip, State,
    StoreErrorKind, Summary, conformance::record,
};
use tower::service_fn;

fn store_with(n: u32) -> (Arc<MemoryStore>, Vec<DeadLetter>) {
    let store = Arc::new(MemoryStore::bounded(1000).unwrap());
    let records: Vec<_> = (0..n).map(record).collect();
    // The memory store answers at once.
    rampart_core::testing::ready(store.append_batch(&records))
        .unwrap()
        .unwrap();
    (store, records)
}

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    key: Option<String>,
    auth: bool,
    body: Bytes,
}

/// An upstream answering `status` and noting what it got.
fn upstream(
    status: StatusCode,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future: Send,
> + Clone
+ Send
+ 'static {
    service_fn(move |req: Request<Full<Bytes>>| {
        let seen = seen.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            seen.lock().unwrap().push(Seen {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                key: parts
                    .headers
                    .get("idempotency-key")
                    .map(|v| v.to_str().unwrap().to_owned()),
                auth: parts.headers.contains_key("authorization"),
                body,
            });
            let mut res = Response::new(Full::new(Bytes::new()));
            *res.status_mut() = status;
            Ok(res)
        }
    })
}

#[tokio::test]
async fn a_recovered_upstream_gets_every_record_with_its_key_and_body() {
    let (store, records) = store_with(5);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let redrive = Redrive::builder(store.clone(), upstream(StatusCode::OK, seen.clone()))
        .build()
        .unwrap();
    let mut reported = Vec::new();
    let summary = redrive
        .all(|p| reported.push((p.id, p.outcome.clone())))
        .await
        .unwrap();
    assert_eq!(
        summary,
        Summary {
            seen: 5,
            delivered: 5,
            ..Summary::default()
        }
    );
    assert_eq!(reported.len(), 5, "progress after each record");

    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by(|a, b| a.uri.cmp(&b.uri));
    for (r, s) in records.iter().zip(&seen) {
        assert_eq!(s.method, "POST");
        assert_eq!(s.uri, r.target.uri);
        assert_eq!(s.key, r.idempotency_key, "the original key is reused");
        assert!(!s.auth, "a redacted header is left out");
        assert_eq!(s.body, r.target.body.data.0);
    }
    for r in &records {
        let now = store.get(r.id).await.unwrap().unwrap();
        assert_eq!(now.state, State::Delivered);
        assert_eq!(now.redrive_count, 1);
    }
    // Nothing left pending: a second run sends nothing.
    let again = redrive.all(|_| {}).await.unwrap();
    assert_eq!(again.seen, 0);
}

#[tokio::test]
async fn failures_count_up_and_the_last_one_gives_up_and_alerts() {
    let (store, records) = store_with(2);
    let alerts = Arc::new(AtomicUsize::new(0));
    let a = alerts.clone();
    let redrive = Redrive::builder(
        store.clone(),
        upstream(StatusCode::BAD_GATEWAY, Arc::default()),
    )
    .max_redrives(2)
    .on_give_up(move |r| {
        assert_eq!(r.state, State::GivenUp);
        a.fetch_add(1, Ordering::SeqCst);
    })
    .build()
    .unwrap();

    let first = redrive.all(|_| {}).await.unwrap();
    assert_eq!(first.failed, 2);
    let r = store.get(records[0].id).await.unwrap().unwrap();
    assert_eq!(r.state, State::Pending);
    assert_eq!(r.redrive_count, 1);
    assert_eq!(r.failure.status, Some(502), "the new failure is recorded");
    assert_eq!(alerts.load(Ordering::SeqCst), 0);

    let second = redrive.all(|_| {}).await.unwrap();
    assert_eq!(second.given_up, 2);
    assert_eq!(alerts.load(Ordering::SeqCst), 2, "one alert per record");
    let r = store.get(records[0].id).await.unwrap().unwrap();
    assert_eq!(r.state, State::GivenUp);
    assert_eq!(r.redrive_count, 2);

    // Given-up records are skipped when asked for by id.
    let outcome = redrive.one(records[0].id).await.unwrap();
    assert_eq!(
        outcome,
        RedriveOutcome::Skipped {
            state: State::GivenUp,
            why: Skip::Finished,
        }
    );
}

#[tokio::test]
async fn a_truncated_record_is_given_up_without_sending() {
    let (store, records) = store_with(1);
    let mut r = records[0].clone();
    r.target.body.truncated = true;
    store.update(&r).await.unwrap();
    r.revision += 1;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let redrive = Redrive::builder(store.clone(), upstream(StatusCode::OK, seen.clone()))
        .build()
        .unwrap();
    let outcome = redrive.one(r.id).await.unwrap();
    let RedriveOutcome::GivenUp { failure } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(failure.chain[0].contains("truncated"), "{failure:?}");
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_unknown_id_is_not_found() {
    let (store, _) = store_with(0);
    let redrive = Redrive::builder(store, upstream(StatusCode::OK, Arc::default()))
        .build()
        .unwrap();
    let err = redrive
        .one(rampart_dead_letter::DeadLetterId::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::NotFound);
}

#[tokio::test(start_paused = true)]
async fn sends_are_paced_and_bounded() {
    let (store, _) = store_with(6);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let starts = Arc::new(Mutex::new(Vec::new()));
    let (f, p, s) = (in_flight.clone(), peak.clone(), starts.clone());
    let slow = service_fn(move |_: Request<Full<Bytes>>| {
        let (f, p, s) = (f.clone(), p.clone(), s.clone());
        async move {
            s.lock().unwrap().push(tokio::time::Instant::now());
            let now = f.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(1)).await;
            f.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }
    });
    let redrive = Redrive::builder(store, slow)
        .rate(10.0)
        .concurrency(2)
        .build()
        .unwrap();
    let summary = redrive.all(|_| {}).await.unwrap();
    assert_eq!(summary.delivered, 6);
    assert_eq!(peak.load(Ordering::SeqCst), 2, "never more than 2 at once");
    let starts = starts.lock().unwrap();
    for pair in starts.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(100),
            "at most 10 per second"
        );
    }
}

#[test]
fn bad_settings_name_the_field() {
    let (store, _) = store_with(0);
    let svc = upstream(StatusCode::OK, Arc::default());
    let err = Redrive::builder(store.clone(), svc.clone())
        .rate(0.0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "rate");
    let err = Redrive::builder(store.clone(), svc.clone())
        .concurrency(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "concurrency");
    let err = Redrive::builder(store, svc)
        .max_redrives(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_redrives");
}

/// A wall clock that follows tokio's (paused) time, for leases: now and at any later call.
#[derive(Clone, Copy)]
struct TokioWallClock {
    start: std::time::SystemTime,
    at: tokio::time::Instant,
}

impl TokioWallClock {
    fn new() -> Self {
        Self {
            start: std::time::SystemTime::now(),
            at: tokio::time::Instant::now(),
        }
    }

    fn now(self) -> std::time::SystemTime {
        self.start + self.at.elapsed()
    }
}

/// A memory store whose `update`s of one record fail while `fail` is set.
#[derive(Debug)]
struct FlakyStore {
    inner: MemoryStore,
    victim: Mutex<Option<rampart_dead_letter::DeadLetterId>>,
    failed: AtomicUsize,
}

impl DeadLetterStore for FlakyStore {
    fn describe(&self) -> String {
        "flaky".into()
    }
    fn append<'a>(
        &'a self,
        record: &'a DeadLetter,
    ) -> BoxFuture<'a, Result<(), rampart_dead_letter::StoreError>> {
        self.inner.append(record)
    }
    fn get(
        &self,
        id: rampart_dead_letter::DeadLetterId,
    ) -> BoxFuture<'_, Result<Option<DeadLetter>, rampart_dead_letter::StoreError>> {
        self.inner.get(id)
    }
    fn list<'a>(
        &'a self,
        query: &'a rampart_dead_letter::Query,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, rampart_dead_letter::StoreError>> {
        self.inner.list(query)
    }
    fn update<'a>(
        &'a self,
        record: &'a DeadLetter,
    ) -> BoxFuture<'a, Result<(), rampart_dead_letter::StoreError>> {
        // Fails the write of the victim's outcome (after its claim and its send).
        if *self.victim.lock().unwrap() == Some(record.id) && record.state != State::Redriving {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Box::pin(async {
                Err(
                    rampart_dead_letter::StoreError::new("flaky", StoreErrorKind::Unavailable)
                        .with_source("disk I/O error"),
                )
            });
        }
        self.inner.update(record)
    }
    fn delete(
        &self,
        id: rampart_dead_letter::DeadLetterId,
    ) -> BoxFuture<'_, Result<bool, rampart_dead_letter::StoreError>> {
        self.inner.delete(id)
    }
    fn purge<'a>(
        &'a self,
        filter: &'a rampart_dead_letter::Filter,
    ) -> BoxFuture<'a, Result<u64, rampart_dead_letter::StoreError>> {
        self.inner.purge(filter)
    }
    fn stats(
        &self,
    ) -> BoxFuture<'_, Result<rampart_dead_letter::Stats, rampart_dead_letter::StoreError>> {
        self.inner.stats()
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_error_on_one_record_stops_nothing_else_and_its_lease_frees_it() {
    let (memory, records) = store_with(6);
    let flaky = Arc::new(FlakyStore {
        inner: Arc::into_inner(memory).unwrap(),
        victim: Mutex::new(Some(records[2].id)),
        failed: AtomicUsize::new(0),
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let clock = TokioWallClock::new();
    let redrive = Redrive::builder(flaky.clone(), upstream(StatusCode::OK, seen.clone()))
        .lease(Duration::from_secs(60))
        .wall_clock(move || clock.now())
        .build()
        .unwrap();

    let mut errored = Vec::new();
    let summary = redrive
        .all(|p| {
            if let RedriveOutcome::Errored { error, sent } = p.outcome {
                errored.push((p.id, error.clone(), *sent));
            }
        })
        .await
        .unwrap();
    assert_eq!(
        summary.delivered, 5,
        "the other records went on: {summary:?}"
    );
    assert_eq!(summary.errors, 1, "{summary:?}");
    assert_eq!(errored.len(), 1);
    assert_eq!(errored[0].0, records[2].id);
    assert!(errored[0].1.contains("disk I/O error"), "{errored:?}");
    assert!(errored[0].2, "it had been sent");

    // The victim is held by the lease: not sent again while it lasts …
    let held = flaky.get(records[2].id).await.unwrap().unwrap();
    assert_eq!(held.state, State::Redriving);
    assert!(!held.is_claimable(clock.now()));
    *flaky.victim.lock().unwrap() = None;
    let early = redrive.all(|_| {}).await.unwrap();
    assert_eq!(early.skipped, 1, "{early:?}");
    assert_eq!(early.delivered, 0);

    // … and claimable once it has run out: the next run delivers it, with the same key.
    tokio::time::advance(Duration::from_secs(61)).await;
    let later = redrive.all(|_| {}).await.unwrap();
    assert_eq!(later.delivered, 1, "{later:?}");
    let r = flaky.get(records[2].id).await.unwrap().unwrap();
    assert_eq!(r.state, State::Delivered);
    let seen = seen.lock().unwrap();
    let sends: Vec<_> = seen
        .iter()
        .filter(|s| s.uri == records[2].target.uri)
        .collect();
    assert_eq!(
        sends.len(),
        2,
        "sent, outcome lost, sent again after the lease"
    );
    assert!(sends.iter().all(|s| s.key == records[2].idempotency_key));
}

#[tokio::test(start_paused = true)]
async fn a_run_dropped_mid_way_leaves_every_record_delivered_or_claimable() {
    let (store, records) = store_with(8);
    let slow = service_fn(|_: Request<Full<Bytes>>| async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let clock = TokioWallClock::new();
    let redrive = Redrive::builder(store.clone(), slow)
        .concurrency(2)
        .lease(Duration::from_secs(60))
        .wall_clock(move || clock.now())
        .build()
        .unwrap();
    // Ctrl-C after 25 s: two rounds of two done, two more in flight.
    let cut = tokio::time::timeout(Duration::from_secs(25), redrive.all(|_| {})).await;
    assert!(cut.is_err(), "the run was cut off");

    let ids: Vec<_> = records.iter().map(|r| r.id).collect();
    let states = |store: Arc<MemoryStore>| {
        let ids = ids.clone();
        async move {
            let mut by = std::collections::BTreeMap::new();
            for id in ids {
                let r = store.get(id).await.unwrap().unwrap();
                *by.entry(r.state).or_insert(0) += 1;
            }
            by
        }
    };
    let after_cut = states(store.clone()).await;
    assert_eq!(after_cut.get(&State::Delivered), Some(&4), "{after_cut:?}");
    assert_eq!(
        after_cut.get(&State::Redriving),
        Some(&2),
        "the sends in flight keep their claims: {after_cut:?}"
    );

    // Past the lease, the stranded claims are claimable again and the next run takes them.
    tokio::time::advance(Duration::from_secs(61)).await;
    let now = clock.now();
    for r in store
        .list(&rampart_dead_letter::Query::new(
            rampart_dead_letter::Filter::all().state(State::Redriving),
            10,
        ))
        .await
        .unwrap()
    {
        assert!(r.is_claimable(now), "{r:?}");
        assert_eq!(
            r.redrive_count, 0,
            "nothing counted for a send that never finished"
        );
    }
    let rest = redrive.all(|_| {}).await.unwrap();
    assert_eq!(rest.delivered, 4, "{rest:?}");
    let done = states(store).await;
    assert_eq!(done.get(&State::Delivered), Some(&8), "{done:?}");
}

#[tokio::test]
async fn a_panicking_service_is_reported_and_the_others_go_on() {
    let (store, records) = store_with(4);
    let bad = records[1].target.uri.clone();
    let svc = service_fn(move |req: Request<Full<Bytes>>| {
        let bad = bad.clone();
        async move {
            assert_ne!(req.uri().to_string(), bad, "boom");
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }
    });
    let redrive = Redrive::builder(store.clone(), svc).build().unwrap();
    let summary = redrive.all(|_| {}).await.unwrap();
    assert_eq!(summary.delivered, 3, "{summary:?}");
    assert_eq!(summary.errors, 1, "{summary:?}");
    let r = store.get(records[1].id).await.unwrap().unwrap();
    assert_eq!(r.state, State::Redriving, "left to its lease");
}

#[tokio::test]
async fn a_grpc_failure_in_the_trailers_is_not_delivered() {
    let (store, records) = store_with(2);
    let failing = records[0].target.uri.clone();
    let svc = service_fn(move |req: Request<Full<Bytes>>| {
        let code = if req.uri().to_string() == failing {
            "14"
        } else {
            "0"
        };
        async move { Ok::<_, Infallible>(rampart_dead_letter::conformance::grpc_answer(code)) }
    });
    // The default classifier judges a gRPC answer by its trailers.
    let redrive = Redrive::builder(store.clone(), svc).build().unwrap();
    let summary = redrive.all(|_| {}).await.unwrap();
    assert_eq!(summary.delivered, 1, "{summary:?}");
    assert_eq!(summary.failed, 1, "{summary:?}");
    let r = store.get(records[0].id).await.unwrap().unwrap();
    assert_eq!(
        r.state,
        State::Pending,
        "UNAVAILABLE in the trailers: still pending"
    );
    assert_eq!(r.failure.kind, rampart_dead_letter::ParkReason::Transient);
    assert!(
        r.failure.chain[0].contains("grpc-status 14"),
        "{:?}",
        r.failure
    );
    let ok = store.get(records[1].id).await.unwrap().unwrap();
    assert_eq!(ok.state, State::Delivered);
}

#[tokio::test]
async fn a_keyless_post_is_not_resent_unless_allowed_but_a_keyless_put_is() {
    let (store, records) = store_with(2);
    let mut post = records[0].clone();
    post.idempotency_key = None;
    store.update(&post).await.unwrap();
    let mut put = records[1].clone();
    put.idempotency_key = None;
    put.target.method = "PUT".into();
    store.update(&put).await.unwrap();

    let seen = Arc::new(Mutex::new(Vec::new()));
    let redrive = Redrive::builder(store.clone(), upstream(StatusCode::OK, seen.clone()))
        .build()
        .unwrap();
    let mut skipped = Vec::new();
    let summary = redrive
        .all(|p| {
            if let RedriveOutcome::Skipped { why, .. } = p.outcome {
                skipped.push((p.id, why.clone()));
            }
        })
        .await
        .unwrap();
    assert_eq!(summary.delivered, 1, "{summary:?}");
    assert_eq!(skipped, vec![(post.id, Skip::Unkeyed)]);
    assert_eq!(seen.lock().unwrap().len(), 1, "only the PUT went out");
    assert_eq!(
        store.get(post.id).await.unwrap().unwrap().state,
        State::Pending,
        "left for a person to look at"
    );

    let opted_in = Redrive::builder(store.clone(), upstream(StatusCode::OK, seen.clone()))
        .allow_keyless_replays(true)
        .build()
        .unwrap();
    assert_eq!(opted_in.all(|_| {}).await.unwrap().delivered, 1);
    assert_eq!(
        store.get(post.id).await.unwrap().unwrap().state,
        State::Delivered
    );
}

#[tokio::test]
async fn a_redirect_is_not_a_delivery() {
    let (store, records) = store_with(1);
    let svc = service_fn(|_: Request<Full<Bytes>>| async {
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.status_mut() = StatusCode::TEMPORARY_REDIRECT;
        res.headers_mut().insert(
            "location",
            http::HeaderValue::from_static("https://login.example/?session=S3CRET"),
        );
        Ok::<_, Infallible>(res)
    });
    let redrive = Redrive::builder(store.clone(), svc).build().unwrap();
    let summary = redrive.all(|_| {}).await.unwrap();
    assert_eq!(summary.failed, 1, "{summary:?}");
    let r = store.get(records[0].id).await.unwrap().unwrap();
    assert_eq!(r.state, State::Pending);
    assert_eq!(r.failure.status, Some(307));
    assert!(r.failure.chain[0].contains("redirect"), "{:?}", r.failure);
    assert!(
        !r.failure.chain[0].contains("S3CRET"),
        "the location is redacted: {:?}",
        r.failure
    );
}

#[tokio::test]
async fn a_record_whose_query_was_masked_is_given_up_with_the_reason() {
    let (store, records) = store_with(1);
    let mut r = records[0].clone();
    r.target.uri = "http://127.0.0.1:9/orders?token=[redacted]".into();
    r.target.query_redacted = true;
    store.update(&r).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let redrive = Redrive::builder(store.clone(), upstream(StatusCode::OK, seen.clone()))
        .build()
        .unwrap();
    let RedriveOutcome::GivenUp { failure } = redrive.one(r.id).await.unwrap() else {
        panic!("not given up")
    };
    assert!(failure.chain[0].contains("keep_query"), "{failure:?}");
    assert!(seen.lock().unwrap().is_empty(), "nothing sent");
}

#[tokio::test(start_paused = true)]
async fn all_never_meets_its_own_claims_as_another_redrives() {
    let (store, _) = store_with(6);
    let slow = service_fn(|_: Request<Full<Bytes>>| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let redrive = Redrive::builder(store, slow)
        .concurrency(6)
        .build()
        .unwrap();
    let summary = redrive.all(|_| {}).await.unwrap();
    assert_eq!(
        summary,
        Summary {
            seen: 6,
            delivered: 6,
            ..Summary::default()
        }
    );
}

/// A store whose appends land but report a timeout, as a networked store's do when the reply
/// is lost.
#[derive(Debug)]
struct LandsButTimesOut(MemoryStore);

impl DeadLetterStore for LandsButTimesOut {
    fn describe(&self) -> String {
        "lands-but-times-out".into()
    }
    fn append<'a>(
        &'a self,
        record: &'a DeadLetter,
    ) -> BoxFuture<'a, Result<(), rampart_dead_letter::StoreError>> {
        Box::pin(async move {
            self.0.append(record).await?;
            Err(
                rampart_dead_letter::StoreError::new("lands", StoreErrorKind::Unavailable)
                    .with_source("no answer within 1s"),
            )
        })
    }
    fn get(
        &self,
        id: rampart_dead_letter::DeadLetterId,
    ) -> BoxFuture<'_, Result<Option<DeadLetter>, rampart_dead_letter::StoreError>> {
        self.0.get(id)
    }
    fn list<'a>(
        &'a self,
        query: &'a rampart_dead_letter::Query,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, rampart_dead_letter::StoreError>> {
        self.0.list(query)
    }
    fn update<'a>(
        &'a self,
        record: &'a DeadLetter,
    ) -> BoxFuture<'a, Result<(), rampart_dead_letter::StoreError>> {
        self.0.update(record)
    }
    fn delete(
        &self,
        id: rampart_dead_letter::DeadLetterId,
    ) -> BoxFuture<'_, Result<bool, rampart_dead_letter::StoreError>> {
        self.0.delete(id)
    }
    fn purge<'a>(
        &'a self,
        filter: &'a rampart_dead_letter::Filter,
    ) -> BoxFuture<'a, Result<u64, rampart_dead_letter::StoreError>> {
        self.0.purge(filter)
    }
    fn stats(
        &self,
    ) -> BoxFuture<'_, Result<rampart_dead_letter::Stats, rampart_dead_letter::StoreError>> {
        self.0.stats()
    }
}

#[tokio::test]
async fn a_record_both_stores_kept_is_sent_once() {
    use rampart_dead_letter::DeadLetterLayer;
    use tower::{Layer, ServiceExt};

    let primary = Arc::new(LandsButTimesOut(MemoryStore::bounded(10).unwrap()));
    let secondary = Arc::new(MemoryStore::bounded(10).unwrap());
    let svc = DeadLetterLayer::builder("billing", primary.clone())
        .secondary(secondary.clone())
        .build()
        .unwrap()
        .layer(service_fn(
            |_: Request<rampart_core::body::ReplayBody<Full<Bytes>>>| async {
                let mut res = Response::new(Full::new(Bytes::new()));
                *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                Ok::<_, Infallible>(res)
            },
        ));
    let req = Request::post("http://127.0.0.1:9/charge")
        .header("idempotency-key", "order-1")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    svc.oneshot(req).await.unwrap();
    let in_both = |s: &dyn DeadLetterStore| {
        rampart_core::testing::ready(s.stats())
            .unwrap()
            .unwrap()
            .total
    };
    assert_eq!(
        (in_both(&*primary), in_both(&*secondary)),
        (1, 1),
        "two copies"
    );

    let seen = Arc::new(Mutex::new(Vec::new()));
    let from_primary = Redrive::builder(primary.clone(), upstream(StatusCode::OK, seen.clone()))
        .build()
        .unwrap();
    assert_eq!(from_primary.all(|_| {}).await.unwrap().delivered, 1);
    let from_secondary =
        Redrive::builder(secondary.clone(), upstream(StatusCode::OK, seen.clone()))
            .primary(primary.clone())
            .build()
            .unwrap();
    let mut why = Vec::new();
    let summary = from_secondary
        .all(|p| {
            if let RedriveOutcome::Skipped { why: w, .. } = p.outcome {
                why.push(w.clone());
            }
        })
        .await
        .unwrap();
    assert_eq!(summary.delivered, 0, "{summary:?}");
    assert_eq!(why, vec![Skip::Duplicate]);
    assert_eq!(seen.lock().unwrap().len(), 1, "sent once in all");
    assert_eq!(in_both(&*secondary), 0, "the copy is gone");
}
