//! The breaker's `tracing` events, seen through a subscriber writing to a buffer. On its own in
//! this test binary: `tracing` caches each call site's interest per process, and a test running
//! beside it with no subscriber would race with the scoped one here.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    future::Future,
    io::Write,
    pin::pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker},
    time::Duration,
};

use rampart_circuit_breaker::{CircuitBreakerLayer, State};
use rampart_core::clock::ManualClock;
use tower::{Layer, ServiceExt, service_fn};

/// Drives a future that is ready at once.
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

/// Collects what a `tracing` subscriber writes.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn every_transition_is_a_tracing_event() {
    let buffer = Buffer::default();
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
        let _ = now(svc.clone().oneshot(()));
        let _ = now(svc.clone().oneshot(()));
        assert_eq!(handle.state(), State::Open);
        handle.reset();
        assert_eq!(handle.state(), State::Closed);
    });
    let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
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
