//! Circuit-breaker state shared through a real Redis (`REDIS_URL`, default
//! `redis://127.0.0.1:6379`): three replicas (three `SharedBreakers`, each on its own
//! connection) learn together that a dependency is down, one of them probes for all and its
//! recovery closes the others; with Redis cut off behind a loopback proxy, a replica goes
//! local-only at once (requests unaffected), says why, and rejoins when Redis is back.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use rampart::circuit_breaker::{
    CircuitBreakerLayer, ClosePolicy, Reason, State,
    shared::{Decision, SharedBreakers},
};
use rampart::core::classify::{Outcome, Record};
use rampart_redis::RedisBreakerState;

const PERIOD: Duration = Duration::from_millis(50);
const OPEN: Duration = Duration::from_millis(600);

fn unique() -> String {
    format!(
        "rampart-test:cb:{}:{}",
        std::process::id(),
        rampart_dead_letter::DeadLetterId::new()
    )
}

struct Replica {
    shared: SharedBreakers,
    breaker: CircuitBreakerLayer,
}

async fn replica(url: &str, prefix: &str, name: &str) -> Replica {
    let state = RedisBreakerState::builder(url)
        .prefix(prefix)
        .connect()
        .await
        .unwrap();
    let shared = SharedBreakers::builder(state)
        .replica(name)
        .decision(Decision::Follow)
        .publish_every(PERIOD)
        .timeout(PERIOD)
        .probe_lease(Duration::from_secs(2))
        .spawn()
        .unwrap();
    let breaker = CircuitBreakerLayer::builder()
        .name("payments")
        .consecutive_failures(3)
        .open_duration(OPEN)
        .half_open_max_probes(1)
        .close_policy(ClosePolicy::Successes(1))
        .layer()
        .unwrap();
    assert!(shared.join(&breaker.handle()));
    Replica { shared, breaker }
}

/// Waits (at most 5 s) until `done`.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_learn_together_and_one_probes_for_all() {
    let Some(url) = rampart_tests::redis_url() else {
        return;
    };
    let prefix = unique();
    let a = replica(&url, &prefix, "a").await;
    let b = replica(&url, &prefix, "b").await;
    let c = replica(&url, &prefix, "c").await;
    let mut b_events = b.breaker.handle().subscribe();
    tokio::time::sleep(PERIOD * 2).await;

    for _ in 0..3 {
        a.breaker.try_acquire().unwrap().record(Outcome::TRANSIENT);
    }
    assert_eq!(a.breaker.handle().state(), State::Open);
    until("b and c follow a", || {
        [&b, &c]
            .iter()
            .all(|r| r.breaker.handle().state() == State::Open)
    })
    .await;
    let t = b_events.recv().await.unwrap();
    assert_eq!((t.to, t.reason), (State::Open, Reason::Peers));

    // The layout the docs describe: a hash of snapshots, a lease held by the first to open.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let fields: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(format!("{prefix}:{{payments}}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let a_field = &fields.iter().find(|(who, _)| who == "a").unwrap().1;
    let (_expires, snapshot) = a_field.split_once(' ').unwrap();
    assert!(snapshot.starts_with("1 open normal "), "{snapshot}");
    let holder: Option<String> = redis::cmd("GET")
        .arg(format!("{prefix}:{{payments}}:probe"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(holder.as_deref(), Some("a"));

    // Past the open time: a probes; b and c stay open, waiting on it.
    until("b defers its probe to a", || {
        b.shared.status().probes_deferred == 1
    })
    .await;
    tokio::time::sleep(OPEN).await;
    for r in [&b, &c] {
        assert!(r.breaker.try_acquire().is_err(), "only the owner probes");
    }
    let probe = a.breaker.try_acquire().expect("a probes for the cluster");
    probe.record(Outcome::Success);
    assert_eq!(a.breaker.handle().state(), State::Closed);
    until("a's recovery closes b and c", || {
        [&b, &c]
            .iter()
            .all(|r| r.breaker.handle().state() == State::Closed)
    })
    .await;
    assert_eq!(c.shared.status().closed_by_peers, 1);
    let holder: Option<String> = redis::cmd("GET")
        .arg(format!("{prefix}:{{payments}}:probe"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(holder, None, "the lease is given up on close");
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:{{payments}}"))
        .query_async(&mut conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_cut_off_a_replica_goes_local_only_and_rejoins() {
    let Some(url) = rampart_tests::redis_url() else {
        return;
    };
    let proxy = rampart_tests::Proxy::start(rampart_tests::redis_addr(&url)).await;
    let prefix = unique();
    let r = replica(&format!("redis://{}", proxy.addr), &prefix, "a").await;
    tokio::time::sleep(PERIOD * 2).await;
    assert_eq!(r.shared.status().degraded, None);

    proxy.cut.store(true, Ordering::SeqCst);
    until("degraded once Redis is gone", || {
        r.shared.status().degraded.is_some()
    })
    .await;
    // Calls are decided locally as ever: admitted, recorded, never failed by the store.
    for _ in 0..100 {
        r.breaker.try_acquire().unwrap().record(Outcome::Success);
    }
    assert_eq!(r.breaker.handle().stats().successes, 100);
    let status = r.shared.status();
    assert!(status.errors >= 1);
    let (reason, _) = status.degraded.unwrap();
    assert!(!reason.is_empty());

    proxy.cut.store(false, Ordering::SeqCst);
    until("rejoined once Redis is back", || {
        r.shared.status().degraded.is_none()
    })
    .await;
}
