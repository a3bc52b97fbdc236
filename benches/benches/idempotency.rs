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
//! - `redis_miss` and `redis_replay`: `rampart_miss` and `rampart_replay` with the layer over
//!   `RedisIdempotencyStore` (rampart-redis) at `REDIS_URL` (default `redis://127.0.0.1:6379`)
//!   instead of the memory store: two round trips (`begin`, `complete`: one `EVALSHA` each)
//!   for a miss, one for a replay, over loopback. A prefix of the run's own, its keys removed
//!   at the end; skipped with a line on stderr when Redis does not answer.
//! - `redis_round_trip`: their floor, a bare `PING` through the same kind of connection (a
//!   redis-rs `ConnectionManager`), driven the same way: what one round trip costs before the
//!   layer and the store's script add theirs.
//!
//! Every member is driven the same way ([`rampart_benches::ready_call`]): polled on the calling
//! thread with a no-op waker, inside a tokio runtime's context but not on its scheduler; the
//! memory store answers at once, so each call completes in one poll. A Redis member's call
//! waits (parked) for its runtime's one worker thread, which drives the store's connection.
//!
//! Run: `cargo bench -p rampart-benches --bench idempotency`.

use rampart_core::header::IDEMPOTENCY_KEY;
use std::{
    convert::Infallible,
    future::{Ready, ready},
    hint::black_box,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use rampart_benches::{block_on, configure, ready_call, runtime};
use rampart_idempotency::{IdempotencyLayer, MemoryStore};
use rampart_redis::RedisIdempotencyStore;
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
    let res = ready_call(svc, post(n, IDEMPOTENCY_KEY)).expect("a response");
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
        IDEMPOTENCY_KEY,
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
    bench_posts(&mut group, "rampart_miss", svc, IDEMPOTENCY_KEY, || {
        miss += 1;
        miss
    });

    let mut svc = layer().layer(service_fn(handler));
    check(&mut svc, 0, false);
    check(&mut svc, 0, true);
    bench_posts(&mut group, "rampart_replay", svc, IDEMPOTENCY_KEY, || 0);

    redis_members(&mut group);

    group.finish();
}

/// `redis_round_trip`, `redis_miss` and `redis_replay`, if Redis answers.
fn redis_members(group: &mut BenchmarkGroup<'_, WallTime>) {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let prefix = format!("rampart_bench:idem:{}:{run:x}", std::process::id());
    // As `runtime()`, with IO for the store's connection.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let _enter = rt.enter();
    let connected = rt.block_on(async {
        let ping = redis::Client::open(url.as_str())
            .map_err(|e| e.to_string())?
            .get_connection_manager()
            .await
            .map_err(|e| e.to_string())?;
        let store = RedisIdempotencyStore::builder(url.as_str())
            .prefix(prefix)
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((ping, store))
    });
    match connected {
        Ok((mut ping, store)) => {
            group.bench_function("redis_round_trip", |b| {
                b.iter(|| {
                    black_box(block_on(redis::cmd("PING").query_async::<()>(&mut ping)).is_ok())
                });
            });

            let store = Arc::new(store);
            // Short-lived entries: the misses add one per iteration.
            let layer = || {
                IdempotencyLayer::builder(store.clone())
                    .lease_ttl(Duration::from_secs(10))
                    .retention(Duration::from_secs(120))
                    .build()
                    .expect("a valid layer")
            };
            let mut svc = layer().layer(service_fn(handler));
            check(&mut svc, 0, false);
            check(&mut svc, 1, false);
            let mut miss = 1u64;
            bench_posts(group, "redis_miss", svc, IDEMPOTENCY_KEY, || {
                miss += 1;
                miss
            });

            let mut svc = layer().layer(service_fn(handler));
            check(&mut svc, 0, true);
            bench_posts(group, "redis_replay", svc, IDEMPOTENCY_KEY, || 0);
            rt.block_on(store.clear())
                .expect("the bench's keys removed");
        }
        Err(e) => eprintln!("SKIP idempotency/per_request/redis_*: {e}"),
    }
}

criterion_group!(benches, per_request);
criterion_main!(benches);
