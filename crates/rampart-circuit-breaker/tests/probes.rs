//! Stress test of the half-open probe limit: many tasks on a multi-threaded runtime race for
//! probe slots, complete, fail to complete (dropped futures) or get rejected; at no moment may
//! more than `half_open_max_probes` calls be inside the inner service, and no slot may leak.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use rampart_circuit_breaker::{CircuitBreakerLayer, ClosePolicy, RejectedBy, State};
use rampart_core::clock::ManualClock;
use tower::{Layer, ServiceExt, service_fn};

const PROBES: usize = 3;
const TASKS: usize = 16;
const CALLS_PER_TASK: usize = 2_000;

/// Decrements the gauge when the inner call ends, whether it completed or was dropped.
struct Inside(Arc<AtomicUsize>);

impl Drop for Inside {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_most_the_configured_probes_are_ever_in_flight() {
    let clock = ManualClock::new();
    let layer = CircuitBreakerLayer::builder()
        .clock(clock.shared())
        .count_window(10)
        .minimum_calls(1)
        .half_open_max_probes(PROBES as u32)
        // Never close: stay half-open for the whole test.
        .close_policy(ClosePolicy::Successes(u32::MAX))
        .open_duration(Duration::from_secs(1))
        .layer()
        .unwrap();
    let handle = layer.handle();
    handle.transition_to(State::Open);
    clock.advance(Duration::from_secs(1));

    let inside = Arc::new(AtomicUsize::new(0));
    let max_inside = Arc::new(AtomicUsize::new(0));
    let svc = layer.layer({
        let inside = inside.clone();
        let max_inside = max_inside.clone();
        service_fn(move |yields: usize| {
            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
            max_inside.fetch_max(now, Ordering::SeqCst);
            let guard = Inside(inside.clone());
            async move {
                for _ in 0..yields {
                    tokio::task::yield_now().await;
                }
                drop(guard);
                Ok::<_, std::io::Error>(())
            }
        })
    });

    let full_rejections = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let svc = svc.clone();
            let full = full_rejections.clone();
            tokio::spawn(async move {
                for i in 0..CALLS_PER_TASK {
                    let fut = svc.clone().oneshot(1 + (t + i) % 4);
                    let result = if (t + i) % 5 == 0 {
                        // Poll once, then give up: the dropped future must free its slot.
                        match tokio::time::timeout(Duration::ZERO, fut).await {
                            Ok(r) => r,
                            Err(_) => continue,
                        }
                    } else {
                        fut.await
                    };
                    if let Err(e) = result {
                        let by = e.rejection().expect("only rejections fail").rejected_by();
                        assert_eq!(by, RejectedBy::HalfOpenFull);
                        full.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }

    let max = max_inside.load(Ordering::SeqCst);
    assert!(
        max <= PROBES,
        "{max} probes were in flight at once, limit {PROBES}"
    );
    assert_eq!(max, PROBES, "the slots were contended and all used");
    assert!(full_rejections.load(Ordering::Relaxed) > 0);
    let stats = handle.stats();
    assert_eq!(stats.state, State::HalfOpen);
    assert_eq!(stats.probes_in_flight, 0, "no probe slot leaked");
    assert_eq!(inside.load(Ordering::SeqCst), 0);
}

/// `stats()` read while other threads record failures never counts more failures than calls
/// (it subtracted one from the other, and could underflow).
#[test]
fn stats_read_during_failures_stay_consistent() {
    let layer = rampart_circuit_breaker::CircuitBreakerLayer::builder()
        .name("stats-race")
        .time_window(std::time::Duration::from_secs(60), 60)
        .minimum_calls(u32::MAX)
        .layer()
        .unwrap();
    let handle = layer.handle();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    std::thread::scope(|s| {
        for _ in 0..2 {
            let layer = layer.clone();
            let done = done.clone();
            s.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let svc = tower::Layer::layer(
                    &layer,
                    tower::service_fn(|_: ()| async { Err::<(), _>("down") }),
                );
                for _ in 0..100_000 {
                    let _ = rt.block_on(tower::ServiceExt::oneshot(svc.clone(), ()));
                }
                done.store(true, std::sync::atomic::Ordering::SeqCst);
            });
        }
        let mut reads = 0u64;
        while !done.load(std::sync::atomic::Ordering::SeqCst) || reads < 1000 {
            let st = handle.stats();
            assert!(st.failures <= st.calls, "{st:?}");
            assert!(st.failure_rate <= 100.0, "{st:?}");
            reads += 1;
        }
    });
}
