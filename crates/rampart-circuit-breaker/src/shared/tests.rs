//! Several replicas in one process: each a `SharedBreakers` over one `MemoryBackend`, each
//! with its own breaker of the same name. Paused time, so periods pass exactly.

use std::time::Duration;

use rampart_core::classify::{Outcome, Record};

use super::*;
use crate::{CircuitBreakerLayer, Reason, State};

const PERIOD: Duration = Duration::from_secs(1);
const OPEN: Duration = Duration::from_secs(10);

struct Replica {
    shared: SharedBreakers,
    breaker: CircuitBreakerLayer,
}

impl Replica {
    fn new(backend: &MemoryBackend, name: &str, decision: Decision) -> Self {
        let shared = SharedBreakers::builder(backend.clone())
            .replica(name)
            .decision(decision)
            .publish_every(PERIOD)
            .timeout(Duration::from_millis(100))
            .probe_lease(Duration::from_secs(5))
            .spawn()
            .unwrap();
        let breaker = CircuitBreakerLayer::builder()
            .name("payments")
            .consecutive_failures(3)
            .open_duration(OPEN)
            .half_open_max_probes(1)
            .close_policy(crate::ClosePolicy::Successes(1))
            .layer()
            .unwrap();
        assert!(shared.join(&breaker.handle()));
        Self { shared, breaker }
    }

    /// Three failures in a row: it opens on its own evidence.
    fn fail(&self) {
        for _ in 0..3 {
            if let Ok(guard) = self.breaker.try_acquire() {
                guard.record(Outcome::TRANSIENT);
            }
        }
    }

    fn state(&self) -> State {
        self.breaker.handle().state()
    }
}

/// Lets the drivers run `n` periods.
async fn periods(n: u32) {
    for _ in 0..n {
        tokio::time::sleep(PERIOD).await;
    }
    // And whatever they woke each other for.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_quorum_of_peers_opens_a_breaker_that_saw_no_failure() {
    let backend = MemoryBackend::new();
    let [a, b, c] = ["a", "b", "c"].map(|n| Replica::new(&backend, n, Decision::quorum(2)));
    let mut events = c.breaker.handle().subscribe();
    periods(1).await;

    a.fail();
    assert_eq!(a.state(), State::Open);
    periods(2).await;
    // One of three is not a quorum of 2, nor half.
    assert_eq!((b.state(), c.state()), (State::Closed, State::Closed));

    b.fail();
    periods(2).await;
    assert_eq!(c.state(), State::Open, "two of three opened: c follows");
    let t = events.recv().await.unwrap();
    assert_eq!((t.to, t.reason), (State::Open, Reason::Peers));
    // For the peers' time left, never longer than its own open time.
    assert!(t.open_for.unwrap() <= OPEN && t.open_for.unwrap() >= OPEN - 3 * PERIOD);
    assert_eq!(c.shared.status().opened_by_peers, 1);
}

#[tokio::test(start_paused = true)]
async fn one_replica_probes_for_the_cluster_and_its_recovery_closes_the_others() {
    let backend = MemoryBackend::new();
    let [a, b, c] = ["a", "b", "c"].map(|n| Replica::new(&backend, n, Decision::Follow));
    periods(1).await;
    a.fail();
    periods(2).await;
    assert!(
        [&b, &c].iter().all(|r| r.state() == State::Open),
        "Follow: every replica opens with the first"
    );
    // a opened first and holds the probe lease; b and c wait on it.
    assert_eq!(backend.probe_holder("payments").as_deref(), Some("a"));
    assert_eq!(a.shared.status().probes_owned, 1);
    assert_eq!(b.shared.status().probes_deferred, 1);

    tokio::time::sleep(OPEN).await;
    // Past every open time: only the owner lets a probe through.
    let probe = a.breaker.try_acquire().expect("the owner probes");
    for r in [&b, &c] {
        let open = r.breaker.try_acquire().expect_err("the others stay open");
        assert_eq!(open.retry_after(), Some(PERIOD));
        assert_eq!(r.state(), State::Open);
    }
    probe.record(Outcome::Success);
    assert_eq!(a.state(), State::Closed);
    periods(2).await;
    assert_eq!((b.state(), c.state()), (State::Closed, State::Closed));
    assert_eq!(b.shared.status().closed_by_peers, 1);
    assert_eq!(backend.probe_holder("payments"), None, "released on close");
}

