use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use rampart_core::error::BoxError;
use rampart_core::{
    readiness::AlwaysReady,
    rejection::{CircuitOpen, RejectedBy},
};
use tokio::sync::watch;
use tower_service::Service;

use super::*;
use crate::{DeadLetterStore, MemoryStore, State, conformance::record};

type Sends = Arc<Mutex<HashMap<String, u32>>>;

/// An upstream that counts sends per idempotency key and answers with `answer(n)` for the
/// n-th send overall.
fn upstream(
    answer: impl Fn(u32) -> Result<StatusCode, BoxError> + Clone + Send + Sync + 'static,
) -> (
    impl Service<Request<Bytes>, Response = Response<String>, Error = BoxError, Future = impl Send>
    + Clone
    + Send
    + Sync
    + 'static,
    Sends,
) {
    let sends: Sends = Arc::default();
    let seen = sends.clone();
    let total = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let svc = tower::service_fn(move |req: Request<Bytes>| {
        let (seen, answer, total) = (seen.clone(), answer.clone(), total.clone());
        async move {
            let key = req
                .headers()
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_owned();
            *seen.lock().unwrap().entry(key).or_insert(0) += 1;
            let n = total.fetch_add(1, Ordering::AcqRel) + 1;
            let status = answer(n)?;
            let mut res = Response::new(String::new());
            *res.status_mut() = status;
            Ok::<_, BoxError>(res)
        }
    });
    (svc, sends)
}

/// A store holding `n` parked records, and their ids.
async fn parked(n: u32) -> (Arc<MemoryStore>, Vec<crate::DeadLetterId>) {
    let store = Arc::new(MemoryStore::bounded(1000).unwrap());
    let mut ids = Vec::new();
    for i in 0..n {
        let r = record(i);
        store.append(&r).await.unwrap();
        ids.push(r.id);
    }
    (store, ids)
}

/// Waits (in paused time) until `cond` holds, for at most ten virtual minutes.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..60_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

/// Each record's state and redrive count.
async fn states(store: &MemoryStore, ids: &[crate::DeadLetterId]) -> Vec<(State, u32)> {
    let mut out = Vec::new();
    for id in ids {
        let r = store.get(*id).await.unwrap().expect("still stored");
        out.push((r.state, r.redrive_count));
    }
    out
}

#[tokio::test(start_paused = true)]
async fn waits_while_not_ready_then_drains_every_record_once() {
    let (store, ids) = parked(5).await;
    let (svc, sends) = upstream(|_| Ok(StatusCode::OK));
    let (up, ready) = watch::channel(false);
    let redrive = Redrive::builder(store.clone(), svc).build().unwrap();
    let drain = Drain::builder(redrive, ready).build().unwrap().spawn();

    eventually("waiting", || drain.state() == DrainState::Waiting).await;
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(
        sends.lock().unwrap().is_empty(),
        "nothing sent while not ready"
    );
    assert_eq!(drain.stats().passes, 0);

    up.send(true).unwrap();
    eventually("delivered", || drain.stats().delivered == 5).await;
    let sends = sends.lock().unwrap().clone();
    assert_eq!(sends.len(), 5);
    assert!(sends.values().all(|&n| n == 1), "{sends:?}");
    for (state, redrives) in states(&store, &ids).await {
        assert_eq!((state, redrives), (State::Delivered, 1));
    }
    drain.stop();
    drain.stopped().await;
    assert_eq!(drain.state(), DrainState::Stopped);
}

#[tokio::test(start_paused = true)]
async fn stops_sending_when_the_dependency_fails_again_and_resumes_after() {
    let (store, ids) = parked(6).await;
    let (up, ready) = watch::channel(true);
    let flip = Arc::new(Mutex::new(Some(up)));
    let f = flip.clone();
    // The second send finds the dependency down again (its breaker would open).
    let (svc, sends) = upstream(move |n| {
        if n == 2 {
            f.lock().unwrap().as_ref().unwrap().send(false).unwrap();
        }
        Ok(StatusCode::OK)
    });
    let redrive = Redrive::builder(store.clone(), svc)
        .rate(1.0)
        .concurrency(1)
        .build()
        .unwrap();
    let drain = Drain::builder(redrive, ready).build().unwrap().spawn();

    eventually("waiting again", || {
        drain.stats().delivered == 2 && drain.state() == DrainState::Waiting
    })
    .await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(sends.lock().unwrap().len(), 2, "no send after the turn");
    let pending = states(&store, &ids)
        .await
        .iter()
        .filter(|(s, n)| *s == State::Pending && *n == 0)
        .count();
    assert_eq!(pending, 4, "the records not reached are untouched");

    flip.lock().unwrap().as_ref().unwrap().send(true).unwrap();
    eventually("the rest delivered", || drain.stats().delivered == 6).await;
    assert!(sends.lock().unwrap().values().all(|&n| n == 1));
    drain.stop();
}

