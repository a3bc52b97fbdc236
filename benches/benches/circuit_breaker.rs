//! Circuit breakers around a no-op service: rampart against a pass-through baseline, tower's
//! `ConcurrencyLimit` (a familiar per-call cost: one semaphore permit), tower-resilience and
//! failsafe, all in one run so the ratios hold on a noisy machine.
//!
//! Groups:
//! - `circuit_breaker/closed`: the cost of one call (`poll_ready` + `call` + the future driven to
//!   completion) through a closed breaker.
//!   `rampart_shared`: the same breaker joined to a `SharedBreakers` (over its in-memory
//!   backend, its driver running on the runtime's worker): what sharing state across replicas
//!   adds to a call (nothing but the driver's own work on another thread).
//! - `circuit_breaker/open_rejection`: the cost of one call rejected by an open breaker.
//!   `rampart_shared_deferred`: open past its time while another replica holds the cluster's
//!   probe lease (the one extra atomic load of that path).
//! - `circuit_breaker/contended`: calls through clones of ONE shared breaker from 1 and from 2
//!   threads; the time reported is wall time per call, so `thrpt` is the combined throughput.
//!
//! Every member is driven the same way ([`rampart_benches::ready_call`]): polled on the calling
//! thread with a no-op waker, inside a tokio runtime's context (entered, as in a server, so that
//! middleware which arms timers finds a timer driver) but not on its scheduler. Breaker
//! configurations:
//! - rampart: 50 % failure rate over a 10 s time window of 10 buckets, at least 10 calls,
//!   5 consecutive failures (the crate's documented example).
//! - tower-resilience: 50 % failure rate over its default count window (100 calls), at least 10
//!   calls. (Its time-based window keeps one record per call and rescans them all on every call,
//!   which at benchmark rates measures the window's growth, not the breaker.)
//! - failsafe: its default policy (success rate over a time window, or consecutive failures).
//!
//! Run: `cargo bench -p rampart-benches --bench circuit_breaker`.

use std::{
    convert::Infallible,
    future::{Ready, ready},
    task::{Context, Poll},
    time::Duration,
};

use criterion::{Criterion, criterion_group, criterion_main};
use failsafe::futures::CircuitBreaker as _;
use rampart_benches::{
    bench_calls, bench_threads, block_on, configure, configure_contended, ready_call, runtime,
};
use rampart_circuit_breaker::{
    BreakerError, CircuitBreakerLayer, State,
    shared::{MemoryBackend, SharedBreakers, StateBackend},
};
use tower::{Layer, Service, limit::ConcurrencyLimitLayer, service_fn};
use tower_resilience_circuitbreaker::{
    CircuitBreakerError, CircuitBreakerHandle as TrHandle, CircuitBreakerLayer as TrLayer,
};

/// The protected service: answers at once, allocates nothing.
fn echo(req: u64) -> Ready<Result<u64, Infallible>> {
    ready(Ok(req))
}

/// A rampart breaker as the crate's docs configure one.
fn rampart(open_for: Duration) -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder()
        .name("bench")
        .failure_rate_threshold(50.0)
        .minimum_calls(10)
        .time_window(Duration::from_secs(10), 10)
        .consecutive_failures(5)
        .open_duration(open_for)
        .layer()
        .expect("a valid rampart configuration")
}

/// A tower-resilience breaker; built with a handle so every service it makes shares one circuit.
fn tower_resilience() -> (TrLayer, TrHandle) {
    TrLayer::builder()
        .name("bench")
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .minimum_number_of_calls(10)
        .wait_duration_in_open(Duration::from_secs(3600))
        .build_with_handle()
        .expect("a valid tower-resilience configuration")
}

/// failsafe is not a tower middleware: this wraps its futures API (`breaker.call(future)`, which
/// asks for permission on first poll and records the outcome) around the inner service's call.
#[derive(Clone)]
struct Failsafe<S, B> {
    inner: S,
    breaker: B,
}

impl<S, B, Req> Service<Req> for Failsafe<S, B>
where
    S: Service<Req>,
    B: failsafe::futures::CircuitBreaker,
{
    type Response = S::Response;
    type Error = failsafe::Error<S::Error>;
    type Future = failsafe::futures::ResponseFuture<
        S::Future,
        B::FailurePolicy,
        B::Instrument,
        failsafe::Any,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(failsafe::Error::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.breaker.call(self.inner.call(req))
    }
}

