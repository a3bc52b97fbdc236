//! Server-side idempotency with the in-memory store: the latency the layer adds per request,
//! against a pass-through baseline in the same run, so the differences hold on a noisy machine.
//!
//! Group `idempotency/per_request`; every member builds the same `POST /charges` request inside
//! the iteration (method, URI, an `Idempotency-Key` header formatted from a counter, a 29-byte
//! JSON body as a `String`) and drops the response, so the difference to `baseline` is the
//! layer's:
//! - `baseline`: a `service_fn` answering a fixed `201` JSON response (one header, 14-byte
//!   body).
//! - `rampart_unkeyed`: the layer on an optional route, the request's key in another header:
//!   the method check and the header lookup, then the inner call untouched.
//! - `rampart_miss`: a new key every request, so each is a first execution: the body read into
//!   memory, a SHA-256 fingerprint, `begin` (takes the lease), the inner call, the response body
//!   read, its headers filtered, `complete` (stored), in one boxed future. The store holds
//!   100 000 entries; once full, each request also evicts the oldest stored response, the
//!   steady state of a busy server.
//! - `rampart_replay`: the same key and body every request: body read, fingerprint, `begin`
//!   (finds the stored response) and the replay built from it (headers cloned,
//!   `Idempotent-Replayed` added). The inner service is not called.
//!
//! Every member is driven the same way ([`rampart_benches::ready_call`]): polled on the calling
//! thread with a no-op waker, inside a tokio runtime's context but not on its scheduler; the
//! memory store answers at once, so each call completes in one poll.
//!
//! Run: `cargo bench -p rampart-benches --bench idempotency`.

use std::{
    convert::Infallible,
    future::{Ready, ready},
    hint::black_box,
    sync::Arc,
};

use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use rampart_benches::{configure, ready_call, runtime};
use rampart_idempotency::{IdempotencyLayer, MemoryStore};
use tower::{Layer, Service, service_fn};

/// The request of every member: `POST /charges` with a key made from `n` in header `key_header`.
#[inline(always)]
fn post(n: u64, key_header: &'static str) -> Request<String> {
    let mut req = Request::new(String::from("{\"amount\":500,\"currency\":\"eur\"}"));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = Uri::from_static("/charges");
    let key = HeaderValue::from_str(&format!("order-{n}")).expect("a valid key");
    req.headers_mut().insert(key_header, key);
    req
}

/// The handler's response: `201` with a JSON body.
#[inline(always)]
fn created() -> Response<String> {
    let mut res = Response::new(String::from("{\"id\":\"ch_1\"}"));
    *res.status_mut() = StatusCode::CREATED;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

fn baseline(_req: Request<String>) -> Ready<Result<Response<String>, Infallible>> {
    ready(Ok(created()))
}

fn handler<B>(_req: Request<B>) -> Ready<Result<Response<String>, Infallible>> {
    ready(Ok(created()))
}

/// A layer over a fresh memory store of 100 000 entries.
fn layer() -> IdempotencyLayer {
    let store = MemoryStore::bounded(100_000).expect("a valid store");
    IdempotencyLayer::builder(Arc::new(store))
        .build()
        .expect("a valid layer")
}

/// Measures one call per iteration through `svc`, with request number `next()` in `header`.
fn bench_posts<S, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    mut svc: S,
    header: &'static str,
    mut next: impl FnMut() -> u64,
) where
    S: Service<Request<String>, Response = Response<B>>,
{
    group.bench_function(name, |b| {
        b.iter(|| black_box(ready_call(&mut svc, black_box(post(next(), header))).is_ok()));
    });
}

/// Checks what a request through `svc` with key `n` gets: its status and whether it is a replay.
fn check<S, B>(svc: &mut S, n: u64, replayed: bool)
where
    S: Service<Request<String>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let res = ready_call(svc, post(n, "idempotency-key")).expect("a response");
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers().contains_key("idempotent-replayed"), replayed);
}

fn per_request(c: &mut Criterion) {
    let rt = runtime();
    let _enter = rt.enter();
    let mut group = c.benchmark_group("idempotency/per_request");
    configure(&mut group);

    let mut n = 0u64;
    bench_posts(
        &mut group,
        "baseline",
        service_fn(baseline),
        "idempotency-key",
        || {
            n += 1;
            n
        },
    );

    bench_posts(
        &mut group,
        "rampart_unkeyed",
        layer().layer(service_fn(handler)),
        "x-other-key",
        || {
            n += 1;
            n
        },
    );

    let mut svc = layer().layer(service_fn(handler));
    check(&mut svc, 0, false);
    check(&mut svc, 1, false);
    let mut miss = 1u64;
    bench_posts(&mut group, "rampart_miss", svc, "idempotency-key", || {
        miss += 1;
        miss
    });

    let mut svc = layer().layer(service_fn(handler));
    check(&mut svc, 0, false);
    check(&mut svc, 0, true);
    bench_posts(&mut group, "rampart_replay", svc, "idempotency-key", || 0);

    group.finish();
}

criterion_group!(benches, per_request);
criterion_main!(benches);
