//! What the breaker tells the outside world through `metrics`: its series, recorded by a
//! `metrics::Recorder` of the test's own. (Its `tracing` events are in `tracing_events.rs`.)

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    collections::HashMap,
    future::Future,
    pin::pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};
use rampart_circuit_breaker::{CircuitBreakerLayer, State};
use rampart_core::clock::ManualClock;
use tower::{Layer, ServiceExt, service_fn};

/// One stored value per metric key (name and sorted labels).
#[derive(Default)]
struct Store(Mutex<HashMap<String, Arc<AtomicU64>>>);

impl Store {
    fn slot(&self, key: &Key) -> Arc<AtomicU64> {
        let mut labels: Vec<_> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let id = format!("{}{{{}}}", key.name(), labels.join(","));
        self.0.lock().unwrap().entry(id).or_default().clone()
    }

    fn get(&self, id: &str) -> u64 {
        self.0
            .lock()
            .unwrap()
            .get(id)
            .map_or(0, |v| v.load(Ordering::SeqCst))
    }
}

struct Cell(Arc<AtomicU64>);

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::SeqCst);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::SeqCst);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        self.0.fetch_add(value as u64, Ordering::SeqCst);
    }
    fn decrement(&self, value: f64) {
        self.0.fetch_sub(value as u64, Ordering::SeqCst);
    }
    fn set(&self, value: f64) {
        self.0.store(value as u64, Ordering::SeqCst);
    }
}

struct Recording(Arc<Store>);

impl Recorder for Recording {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(Cell(self.0.slot(key))))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(Cell(self.0.slot(key))))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Drives a future that is ready at once (every call here: the inner service answers at once).
fn now<F: Future>(fut: F) -> F::Output {
    match pin!(fut).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the future was expected to be ready"),
    }
}

fn breaker(clock: &ManualClock) -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder()
        .name("obs")
        .clock(clock.shared())
        .count_window(2)
        .minimum_calls(2)
        .open_duration(Duration::from_secs(5))
        .layer()
        .unwrap()
}

#[test]
fn metrics_count_calls_rejections_and_transitions_and_gauge_the_state() {
    let store = Arc::new(Store::default());
    let recorder = Recording(store.clone());
    metrics::with_local_recorder(&recorder, || {
        let clock = ManualClock::new();
        let layer = breaker(&clock);
        let svc = layer.layer(service_fn(|fail: bool| async move {
            if fail {
                Err(std::io::Error::other("down"))
            } else {
                Ok(())
            }
        }));
        now(svc.clone().oneshot(false)).unwrap();
        let _ = now(svc.clone().oneshot(true));
        assert_eq!(layer.handle().state(), State::Open);
        assert!(now(svc.clone().oneshot(true)).is_err());
        assert!(now(svc.clone().oneshot(false)).is_err());
        clock.advance(Duration::from_secs(5));
        now(svc.clone().oneshot(false)).unwrap(); // a probe: half-open
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
