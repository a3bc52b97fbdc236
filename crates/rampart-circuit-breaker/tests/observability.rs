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
            "rampart_circuit_breaker_calls_total{{name=obs,outcome={outcome}}}"
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
        store.get("rampart_circuit_breaker_transitions_total{from=closed,name=obs,to=open}"),
        1
    );
    assert_eq!(
        store.get("rampart_circuit_breaker_transitions_total{from=open,name=obs,to=half_open}"),
        1
    );
    assert_eq!(
        store.get("rampart_circuit_breaker_state{name=obs}"),
        1,
        "the gauge reads half-open (1)"
    );
}

/// 10 000 distinct hosts through a breaker per host that keeps 16: the metric series stay
/// few (one shared set by default, a capped number of per-key sets when asked), and the
/// counts stay whole.
#[test]
fn per_key_series_are_bounded_however_many_keys_pass() {
    for per_key in [0usize, 4] {
        let store = MetricsRecorder::default();
        metrics::with_local_recorder(&store, || {
            let layer = rampart_circuit_breaker::CircuitBreakerLayer::builder()
                .name("hosts")
                .max_keys(16)
                .metrics_per_key(per_key)
                .keyed(rampart_core::key::ByAuthority)
                .unwrap();
            let svc = layer.layer(service_fn(|_req: http::Request<()>| async {
                Ok::<_, std::io::Error>(())
            }));
            for i in 0..10_000 {
                let req = http::Request::get(format!("http://host-{i}.example/"))
                    .body(())
                    .unwrap();
                ready(svc.clone().oneshot(req))
                    .expect("ready at once")
                    .unwrap();
            }
        });
        let series = store.series("rampart_circuit_breaker_calls_total");
        let own_keys: Vec<_> = series
            .iter()
            .filter(|s| {
                s.contains("outcome=success")
                    && !s.contains("key=_other")
                    && !s.contains("key=_none")
            })
            .collect();
        assert_eq!(own_keys.len(), per_key, "{series:?}");
        assert!(
            series.len() <= (per_key + 2) * 4,
            "at most the capped keys, `_other` and `_none` (keyless requests), four outcomes \
             each: {series:?}"
        );
        let total: u64 = series
            .iter()
            .filter(|s| s.contains("outcome=success"))
            .map(|s| store.get(s))
            .sum();
        assert_eq!(
            total, 10_000,
            "every call counted, in one series or another"
        );
        assert!(store.series("rampart_circuit_breaker_state").len() <= per_key + 2);
    }
}
