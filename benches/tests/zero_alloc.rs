//! The hot paths allocate nothing (DESIGN.md, rule 4): a call through a closed circuit breaker,
//! a call rejected by an open one (rule 3), a call admitted by a bulkhead, with and without
//! priority classes, a call admitted by a rate limit (one for every call, and one per known
//! key), and a call through a retry whose first attempt succeeds.
//!
//! Allocations are counted by [dhat](https://docs.rs/dhat)'s global allocator in testing mode.
//! dhat counts every thread, so this file runs without libtest's harness (`harness = false`):
//! libtest's main thread does its bookkeeping (the running-test map, the timeout queue) while
//! the test thread it spawned runs, and on a loaded machine that bookkeeping fell inside the
//! measured calls. Here `main` is the only thread. The futures are polled with a no-op waker, first
//! outside any runtime and then inside an entered (not running) tokio runtime, where the breaker
//! arms timers instead of reading the clock; no `tracing` subscriber or `metrics` recorder is
//! installed, so whatever is counted is the middleware's own doing.
//!
//! On failure dhat saves a profile with a backtrace of every allocation it counted (only those
//! of the measured calls: profiling starts after the warm-up) and the assertion names the file;
//! open it in DHAT's viewer (`dh_view.html`) sorted by "Total (blocks)".

use std::{
    convert::Infallible,
    future::{Ready, ready},
    hint::black_box,
    time::Duration,
};

use rampart_benches::ready_call;
use rampart_bulkhead::{BulkheadLayer, priority_fn};
use rampart_circuit_breaker::{BreakerError, CircuitBreakerLayer, RejectedBy, State};
use rampart_rate_limit::{Quota, RateLimitLayer};
use rampart_retry::RetryLayer;
use tower::{Layer, Service, service_fn};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Calls measured per path.
const CALLS: u64 = 1000;

fn echo(req: u64) -> Ready<Result<u64, Infallible>> {
    ready(Ok(req))
}

fn layer() -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder()
        .name("zero-alloc")
        .failure_rate_threshold(50.0)
        .minimum_calls(10)
        // 100 s buckets: a bucket boundary (which re-arms a timer, allocating) never falls
        // inside the measured calls.
        .time_window(Duration::from_secs(1000), 10)
        .consecutive_failures(5)
        .open_duration(Duration::from_secs(3600))
        .layer()
        .expect("a valid configuration")
}

/// The class of a request: a plain function of it, as a route-based classifier is. Successive
/// requests go to every class in turn.
fn classify(req: &u64) -> Option<&'static str> {
    Some(match req % 3 {
        0 => "critical",
        1 => "normal",
        _ => "bulk",
    })
}

/// Makes `CALLS` calls through `svc` under a fresh dhat profiler, checking each result with
/// `ok`, and asserts that they allocated nothing.
fn assert_no_allocation<S>(path: &str, svc: &mut S, ok: fn(&Result<S::Response, S::Error>) -> bool)
where
    S: Service<u64>,
{
    // Warm-up: first-use work (the thread's shard slot, `OnceLock`s, tracing's callsite
    // registration) may allocate once; it is not per call.
    for i in 0..10 {
        let result = ready_call(svc, i);
        assert!(ok(&result), "{path}: unexpected result during warm-up");
    }

    let profile = format!("{}/dhat-{path}.json", env!("CARGO_TARGET_TMPDIR"));
    let _profiler = dhat::Profiler::builder()
        .testing()
        .trim_backtraces(None)
        .file_name(&profile)
        .build();
    let mut all_ok = true;
    for i in 0..CALLS {
        let result = ready_call(svc, black_box(i));
        all_ok &= ok(&result);
        drop(black_box(result));
    }
    let stats = dhat::HeapStats::get();
    assert!(all_ok, "{path}: unexpected result");
    dhat::assert_eq!(
        (stats.total_blocks, stats.total_bytes),
        (0, 0),
        "{path}: {CALLS} calls allocated {} blocks ({} bytes); backtraces in {profile}",
        stats.total_blocks,
        stats.total_bytes,
    );
}

#[allow(
    clippy::print_stdout,
    reason = "a harness-less test reports to the terminal itself"
)]
fn main() {
    hot_paths_allocate_nothing();
    println!("zero_alloc: every hot path allocated nothing");
}

