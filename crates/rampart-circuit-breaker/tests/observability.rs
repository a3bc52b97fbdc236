//! What the breaker tells the outside world through `metrics`: its series, recorded by a
//! `metrics::Recorder` of the test's own. (Its `tracing` events are in `tracing_events.rs`.)

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::time::Duration;

use rampart_circuit_breaker::State;
use rampart_core::{
    clock::ManualClock,
    testing::{MetricsRecorder, ready},
};
use tower::{Layer, ServiceExt, service_fn};

mod common;
use common::breaker;

#[test]
fn metrics_count_calls_rejections_and_transitions_and_gauge_the_state() {
    let store = MetricsRecorder::default();
    metrics::with_local_recorder(&store, || {
        let clock = ManualClock::new();
        let layer = breaker(&clock);
        let svc = layer.layer(service_fn(|fail: bool| async move {
            if fail {
                Err(std::io::Error::other("down"))
            } else {
                Ok(())
            }
        }));
        ready(svc.clone().oneshot(false))
            .expect("ready at once")
            .unwrap();
        let _ = ready(svc.clone().oneshot(true)).expect("ready at once");
        assert_eq!(layer.handle().state(), State::Open);
        assert!(
            ready(svc.clone().oneshot(true))
                .expect("ready at once")
                .is_err()
        );
        assert!(
            ready(svc.clone().oneshot(false))
                .expect("ready at once")
                .is_err()
        );
        clock.advance(Duration::from_secs(5));
        ready(svc.clone().oneshot(false))
            .expect("ready at once")
            .unwrap(); // a probe: half-open
    });
    let calls = |outcome: &str| {
        store.get(&format!(
            "rampart_circuit_breaker_calls_total{{breaker=obs,outcome={outcome}}}"
        ))
    };
    assert_eq!(calls("success"), 2, "the first call and the probe");
    assert_eq!(
        calls("failure"),
        1,
        "the second call: 1 of 2 failed, and it tripped"
    );
    assert_eq!(calls("rejected"), 2);
    assert_eq!(
        store.get("rampart_circuit_breaker_transitions_total{breaker=obs,from=closed,to=open}"),
        1
    );
    assert_eq!(
        store.get("rampart_circuit_breaker_transitions_total{breaker=obs,from=open,to=half_open}"),
        1
    );
    assert_eq!(
        store.get("rampart_circuit_breaker_state{breaker=obs}"),
        1,
        "the gauge reads half-open (1)"
    );
}
