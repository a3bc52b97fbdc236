//! Shared helpers for rampart's criterion benchmarks (`benches/`) and allocation tests
//! (`tests/`).
//!
//! Every service under measurement is driven the same way, by [`ready_call`]: `poll_ready`,
//! `call`, then the response future polled to completion on the calling thread. There is no
//! async runtime in the loop, so what is measured is the middleware and nothing else, and a
//! call that is ready at once allocates nothing beyond what the service itself allocates.
//!
//! ```
//! use std::{convert::Infallible, future::ready};
//! use rampart_benches::ready_call;
//! use tower::service_fn;
//!
//! let mut svc = service_fn(|n: u64| ready(Ok::<_, Infallible>(n + 1)));
//! assert_eq!(ready_call(&mut svc, 41), Ok(42));
//! ```

use std::{
    future::{Future, poll_fn},
    hint::black_box,
    pin::pin,
    sync::{Arc, Barrier},
    task::{Context, Poll, Wake, Waker},
    thread::{self, Thread},
    time::{Duration, Instant},
};

use criterion::{BenchmarkGroup, BenchmarkId, Throughput, measurement::WallTime};
use tower::Service;

/// Wakes a parked thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    static PARK_WAKER: Waker = Waker::from(Arc::new(Unpark(thread::current())));
}

/// Runs `fut` to completion on the calling thread.
///
/// The first poll uses [`Waker::noop`], which costs and allocates nothing, so a future that is
/// ready at once (every call in the uncontended benches) costs exactly one poll. Only a future
/// that returns `Pending` (e.g. a lock held by another thread) is polled again, with a waker that
/// unparks this thread; that waker is made once per thread. Always inlined, like
/// [`ready_call`], so that no member pays for a call boundary the harness added: a future's
/// output handed back through memory right after it was written stalls the caller, and how
/// much depends on the output's size, not on the middleware's work.
#[inline(always)]
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    if let Poll::Ready(out) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        return out;
    }
    PARK_WAKER.with(|waker| {
        let mut cx = Context::from_waker(waker);
        loop {
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return out;
            }
            thread::park();
        }
    })
}

/// A tokio runtime for the benches to *enter*, not to drive the calls: middleware that arms
/// timers (rampart's breaker on tokio's clock) finds its timer driver there, as it does in a
/// server, while [`ready_call`] still polls on the calling thread. One worker thread keeps the
/// timer driver turning.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .expect("a tokio runtime")
}

/// One call through `svc` as a tower caller makes it: `poll_ready` until ready, `call`, and the
/// response future driven to completion with [`block_on`].
#[inline(always)]
pub fn ready_call<S, Req>(svc: &mut S, req: Req) -> Result<S::Response, S::Error>
where
    S: Service<Req>,
{
    let ready = svc.poll_ready(&mut Context::from_waker(Waker::noop()));
    match ready {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => return Err(e),
        Poll::Pending => block_on(poll_fn(|cx| svc.poll_ready(cx)))?,
    }
    block_on(svc.call(req))
}

/// Makes `calls` calls through clones of `svc` spread over `threads` threads (at least one), and
/// returns the wall time from the moment all threads are released until the last one is done.
///
/// Each thread gets its own clone of `svc`, made before the clock starts, so clones that share
/// state (one breaker behind an `Arc`) contend as they would in a server. Meant for criterion's
/// `iter_custom`: the time per iteration it reports is then the time per call, and its inverse
/// is the throughput of all threads together.
pub fn hammer<S, Req>(svc: &S, threads: usize, calls: u64, req: Req) -> Duration
where
    S: Service<Req> + Clone + Send,
    Req: Clone + Send,
{
    let threads = threads.max(1);
    let share = calls / threads as u64;
    let extra = calls % threads as u64;
    let barrier = Barrier::new(threads + 1);
    let runtime = tokio::runtime::Handle::try_current().ok();
    thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|i| {
                let mut svc = svc.clone();
                let req = req.clone();
                let barrier = &barrier;
                let runtime = runtime.clone();
                let n = share + u64::from((i as u64) < extra);
                scope.spawn(move || {
                    let _enter = runtime.as_ref().map(|rt| rt.enter());
                    barrier.wait();
                    for _ in 0..n {
                        let _ = black_box(ready_call(&mut svc, black_box(req.clone())));
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for worker in workers {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
        start.elapsed()
    })
}

/// Sets the timings of a per-call group: short, so that a whole bench fits in a few minutes on a
/// 2-core machine, yet long enough for stable medians.
pub fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
}

/// Sets the timings of a throughput group (see [`bench_threads`]).
pub fn configure_contended(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .throughput(Throughput::Elements(1));
}

/// Measures one call per iteration through `svc` ([`ready_call`] with request `7`).
pub fn bench_calls<S>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut svc: S)
where
    S: Service<u64>,
{
    group.bench_function(name, |b| {
        b.iter(|| black_box(ready_call(&mut svc, black_box(7)).is_ok()));
    });
}

/// Throughput of `svc`'s clones from 1 and from 2 threads ([`hammer`]).
pub fn bench_threads<S>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, svc: &S)
where
    S: Service<u64> + Clone + Send,
{
    for threads in [1_usize, 2] {
        group.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &threads| {
            b.iter_custom(|calls| hammer(svc, threads, calls, 7));
        });
    }
}