#[tokio::test(start_paused = true)]
async fn a_local_rejection_releases_the_record_uncounted_and_does_not_spin() {
    let (store, ids) = parked(3).await;
    let (svc, _) = upstream(|_| Err(CircuitOpen::new(RejectedBy::Open, None).into()));
    let redrive = Redrive::builder(store.clone(), svc).build().unwrap();
    let drain = Drain::builder(redrive, AlwaysReady)
        .poll_interval(Duration::from_secs(10))
        .build()
        .unwrap()
        .spawn();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let stats = drain.stats();
    assert!(stats.rejected >= 1, "{stats:?}");
    assert!(
        stats.passes <= 8,
        "one pass per poll interval, not a busy loop: {stats:?}"
    );
    assert_eq!(stats.failed + stats.given_up, 0, "{stats:?}");
    for (state, redrives) in states(&store, &ids).await {
        assert_eq!(
            (state, redrives),
            (State::Pending, 0),
            "released, no redrive counted"
        );
    }
    drain.stop();
    drain.stopped().await;
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_redrives_and_fires_the_alert_once_per_record() {
    let (store, ids) = parked(2).await;
    let (svc, sends) = upstream(|_| Ok(StatusCode::SERVICE_UNAVAILABLE));
    let alerts = Arc::new(Mutex::new(Vec::new()));
    let a = alerts.clone();
    let redrive = Redrive::builder(store.clone(), svc)
        .max_redrives(3)
        .on_give_up(move |r| a.lock().unwrap().push(r.id))
        .build()
        .unwrap();
    let drain = Drain::builder(redrive, AlwaysReady)
        .poll_interval(Duration::from_secs(1))
        .build()
        .unwrap()
        .spawn();
    eventually("given up", || drain.stats().given_up == 2).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let mut alerted = alerts.lock().unwrap().clone();
    alerted.sort();
    let mut ids = ids;
    ids.sort();
    assert_eq!(alerted, ids, "one alert per record");
    assert!(sends.lock().unwrap().values().all(|&n| n == 3));
    assert_eq!(
        drain.stats().failed,
        4,
        "two failures each before the third gives up"
    );
    drain.stop();
}

#[tokio::test(start_paused = true)]
async fn stopping_lets_a_send_in_flight_finish_and_record() {
    let (store, ids) = parked(1).await;
    let release = Arc::new(tokio::sync::Notify::new());
    let r = release.clone();
    let svc = tower::service_fn(move |_: Request<Bytes>| {
        let r = r.clone();
        async move {
            r.notified().await;
            Ok::<_, Infallible>(Response::new(String::new()))
        }
    });
    let redrive = Redrive::builder(store.clone(), svc).build().unwrap();
    let drain = Drain::builder(redrive, AlwaysReady)
        .build()
        .unwrap()
        .spawn();
    eventually("draining", || drain.state() == DrainState::Draining).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    drain.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_ne!(
        drain.state(),
        DrainState::Stopped,
        "the send is still in flight"
    );
    release.notify_waiters();
    drain.stopped().await;
    assert_eq!(drain.stats().delivered, 1);
    assert_eq!(states(&store, &ids).await[0].0, State::Delivered);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_worker_carries_on_where_the_last_one_stopped() {
    let (store, ids) = parked(5).await;
    let (svc, sends) = upstream(|_| Ok(StatusCode::OK));
    let worker = |svc| {
        let redrive = Redrive::builder(store.clone(), svc)
            .rate(1.0)
            .concurrency(1)
            .build()
            .unwrap();
        Drain::builder(redrive, AlwaysReady)
            .build()
            .unwrap()
            .spawn()
    };
    let first = worker(svc.clone());
    eventually("two delivered", || first.stats().delivered >= 2).await;
    first.stop();
    first.stopped().await;
    let done_before = first.stats().delivered;
    assert!(done_before < 5, "stopped mid-way: {:?}", first.stats());

    // A new process: nothing but the store carries over.
    let second = worker(svc);
    eventually("the rest delivered", || {
        second.stats().delivered == 5 - done_before
    })
    .await;
    second.stop();
    assert!(sends.lock().unwrap().values().all(|&n| n == 1));
    assert_eq!(sends.lock().unwrap().len(), 5);
    for (state, redrives) in states(&store, &ids).await {
        assert_eq!((state, redrives), (State::Delivered, 1));
    }
}

#[test]
fn a_poll_interval_out_of_range_is_an_error_naming_it() {
    let store = Arc::new(MemoryStore::bounded(1).unwrap());
    let (svc, _) = upstream(|_| Ok(StatusCode::OK));
    let redrive = Redrive::builder(store, svc).build().unwrap();
    let err = Drain::builder(redrive, AlwaysReady)
        .poll_interval(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "poll_interval");
}
