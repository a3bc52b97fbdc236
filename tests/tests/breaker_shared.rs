//! Circuit-breaker state shared through a real Redis (`REDIS_URL`, default
//! `redis://127.0.0.1:6379`) and a real NATS JetStream (`NATS_URL`, default
//! `nats://127.0.0.1:4222`): three replicas (three `SharedBreakers`, each on its own
//! connection) learn together that a dependency is down, one of them probes for all and its
//! recovery closes the others; the Redis keys are as documented; with the store cut off behind
//! a loopback proxy, a replica goes local-only at once (calls unaffected), says why, and
//! rejoins when the store is back.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use rampart::circuit_breaker::{
    CircuitBreakerLayer, ClosePolicy, Reason, State,
    shared::{Decision, SharedBreakers, StateBackend},
};
use rampart::core::classify::{Outcome, Record};
use rampart_nats::NatsBreakerState;
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

/// A bucket name of this run's own (NATS bucket names allow no `:`).
fn unique_bucket() -> String {
    unique().replace([':', '-'], "_")
}

struct Replica {
    shared: SharedBreakers,
    breaker: CircuitBreakerLayer,
}

fn replica(state: impl StateBackend, name: &str) -> Replica {
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

/// a opens on its failures; b and c follow; only the lease's owner probes past the open time;
/// its recovery closes the other two.
async fn learn_together(a: Replica, b: Replica, c: Replica) {
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

    // One replica holds the lease (a, which opened first, unless a follower's round came
    // between a's open and its ask); the other two wait on it.
    let all = [&a, &b, &c];
    until("one holds the lease, the others wait on it", || {
        all.iter()
            .filter(|r| r.shared.status().probes_owned == 1)
            .count()
            == 1
            && all
                .iter()
                .filter(|r| r.shared.status().probes_deferred == 1)
                .count()
                == 2
    })
    .await;
    let owner = *all
        .iter()
        .find(|r| r.shared.status().probes_owned == 1)
        .unwrap();
    tokio::time::sleep(OPEN).await;
    for r in all.iter().filter(|r| !std::ptr::eq(**r, owner)) {
        assert!(r.breaker.try_acquire().is_err(), "only the owner probes");
    }
    let probe = owner
        .breaker
        .try_acquire()
        .expect("the owner probes for the cluster");
    probe.record(Outcome::Success);
    assert_eq!(owner.breaker.handle().state(), State::Closed);
    until("the owner's recovery closes the others", || {
        all.iter()
            .all(|r| r.breaker.handle().state() == State::Closed)
    })
    .await;
    assert_eq!(
        all.iter()
            .map(|r| r.shared.status().closed_by_peers)
            .sum::<u64>(),
        2
    );
    assert_eq!(a.shared.status().degraded, None);
}

async fn redis(url: &str, prefix: &str) -> RedisBreakerState {
    RedisBreakerState::builder(url)
        .prefix(prefix)
        .connect()
        .await
        .unwrap()
}

async fn nats(url: &str, bucket: &str) -> NatsBreakerState {
    NatsBreakerState::builder(url)
        .bucket(bucket)
        .liveness(PERIOD * 3)
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_redis_three_replicas_learn_together_and_one_probes_for_all() {
    let Some(url) = rampart_tests::redis_url() else {
        return;
    };
    let prefix = unique();
    let [a, b, c] = [
        redis(&url, &prefix).await,
        redis(&url, &prefix).await,
        redis(&url, &prefix).await,
    ];
    learn_together(replica(a, "a"), replica(b, "b"), replica(c, "c")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_nats_three_replicas_learn_together_and_one_probes_for_all() {
    let Some(url) = rampart_tests::nats_url() else {
        return;
    };
    let bucket = unique_bucket();
    let [a, b, c] = [
        nats(&url, &bucket).await,
        nats(&url, &bucket).await,
        nats(&url, &bucket).await,
    ];
    learn_together(replica(a, "a"), replica(b, "b"), replica(c, "c")).await;
    // Leave no buckets behind.
    let client = async_nats_client(&url).await;
    let js = async_nats::jetstream::new(client);
    for name in [bucket.clone(), format!("{bucket}_probes")] {
        let _ = js.delete_key_value(&name).await;
    }
}

async fn async_nats_client(url: &str) -> async_nats::Client {
    async_nats::connect(url).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_keys_are_as_documented() {
    let Some(url) = rampart_tests::redis_url() else {
        return;
    };
    let prefix = unique();
    let a = replica(redis(&url, &prefix).await, "a");
    for _ in 0..3 {
        a.breaker.try_acquire().unwrap().record(Outcome::TRANSIENT);
    }
    until("a holds the lease", || a.shared.status().probes_owned == 1).await;
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let fields: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(format!("{prefix}:{{payments}}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let a_field = &fields.iter().find(|(who, _)| who == "a").unwrap().1;
    let (expires, snapshot) = a_field.split_once(' ').unwrap();
    assert!(expires.parse::<u64>().is_ok(), "{expires}");
    assert!(snapshot.starts_with("1 open normal "), "{snapshot}");
    let holder: Option<String> = redis::cmd("GET")
        .arg(format!("{prefix}:{{payments}}:probe"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(holder.as_deref(), Some("a"));
    a.breaker.handle().reset();
    until("the lease is given up on close", || {
        a.shared.status().probes_owned == 0
    })
    .await;
    let holder: Option<String> = redis::cmd("GET")
        .arg(format!("{prefix}:{{payments}}:probe"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(holder, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_cut_off_a_replica_goes_local_only_and_rejoins() {
    let Some(url) = rampart_tests::redis_url() else {
        return;
    };
    let proxy = rampart_tests::Proxy::start(rampart_tests::redis_addr(&url)).await;
    let r = replica(
        redis(&format!("redis://{}", proxy.addr), &unique()).await,
        "a",
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_cut_off_a_replica_goes_local_only_and_rejoins() {
    let Some(url) = rampart_tests::nats_url() else {
        return;
    };
    let proxy = rampart_tests::Proxy::start(rampart_tests::nats_addr(&url)).await;
    let bucket = unique_bucket();
    let r = replica(nats(&format!("nats://{}", proxy.addr), &bucket).await, "a");
    tokio::time::sleep(PERIOD * 2).await;
    assert_eq!(r.shared.status().degraded, None);

    proxy.cut.store(true, Ordering::SeqCst);
    until("degraded once NATS is gone", || {
        r.shared.status().degraded.is_some()
    })
    .await;
    for _ in 0..100 {
        r.breaker.try_acquire().unwrap().record(Outcome::Success);
    }
    assert_eq!(r.breaker.handle().stats().successes, 100);

    proxy.cut.store(false, Ordering::SeqCst);
    until("rejoined once NATS is back", || {
        r.shared.status().degraded.is_none()
    })
    .await;
    let js = async_nats::jetstream::new(async_nats_client(&url).await);
    for name in [bucket.clone(), format!("{bucket}_probes")] {
        let _ = js.delete_key_value(&name).await;
    }
}