fn hot_paths_allocate_nothing() {
    // Outside a runtime: every breaker decision reads the clock.
    all_paths("");
    // Inside one (as in a server): timers stand in for clock reads. A current-thread runtime
    // that is only entered runs no threads of its own, so nothing else allocates meanwhile.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let _enter = rt.enter();
    all_paths("runtime-");
}

fn all_paths(prefix: &str) {
    let path = |p: &str| format!("{prefix}{p}");
    // Closed: admitted, run, outcome recorded into the time window.
    let mut closed = layer().layer(service_fn(echo));
    assert_no_allocation(&path("closed"), &mut closed, |r| r.is_ok());
    assert_eq!(closed.handle().stats().successes, 10 + CALLS);

    // Open (tripped, normal mode): rejected with a retry-after hint read from the clock.
    let tripped = layer();
    tripped.handle().transition_to(State::Open);
    let mut open = tripped.layer(service_fn(echo));
    assert_no_allocation(
        &path("open"),
        &mut open,
        |r| matches!(r, Err(BreakerError::Rejected(e)) if e.rejected_by() == RejectedBy::Open && e.retry_after().is_some()),
    );

    // Forced open through the handle.
    let forced = layer();
    forced.handle().force_open();
    let mut forced_open = forced.layer(service_fn(echo));
    assert_no_allocation(
        &path("forced_open"),
        &mut forced_open,
        |r| matches!(r, Err(BreakerError::Rejected(e)) if e.rejected_by() == RejectedBy::ForcedOpen),
    );
    assert_eq!(forced.handle().stats().rejections, 10 + CALLS);

    // Bulkhead, one class: admitted (one compare-and-swap), run, permit released.
    let bulkhead = BulkheadLayer::builder()
        .name("zero-alloc")
        .max_concurrent(10)
        .layer()
        .expect("a valid configuration");
    let mut svc = bulkhead.layer(service_fn(echo));
    assert_no_allocation(&path("bulkhead"), &mut svc, |r| r.is_ok());
    let stats = bulkhead.handle().stats();
    assert_eq!((stats.active, stats.rejected), (0, 0));

    // Bulkhead, three classes (the crate's documented example), every request classified by
    // name; the requests cycle through all three classes.
    let classes = BulkheadLayer::builder()
        .name("zero-alloc-classes")
        .borrowing_class("critical", 10)
        .class("normal", 5)
        .class("bulk", 2)
        .capacity(20)
        .default_class("normal")
        .layer()
        .expect("a valid configuration")
        .prioritize(priority_fn(classify));
    let mut svc = classes.layer(service_fn(echo));
    assert_no_allocation(&path("bulkhead_classes"), &mut svc, |r| r.is_ok());
    let stats = classes.handle().stats();
    assert_eq!((stats.active, stats.rejected), (0, 0));

    // Rate limit, one limit for every call: admitted (one compare-and-swap on the TAT).
    let limit =
        RateLimitLayer::builder(Quota::new(1_000_000_000, Duration::from_secs(1)).burst(1 << 30))
            .name("zero-alloc")
            .layer()
            .expect("a valid quota");
    let mut svc = limit.layer(service_fn(echo));
    assert_no_allocation(&path("rate_limit"), &mut svc, |r| r.is_ok());
    assert_eq!(limit.handle().stats().rejected, 0);

    // Rate limit per key, the keys known (the warm-up made them): a read-locked lookup.
    let keyed =
        RateLimitLayer::builder(Quota::new(1_000_000_000, Duration::from_secs(1)).burst(1 << 30))
            .name("zero-alloc-keyed")
            .keyed(rampart_core::key::key_fn(|req: &u64| Some(req % 10)))
            .expect("a valid quota");
    let mut svc = keyed.layer(service_fn(echo));
    assert_no_allocation(&path("rate_limit_keyed"), &mut svc, |r| r.is_ok());
    assert_eq!(keyed.limit().keys(), 10);

    // Retry, no budget: the first attempt succeeds (the request kept by `Clone` for a replay
    // that never comes, the inner service and the policy's `Arc` cloned into the future).
    let mut svc = RetryLayer::builder()
        .max_attempts(3)
        .layer()
        .expect("a valid configuration")
        .layer(service_fn(echo));
    assert_no_allocation(&path("retry"), &mut svc, |r| r.is_ok());
}
