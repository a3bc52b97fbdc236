//! Retries around a no-op service: rampart against a pass-through baseline, tower's `Retry` and
//! tower-resilience's retry, all in one run so the ratios hold on a noisy machine; and the cost
//! of rampart's idempotency-key injection.
//!
//! Groups:
//! - `retry/success`: the cost of one call (`poll_ready` + `call` + the future driven to
//!   completion) whose first attempt succeeds, the path nearly every call takes. Up to 3
//!   attempts everywhere; requests are `u64`, replayed by `Clone`.
//!   - `tower_retry`: tower's `Retry` with a minimal policy (retry any `Err`, no wait, up to 3
//!     attempts; `clone_request` clones). It clones itself (policy and service) into every
//!     response future.
//!   - `rampart`: `RetryLayer::builder().max_attempts(3)`: every `Err` transient, no hints, no
//!     budget, the default backoff (never consulted on this path).
//!   - `rampart_budget`: the same with the default `RetryBudget` (20 % of the last 10 s, plus
//!     10 a second). Every request deposits, which reads the clock (tokio's, in the entered
//!     runtime) and adds to one atomic slot.
//!   - `tower_resilience`: tower-resilience-retry with `max_attempts(3)` and its defaults. It
//!     boxes every response future and emits an event per call (a `String` clone of the
//!     retry's name and an `Instant::now()`); no listener, `tracing` or `metrics` feature is
//!     enabled.
//! - `retry/key_injection`: the cost of `IdempotencyKeyLayer` on an `http::Request<()>` `POST`
//!   around a no-op service. Every member builds the same request inside the iteration (and
//!   drops the response), so the difference to `baseline` is the layer's: a fresh UUID
//!   (`rampart_key_v7`, the default, time-ordered; `rampart_key_v4`, random), formatted into
//!   a header value, inserted into the header map and into the request's extensions (the
//!   header map's and the extension map's first allocations included).
//!
//! Every member is driven the same way ([`rampart_benches::ready_call`]): polled on the calling
//! thread with a no-op waker, inside a tokio runtime's context (entered, as in a server) but not
//! on its scheduler.
//!
//! Run: `cargo bench -p rampart-benches --bench retry`.

use rampart_core::header::IDEMPOTENCY_KEY;
use std::{
    convert::Infallible,
    future::{Ready, ready},
    hint::black_box,
};

use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use http::{Method, Request, Response, Uri};
use rampart_benches::{bench_calls, configure, ready_call, runtime};
use rampart_idempotency::{IdempotencyKeyLayer, KeyKind};
use rampart_retry::{RetryLayer, budget::RetryBudget};
use tower::{Layer, Service, retry::Policy, service_fn};
use tower_resilience_retry::RetryLayer as TrLayer;

/// Attempts per request, the first included, for every member.
const ATTEMPTS: u32 = 3;

/// The protected service: answers at once, allocates nothing.
fn echo(req: u64) -> Ready<Result<u64, Infallible>> {
    ready(Ok(req))
}

/// The protected HTTP service: answers at once with an empty response.
fn http_echo(_req: Request<()>) -> Ready<Result<Response<()>, Infallible>> {
    ready(Ok(Response::new(())))
}

/// The request of the key-injection group, built the same way for every member.
#[inline(always)]
fn post() -> Request<()> {
    let mut req = Request::new(());
    *req.method_mut() = Method::POST;
    *req.uri_mut() = Uri::from_static("/charges");
    req
}

/// A minimal tower retry policy: retry any `Err` at once while attempts remain. tower clones
/// the policy into every response future, so the count is per request.
#[derive(Clone, Copy)]
struct Attempts(u32);

impl<Req: Clone, Res, E> Policy<Req, Res, E> for Attempts {
    type Future = Ready<()>;

    fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Err(_) if self.0 > 1 => {
                self.0 -= 1;
                Some(ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// A rampart retry, with or without the default budget.
fn rampart(budget: bool) -> RetryLayer {
    let builder = RetryLayer::builder().max_attempts(ATTEMPTS);
    let builder = if budget {
        builder.budget(RetryBudget::default())
    } else {
        builder
    };
    builder.layer().expect("a valid rampart configuration")
}

/// A tower-resilience retry with its defaults.
fn tower_resilience() -> TrLayer<u64, u64, Infallible> {
    TrLayer::builder()
        .name("bench")
        .max_attempts(ATTEMPTS as usize)
        .build()
}

fn success(c: &mut Criterion) {
    let rt = runtime();
    let _enter = rt.enter();
    let mut group = c.benchmark_group("retry/success");
    configure(&mut group);

    bench_calls(&mut group, "baseline", service_fn(echo));

    let mut svc = tower::retry::RetryLayer::new(Attempts(ATTEMPTS)).layer(service_fn(echo));
    assert!(matches!(ready_call(&mut svc, 7), Ok(7)));
    bench_calls(&mut group, "tower_retry", svc);

    let mut svc = rampart(false).layer(service_fn(echo));
    assert!(matches!(ready_call(&mut svc, 7), Ok(7)));
    bench_calls(&mut group, "rampart", svc);

    // Every request deposits: 5 of them add one retry (20 %) to the reserve.
    let layer = rampart(true);
    let budget = layer.policy().budget().expect("a budget");
    let before = budget.available();
    let mut svc = layer.layer(service_fn(echo));
    for _ in 0..5 {
        assert!(matches!(ready_call(&mut svc, 7), Ok(7)));
    }
    assert_eq!(budget.available(), before + 1);
    bench_calls(&mut group, "rampart_budget", svc);

    let mut svc = tower_resilience().layer(service_fn(echo));
    assert!(matches!(ready_call(&mut svc, 7), Ok(7)));
    bench_calls(&mut group, "tower_resilience", svc);

    group.finish();
}

/// Checks that `layer` sets a UUID key of `version` on a `POST`.
fn check_key(layer: &IdempotencyKeyLayer, version: u8) {
    let mut svc = layer.layer(service_fn(|req: Request<()>| {
        ready(Ok::<_, Infallible>(
            req.headers().get(IDEMPOTENCY_KEY).cloned(),
        ))
    }));
    let key = ready_call(&mut svc, post())
        .ok()
        .flatten()
        .expect("a key on a POST");
    let key = key.as_bytes();
    assert_eq!((key.len(), key[14]), (36, version), "a hyphenated UUID");
}

/// Measures one call per iteration through `svc` with a freshly built [`post`].
fn bench_posts<S>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut svc: S)
where
    S: Service<Request<()>>,
{
    group.bench_function(name, |b| {
        b.iter(|| black_box(ready_call(&mut svc, black_box(post())).is_ok()));
    });
}

fn key_injection(c: &mut Criterion) {
    let rt = runtime();
    let _enter = rt.enter();
    let mut group = c.benchmark_group("retry/key_injection");
    configure(&mut group);

    bench_posts(&mut group, "baseline", service_fn(http_echo));

    let v7 = IdempotencyKeyLayer::new();
    check_key(&v7, b'7');
    bench_posts(
        &mut group,
        "rampart_key_v7",
        v7.layer(service_fn(http_echo)),
    );

    let v4 = IdempotencyKeyLayer::new().kind(KeyKind::V4);
    check_key(&v4, b'4');
    bench_posts(
        &mut group,
        "rampart_key_v4",
        v4.layer(service_fn(http_echo)),
    );

    group.finish();
}

criterion_group!(benches, success, key_injection);
criterion_main!(benches);