fn closed(c: &mut Criterion) {
    let rt = runtime();
    let _enter = rt.enter();
    let mut group = c.benchmark_group("circuit_breaker/closed");
    configure(&mut group);

    bench_calls(&mut group, "baseline", service_fn(echo));

    bench_calls(
        &mut group,
        "tower_concurrency_limit",
        ConcurrencyLimitLayer::new(1 << 20).layer(service_fn(echo)),
    );

    let mut svc = rampart(Duration::from_secs(30)).layer(service_fn(echo));
    assert!(matches!(ready_call(&mut svc, 1), Ok(1)));
    bench_calls(&mut group, "rampart", svc);

    let layer = rampart(Duration::from_secs(30));
    let shared = rt.block_on(async {
        SharedBreakers::builder(MemoryBackend::new())
            .replica("bench")
            .spawn()
            .expect("shared breakers")
    });
    assert!(shared.join(&layer.handle()));
    let mut svc = layer.layer(service_fn(echo));
    assert!(matches!(ready_call(&mut svc, 1), Ok(1)));
    bench_calls(&mut group, "rampart_shared", svc);
    drop(shared);

    let (layer, _handle) = tower_resilience();
    let mut svc = layer.layer(service_fn(echo));
    assert!(matches!(ready_call(&mut svc, 1), Ok(1)));
    bench_calls(&mut group, "tower_resilience", svc);

    let mut svc = Failsafe {
        inner: service_fn(echo),
        breaker: failsafe::Config::new().build(),
    };
    assert!(matches!(ready_call(&mut svc, 1), Ok(1)));
    bench_calls(&mut group, "failsafe", svc);

    group.finish();
}

fn open_rejection(c: &mut Criterion) {
    let rt = runtime();
    let _enter = rt.enter();
    let mut group = c.benchmark_group("circuit_breaker/open_rejection");
    configure(&mut group);

    bench_calls(&mut group, "baseline", service_fn(echo));

    // Tripped open (normal mode): the path a failing dependency takes. A timer reports the end
    // of the open time, so a rejection reads no clock.
    let layer = rampart(Duration::from_secs(3600));
    layer.handle().transition_to(State::Open);
    let mut svc = layer.layer(service_fn(echo));
    assert!(matches!(
        ready_call(&mut svc, 1),
        Err(BreakerError::Rejected(_))
    ));
    bench_calls(&mut group, "rampart", svc);

    // Forced open by an operator through the handle.
    let layer = rampart(Duration::from_secs(3600));
    layer.handle().force_open();
    let mut svc = layer.layer(service_fn(echo));
    assert!(matches!(
        ready_call(&mut svc, 1),
        Err(BreakerError::Rejected(_))
    ));
    bench_calls(&mut group, "rampart_forced_open", svc);

    // Open past its time, and another replica holds the probe lease: held open.
    let backend = MemoryBackend::new();
    let layer = rampart(Duration::from_millis(20));
    let shared = rt.block_on(async {
        assert!(
            backend
                .acquire_probe("bench", "other", Duration::from_secs(3600))
                .await
                .expect("a lease")
        );
        SharedBreakers::builder(backend.clone())
            .replica("bench")
            .publish_every(Duration::from_millis(10))
            .timeout(Duration::from_millis(10))
            .spawn()
            .expect("shared breakers")
    });
    assert!(shared.join(&layer.handle()));
    layer.handle().transition_to(State::Open);
    rt.block_on(tokio::time::sleep(Duration::from_millis(100)));
    assert_eq!(
        shared.status().probes_deferred,
        1,
        "the other replica probes"
    );
    let mut svc = layer.layer(service_fn(echo));
    assert!(matches!(
        ready_call(&mut svc, 1),
        Err(BreakerError::Rejected(_))
    ));
    bench_calls(&mut group, "rampart_shared_deferred", svc);
    drop(shared);

    let (layer, handle) = tower_resilience();
    block_on(handle.force_open());
    let mut svc = layer.layer(service_fn(echo));
    assert!(matches!(
        ready_call(&mut svc, 1),
        Err(CircuitBreakerError::OpenCircuit)
    ));
    bench_calls(&mut group, "tower_resilience", svc);

    // failsafe has no manual control: trip it with failures.
    let breaker = failsafe::Config::new()
        .failure_policy(failsafe::failure_policy::consecutive_failures(
            3,
            failsafe::backoff::constant(Duration::from_secs(3600)),
        ))
        .build();
    for _ in 0..3 {
        let _ = block_on(breaker.call(ready(Err::<u64, ()>(()))));
    }
    let mut svc = Failsafe {
        inner: service_fn(echo),
        breaker,
    };
    assert!(matches!(
        ready_call(&mut svc, 1),
        Err(failsafe::Error::Rejected)
    ));
    bench_calls(&mut group, "failsafe", svc);

    group.finish();
}

fn contended(c: &mut Criterion) {
    let rt = runtime();
    let _enter = rt.enter();
    let mut group = c.benchmark_group("circuit_breaker/contended");
    configure_contended(&mut group);

    // The control: nothing shared, so 2 threads should double it unless the machine is busy.
    bench_threads(&mut group, "baseline", &service_fn(echo));

    let svc = rampart(Duration::from_secs(30)).layer(service_fn(echo));
    bench_threads(&mut group, "rampart", &svc);

    let (layer, _handle) = tower_resilience();
    bench_threads(
        &mut group,
        "tower_resilience",
        &layer.layer(service_fn(echo)),
    );

    group.finish();
}

criterion_group!(benches, closed, open_rejection, contended);
criterion_main!(benches);
