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
    DeadLetter, DeadLetterStore, MemoryStore, Redrive, State, StoreErrorKind,
    conformance::record,
    redrive::{Outcome, Summary},
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
        Outcome::Skipped {
            state: State::GivenUp
        }
    );
}

#[tokio::test]
async fn a_truncated_record_is_given_up_without_sending() {
    let (store, records) = store_with(1);
    let mut r = records[0].clone();
    r.target.body.truncated = true;
    store.update(&r).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let redrive = Redrive::builder(store.clone(), upstream(StatusCode::OK, seen.clone()))
        .build()
        .unwrap();
    let outcome = redrive.one(r.id).await.unwrap();
    let Outcome::GivenUp { failure } = outcome else {
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
