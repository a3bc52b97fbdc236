//! The end-to-end chaos test: 10,000 requests, mixed `POST` and `GET`, through the recommended
//! client stack against an upstream that fails every way the demo's does (503s, 429s with
//! `Retry-After`, slow answers, connections reset after the order was placed, an outage).
//!
//! It asserts what the stack promises together:
//! - nothing lost: every request either succeeded or is in the dead-letter store;
//! - nothing done twice: the upstream executes each order (per idempotency key) at most once,
//!   and after the parked ones are redriven, exactly once;
//! - the breaker opened during the outage and closed after it.
#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rampart::{
    circuit_breaker::State as Breaker,
    core::error::find_in,
    dead_letter::{DeadLetterStore, Filter, Parked, Query, Redrive, SqliteStore, State},
};
use rampart_examples::{
    stack::{self, Settings},
    upstream::{Faults, Upstream},
};
use tower::ServiceExt;

const REQUESTS: usize = 10_000;
const WORKERS: usize = 32;
const PACE: Duration = Duration::from_millis(15);
const OUTAGE: (Duration, Duration) = (Duration::from_millis(1500), Duration::from_millis(3000));

const FAULTS: Faults = Faults {
    server_error: 0.06,
    throttle: 0.005,
    slow: 0.02,
    slow_by: Duration::from_millis(200),
    reset_after_commit: 0.04,
};

/// What became of one logical request.
#[derive(Debug)]
enum Fate {
    Succeeded,
    Parked(String),
    Lost(String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_through_faults_lose_nothing_and_duplicate_nothing() {
    let upstream = Upstream::start(FAULTS, 42).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn DeadLetterStore> =
        Arc::new(SqliteStore::open(dir.path().join("dlq.db")).unwrap());

    // Every breaker transition, and whether the upstream was down when it happened.
    let down = Arc::new(AtomicBool::new(false));
    let transitions = Arc::new(Mutex::new(Vec::<(Breaker, Breaker, bool)>::new()));
    let (client, handles) = stack::client(store.clone(), &Settings::default(), {
        let (down, transitions) = (down.clone(), transitions.clone());
        move |t| {
            let during = down.load(Ordering::SeqCst);
            transitions.lock().unwrap().push((t.from, t.to, during));
        }
    })
    .unwrap();

    let outage = tokio::spawn({
        let (upstream, down) = (upstream.clone(), down.clone());
        async move {
            tokio::time::sleep(OUTAGE.0).await;
            down.store(true, Ordering::SeqCst);
            upstream.set_outage(true);
            tokio::time::sleep(OUTAGE.1 - OUTAGE.0).await;
            upstream.set_outage(false);
            down.store(false, Ordering::SeqCst);
        }
    });

    let next = Arc::new(AtomicUsize::new(0));
    let posts = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (client, next, posts, addr) =
            (client.clone(), next.clone(), posts.clone(), upstream.addr());
        workers.push(tokio::spawn(async move {
            let mut fates = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= REQUESTS {
                    return fates;
                }
                let req = if i % 5 < 3 {
                    posts.fetch_add(1, Ordering::Relaxed);
                    http::Request::post(format!("http://{addr}/orders"))
                        .body(Full::new(Bytes::from(format!("{{\"item\":{i}}}"))))
                } else {
                    http::Request::get(format!("http://{addr}/inventory"))
                        .body(Full::new(Bytes::new()))
                }
                .unwrap();
                let fate = match client.clone().oneshot(req).await {
                    Ok(res) => match res.headers().get(rampart::dead_letter::DEAD_LETTER_ID) {
                        Some(id) => Fate::Parked(id.to_str().unwrap().to_owned()),
                        None if res.status().is_success() => Fate::Succeeded,
                        None => Fate::Lost(format!("status {}", res.status())),
                    },
                    Err(e) => match find_in::<Parked>(&*e) {
                        Some(p) => Fate::Parked(p.id().to_string()),
                        None => Fate::Lost(e.to_string()),
                    },
                };
                fates.push(fate);
                tokio::time::sleep(PACE).await;
            }
        }));
    }
    let mut fates = Vec::new();
    for w in workers {
        fates.extend(w.await.unwrap());
    }
    outage.await.unwrap();
    assert_eq!(fates.len(), REQUESTS);

    // Nothing lost: each request succeeded, or its dead letter is in the store.
    let lost: Vec<_> = fates
        .iter()
        .filter_map(|f| match f {
            Fate::Lost(why) => Some(why.clone()),
            _ => None,
        })
        .collect();
    assert!(
        lost.is_empty(),
        "{} lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let parked: HashSet<String> = fates
        .iter()
        .filter_map(|f| match f {
            Fate::Parked(id) => Some(id.clone()),
            _ => None,
        })
        .collect();
    let stored: HashSet<String> = store
        .list(&Query::new(Filter::all(), 100_000))
        .await
        .unwrap()
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    assert!(!parked.is_empty(), "the outage parks requests");
    assert_eq!(
        parked, stored,
        "every parked request is in the store, and nothing else"
    );
    let succeeded = fates
        .iter()
        .filter(|f| matches!(f, Fate::Succeeded))
        .count();
    assert_eq!(succeeded + parked.len(), REQUESTS);

    // Nothing done twice, even with connections reset after the work was done.
    let up = upstream.stats();
    assert!(up.resets > 0 && up.replays > 0, "{up:?}");
    let effects = upstream.effects();
    assert!(
        effects.values().all(|&n| n == 1),
        "duplicate effects: {:?}",
        effects
            .iter()
            .filter(|&(_, &n)| n > 1)
            .take(5)
            .collect::<Vec<_>>()
    );

    // The breaker opened during the outage and closed after it.
    let transitions = transitions.lock().unwrap().clone();
    assert!(
        transitions
            .iter()
            .any(|&(from, to, during)| from == Breaker::Closed && to == Breaker::Open && during),
        "{transitions:?}"
    );
    assert_eq!(
        transitions.last().map(|t| t.1),
        Some(Breaker::Closed),
        "{transitions:?}"
    );
    assert_eq!(handles.breaker.state(), Breaker::Closed);

    // Redrive the parked ones until none is pending: each order then ran exactly once.
    let plain: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let redrive = Redrive::builder(store.clone(), plain)
        .concurrency(8)
        .max_redrives(10)
        .build()
        .unwrap();
    for _ in 0..10 {
        if redrive.all(|_| {}).await.unwrap().failed == 0 {
            break;
        }
    }
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.backlog(), 0, "{stats:?}");
    assert_eq!(stats.in_state(State::Delivered), stats.total);
    let effects = upstream.effects();
    assert_eq!(
        effects.len(),
        posts.load(Ordering::Relaxed),
        "every order placed"
    );
    assert!(effects.values().all(|&n| n == 1), "and placed once");
}
