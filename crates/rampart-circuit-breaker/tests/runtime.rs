//! A breaker in a runtime that is not driven between calls: a current-thread runtime used
//! through `block_on` once per call (a sync SDK, a CLI), whose timer never turns because every
//! call is ready at once. The breaker must still leave `Open` once the open time has passed.
//!
//! This test waits real time (50 ms) on purpose: the defect is that real time passes while
//! the runtime's timer does not, which paused time cannot show.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::time::Duration;

use rampart_circuit_breaker::{CircuitBreakerLayer, State};
use tower::{Layer, ServiceExt, service_fn};

#[test]
fn a_breaker_driven_by_block_on_per_call_leaves_open_after_the_open_time() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let layer = CircuitBreakerLayer::builder()
        .name("sync-sdk")
        .consecutive_failures(1)
        .open_duration(Duration::from_millis(30))
        .layer()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(service_fn(|fail: bool| async move {
        if fail { Err("refused") } else { Ok("ok") }
    }));

    assert!(rt.block_on(svc.clone().oneshot(true)).is_err());
    assert_eq!(handle.state(), State::Open);
    let rejected = rt.block_on(svc.clone().oneshot(false)).unwrap_err();
    assert!(rejected.rejection().is_some(), "open: rejected at once");

    std::thread::sleep(Duration::from_millis(50));
    let after = rt.block_on(svc.clone().oneshot(false));
    assert_eq!(
        after.unwrap(),
        "ok",
        "past the open time: the probe is admitted"
    );
}

#[test]
fn the_same_on_a_multi_thread_runtime_driven_by_block_on() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let layer = CircuitBreakerLayer::builder()
        .name("sync-sdk-mt")
        .consecutive_failures(1)
        .open_duration(Duration::from_millis(30))
        .layer()
        .unwrap();
    let svc = layer.layer(service_fn(|fail: bool| async move {
        if fail { Err("refused") } else { Ok("ok") }
    }));
    assert!(rt.block_on(svc.clone().oneshot(true)).is_err());
    assert!(rt.block_on(svc.clone().oneshot(false)).is_err());
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(rt.block_on(svc.clone().oneshot(false)).unwrap(), "ok");
}