#[tokio::test(start_paused = true)]
async fn a_lease_whose_owner_vanished_is_taken_over() {
    let backend = MemoryBackend::new();
    let a = Replica::new(&backend, "a", Decision::Follow);
    let b = Replica::new(&backend, "b", Decision::Follow);
    periods(1).await;
    a.fail();
    periods(2).await;
    assert_eq!(backend.probe_holder("payments").as_deref(), Some("a"));
    drop(a);
    // The lease outlives a's open time by 5 s; then b takes it and probes.
    tokio::time::sleep(OPEN + Duration::from_secs(5)).await;
    periods(2).await;
    assert_eq!(backend.probe_holder("payments").as_deref(), Some("b"));
    let probe = b.breaker.try_acquire().expect("b probes now");
    probe.record(Outcome::Success);
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_store_leaves_each_breaker_on_its_own() {
    let backend = MemoryBackend::new();
    let a = Replica::new(&backend, "a", Decision::Follow);
    let b = Replica::new(&backend, "b", Decision::Follow);
    periods(1).await;
    a.fail();
    periods(2).await;
    assert_eq!(b.shared.status().probes_deferred, 1);

    backend.set_unavailable(true);
    periods(1).await;
    let status = b.shared.status();
    let (reason, _) = status.degraded.expect("degraded while the store is gone");
    assert!(reason.contains("unavailable"), "{reason}");
    assert!(status.errors >= 1);
    assert_eq!(status.probes_deferred, 0, "no longer waiting on a peer");
    // Past the open time, b probes by itself, as a lone breaker would.
    tokio::time::sleep(OPEN).await;
    let probe = b.breaker.try_acquire().expect("b probes alone");
    probe.record(Outcome::Success);
    assert_eq!(b.state(), State::Closed);

    backend.set_unavailable(false);
    periods(2).await;
    assert_eq!(b.shared.status().degraded, None, "rejoined");
}

#[tokio::test(start_paused = true)]
async fn unreadable_snapshots_are_ignored_and_counted() {
    let backend = MemoryBackend::new();
    let a = Replica::new(&backend, "a", Decision::Follow);
    for (who, junk) in [
        (
            "x",
            &b"1 open normal 9 9 0 3600000 1 failure_rate extra"[..],
        ),
        ("y", &b"\xff\xfe"[..]),
        ("bad name!", &b"1 open normal 9 9 0 5000 1 failure_rate"[..]),
    ] {
        backend
            .publish("payments", who, junk, Duration::from_secs(60))
            .await
            .unwrap();
    }
    // The driver's first round, at once: one read of the three.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(a.shared.status().bad_snapshots, 3);
    periods(1).await;
    assert_eq!(a.state(), State::Closed, "nothing readable said open");
}

#[tokio::test(start_paused = true)]
async fn per_key_breakers_share_per_key() {
    let backend = MemoryBackend::new();
    let keyed = |name: &str| {
        let shared = SharedBreakers::builder(backend.clone())
            .replica(name)
            .decision(Decision::Follow)
            .spawn()
            .unwrap();
        let layer = CircuitBreakerLayer::builder()
            .name("hosts")
            .consecutive_failures(1)
            .keyed::<(), &'static str>(())
            .unwrap();
        shared.join_keyed(&layer.handle());
        (shared, layer)
    };
    let (_sa, a) = keyed("a");
    let (_sb, b) = keyed("b");
    for layer in [&a, &b] {
        for host in ["db", "cache"] {
            drop(layer.try_acquire(Some(host)).unwrap());
        }
    }
    periods(1).await;
    a.try_acquire(Some("db"))
        .unwrap()
        .record(Outcome::TRANSIENT);
    periods(2).await;
    let state = |host| b.handle().get(&host).unwrap().state();
    assert_eq!(state("db"), State::Open, "db's breaker follows a's");
    assert_eq!(state("cache"), State::Closed, "cache's is its own");
}

#[tokio::test(start_paused = true)]
async fn pooled_windows_trip_what_no_replica_could_alone() {
    let backend = MemoryBackend::new();
    let replica = |name: &str| {
        let shared = SharedBreakers::builder(backend.clone())
            .replica(name)
            .decision(Decision::pooled(3))
            .spawn()
            .unwrap();
        let breaker = CircuitBreakerLayer::builder()
            .name("search")
            .failure_rate_threshold(50.0)
            .minimum_calls(10)
            .layer()
            .unwrap();
        assert!(shared.join(&breaker.handle()));
        // `shared` is dropped here: the joined breaker keeps the sharing alive.
        breaker
    };
    let all = ["a", "b", "c"].map(replica);
    // Four calls each, three failed: 75 %, but under the minimum of 10 calls alone.
    for breaker in &all {
        for outcome in [
            Outcome::TRANSIENT,
            Outcome::TRANSIENT,
            Outcome::TRANSIENT,
            Outcome::Success,
        ] {
            breaker.try_acquire().unwrap().record(outcome);
        }
        assert_eq!(breaker.handle().state(), State::Closed);
    }
    periods(2).await;
    // Summed, 12 calls at 75 %: every replica opens on the pool.
    for breaker in &all {
        assert_eq!(breaker.handle().state(), State::Open);
    }
}

#[tokio::test(start_paused = true)]
async fn the_driver_ends_once_the_sharing_and_its_breakers_are_gone() {
    let (shared, driver) = SharedBreakers::builder(MemoryBackend::new())
        .replica("a")
        .build()
        .unwrap();
    let driver = tokio::spawn(driver);
    let single = CircuitBreakerLayer::builder().name("one").layer().unwrap();
    let keyed = CircuitBreakerLayer::builder()
        .name("many")
        .keyed::<(), &'static str>(())
        .unwrap();
    drop(keyed.try_acquire(Some("db")).unwrap());
    shared.join(&single.handle());
    shared.join_keyed(&keyed.handle());
    drop(shared);
    periods(2).await;
    assert!(!driver.is_finished(), "the joined breakers keep it running");
    drop((single, keyed));
    periods(2).await;
    assert!(driver.is_finished(), "nothing left to share: it ended");
}

#[test]
fn bad_configuration_is_an_error_naming_the_field() {
    let b = || SharedBreakers::builder(MemoryBackend::new());
    let field = |r: Result<(SharedBreakers, Driver), ConfigError>| r.unwrap_err().to_string();
    assert!(field(b().publish_every(Duration::from_millis(1)).build()).contains("publish_every"));
    assert!(field(b().liveness(Duration::from_millis(10)).build()).contains("liveness"));
    assert!(field(b().timeout(Duration::from_secs(2)).build()).contains("timeout"));
    assert!(field(b().probe_lease(Duration::from_millis(500)).build()).contains("probe_lease"));
    assert!(field(b().replica("pod a").build()).contains("replica"));
    assert!(field(b().replica("").build()).contains("replica"));
    assert!(field(b().decision(Decision::quorum(0)).build()).contains("decision.replicas"));
    let outside = b().spawn().unwrap_err().to_string();
    assert!(outside.contains("runtime"), "{outside}");
}
