//! Bulkheads around a no-op service: rampart against a pass-through baseline, tower's
//! `ConcurrencyLimit` (the familiar per-call cost of one semaphore permit, and the floor a
//! bulkhead is measured against) and tower-resilience's bulkhead, all in one run so the ratios
//! hold on a noisy machine.
//!
//! Groups:
//! - `bulkhead/uncontended`: the cost of one admitted call (`poll_ready` + `call` + the future
//!   driven to completion) with the bulkhead far from full.
//! - `bulkhead/contended`: calls through clones of ONE shared bulkhead from 1 and from 2
//!   threads; the time reported is wall time per call, so `thrpt` is the combined throughput.
//!
//! Every member is driven the same way ([`rampart_benches::ready_call`]): polled on the calling
//! thread with a no-op waker, inside a tokio runtime's context (entered, as in a server) but not
//! on its scheduler. Every limit is large (2^20 calls), so no call ever waits or is rejected:
//! - `tower_concurrency_limit`: `ConcurrencyLimit`, which takes its permit in `poll_ready`
//!   (that is part of every measured call, as it is for a tower caller).
//! - `rampart`: one class, `max_concurrent(2^20)`, fail fast (the crate's default).
//! - `rampart_classes`: three classes, `critical` (borrowing), `normal` and `bulk`, 2^18 reserved
//!   each in a capacity of 2^20, classified by a `priority_fn` on the request (a plain function
//!   of the request, as a route-based classifier is; `ByExtension` would need an
//!   `http::Request` whose extension map costs an allocation to build, which would measure the
//!   request, not the bulkhead). Each request here is in `normal`, the middle class, so a call
//!   pays for the class lookup by name and the packed-word admission of a class that is not the
//!   first.
//! - `tower_resilience`: tower-resilience-bulkhead with its default wait policy (wait without
//!   bound, `semaphore.acquire_owned().await`), its cheapest admission path.
//! - `tower_resilience_fail_fast`: the same with `reject_when_full()` (rampart's semantics:
//!   `tokio::time::timeout(0, acquire_owned())`), which needs the entered runtime's timer to
//!   build its `Sleep`. tower-resilience boxes every response future and emits an event per
//!   call (a `String` clone of the bulkhead's name each); no listener, `tracing` or `metrics`
//!   feature is enabled.
//!
//! Run: `cargo bench -p rampart-benches --bench bulkhead`.

use std::{
    convert::Infallible,
    future::{Ready, ready},
};

use criterion::{Criterion, criterion_group, criterion_main};
use rampart_benches::{
    bench_calls, bench_threads, configure, configure_contended, ready_call, runtime,
};
use rampart_bulkhead::{Bulkhead, BulkheadLayer, Prioritize, priority_fn};
use tower::{Layer, Service, limit::ConcurrencyLimitLayer, service_fn};
use tower_resilience_bulkhead::BulkheadLayer as TrLayer;

/// Every limit: far above anything a bench holds at once.
const LIMIT: u32 = 1 << 20;

/// The protected service: answers at once, allocates nothing.
fn echo(req: u64) -> Ready<Result<u64, Infallible>> {
    ready(Ok(req))
}

/// The class of a request: a plain function of it, as a route-based classifier is.
fn classify(req: &u64) -> Option<&'static str> {
    Some(match req % 3 {
        0 => "critical",
        1 => "normal",
        _ => "bulk",
    })
}

/// A rampart bulkhead without classes.
fn rampart() -> BulkheadLayer {
    BulkheadLayer::builder()
        .name("bench")
        .max_concurrent(LIMIT)
        .layer()
        .expect("a valid rampart configuration")
}

/// A rampart bulkhead with three priority classes, as the crate's docs configure them.
fn rampart_classes() -> BulkheadLayer<impl Prioritize<u64>> {
    BulkheadLayer::builder()
        .name("bench")
        .borrowing_class("critical", LIMIT / 4)
        .class("normal", LIMIT / 4)
        .class("bulk", LIMIT / 4)
        .capacity(LIMIT)
        .default_class("normal")
        .layer()
        .expect("a valid rampart configuration")
        .prioritize(priority_fn(classify))
}

/// A tower-resilience bulkhead; `fail_fast` rejects at once when full instead of waiting.
fn tower_resilience(fail_fast: bool) -> TrLayer {
    let builder = TrLayer::builder()
        .name("bench")
        .max_concurrent_calls(LIMIT as usize);
    let builder = if fail_fast {
        builder.reject_when_full()
    } else {
        builder
    };
    builder
        .build()
        .expect("a valid tower-resilience configuration")
}

/// Checks that `svc` admits a call and that every permit is back afterwards.
fn check_rampart<S, P>(svc: &mut Bulkhead<S, P>)
where
    Bulkhead<S, P>: Service<u64, Response = u64>,
{
    assert!(matches!(ready_call(svc, 7), Ok(7)));
    assert_eq!(svc.handle().stats().active, 0);
}

fn uncontended(c: &mut Criterion) {
    let rt = runtime();
    let _enter = rt.enter();
    let mut group = c.benchmark_group("bulkhead/uncontended");
    configure(&mut group);

    bench_calls(&mut group, "baseline", service_fn(echo));

    bench_calls(
        &mut group,
        "tower_concurrency_limit",
        ConcurrencyLimitLayer::new(LIMIT as usize).layer(service_fn(echo)),
    );

    let mut svc = rampart().layer(service_fn(echo));
    check_rampart(&mut svc);
    bench_calls(&mut group, "rampart", svc);

    let mut svc = rampart_classes().layer(service_fn(echo));
    check_rampart(&mut svc);
    bench_calls(&mut group, "rampart_classes", svc);

    let mut svc = tower_resilience(false).layer(service_fn(echo));
    assert!(matches!(ready_call(&mut svc, 7), Ok(7)));
    bench_calls(&mut group, "tower_resilience", svc);

    let mut svc = tower_resilience(true).layer(service_fn(echo));
    assert!(matches!(ready_call(&mut svc, 7), Ok(7)));
    bench_calls(&mut group, "tower_resilience_fail_fast", svc);

    group.finish();
}

fn contended(c: &mut Criterion) {
    let rt = runtime();
    let _enter = rt.enter();
    let mut group = c.benchmark_group("bulkhead/contended");
    configure_contended(&mut group);

    // The control: nothing shared, so 2 threads should double it unless the machine is busy.
    bench_threads(&mut group, "baseline", &service_fn(echo));

    // One shared limit each: clones share the permits (and the contended atomic word or
    // semaphore).
    bench_threads(
        &mut group,
        "tower_concurrency_limit",
        &ConcurrencyLimitLayer::new(LIMIT as usize).layer(service_fn(echo)),
    );

    let svc = rampart().layer(service_fn(echo));
    bench_threads(&mut group, "rampart", &svc);
    assert_eq!(svc.handle().stats().active, 0);

    bench_threads(
        &mut group,
        "tower_resilience",
        &tower_resilience(false).layer(service_fn(echo)),
    );

    group.finish();
}

criterion_group!(benches, uncontended, contended);
criterion_main!(benches);
