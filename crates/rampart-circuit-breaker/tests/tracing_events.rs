//! The breaker's `tracing` events, seen through a subscriber writing to a buffer. On its own in
//! this test binary: `tracing` caches each call site's interest per process, and a test running
//! beside it with no subscriber would race with the scoped one here.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use rampart_circuit_breaker::State;
use rampart_core::{
    clock::ManualClock,
    testing::{LogBuffer, ready},
};
use tower::{Layer, ServiceExt, service_fn};

mod common;
use common::breaker;

#[test]
fn every_transition_is_a_tracing_event() {
    let buffer = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let b = buffer.clone();
            move || b.clone()
        })
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let clock = ManualClock::new();
        let layer = breaker(&clock);
        let handle = layer.handle();
        let svc = layer.layer(service_fn(|_: ()| async {
            Err::<(), _>(std::io::Error::other("down"))
        }));
        let _ = ready(svc.clone().oneshot(())).expect("ready at once");
        let _ = ready(svc.clone().oneshot(())).expect("ready at once");
        assert_eq!(handle.state(), State::Open);
        handle.reset();
        assert_eq!(handle.state(), State::Closed);
    });
    let out = buffer.contents();
    let opened = out
        .lines()
        .find(|l| l.contains("circuit breaker opened"))
        .unwrap_or_else(|| panic!("no open event in:\n{out}"));
    assert!(opened.contains("WARN"), "{opened}");
    assert!(
        opened.contains("breaker=obs") && opened.contains("reason=\"failure_rate\""),
        "{opened}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("state changed") && l.contains("reason=\"manual\"")),
        "the reset is an event too:\n{out}"
    );
}
