//! Rate limits around a no-op service: rampart against a pass-through baseline, governor (the
//! GCRA limiter most Rust services use; called directly, wrapped as the same kind of service)
//! and tower's `RateLimit`, all in one run so the ratios hold on a noisy machine.
//!
//! Groups:
//! - `rate_limit/admitted`: one admitted call (`poll_ready` + `call` + the future), the
//!   limit far from reached (a billion units a second, a burst of 2^30): the hot path.
//!   - `governor_direct`: `RateLimiter::direct(..).check()` then the echo, in a `service_fn`.
//!   - `tower_rate_limit`: tower's `RateLimit` (counts calls per period; not `Clone`, state per
//!     service instance).
//!   - `rampart`: `RateLimitLayer` with one limit for every call, on tokio's clock (the
//!     default). In this build tokio has its `test-util` feature (async-nats, a dependency of
//!     another bench, turns it on), so every tokio clock read first checks for a paused
//!     clock; `rampart_std_clock` reads std's clock instead, as tokio's `Instant::now` does in
//!     a build without `test-util`; `rampart_fast_clock` reads the CPU's time-stamp counter
//!     through quanta, as governor does (`RateLimitBuilder::fast_clock`).
//! - `rate_limit/keyed`: one admitted call whose key cycles through 10 000 keys (a `u64`
//!   request keyed by itself): rampart's bounded registry against governor's keyed (dashmap)
//!   limiter, both on the TSC clock.
//! - `rate_limit/contended`: clones of ONE limiter from 1 and 2 threads (wall time per call).
//!
//! - `rate_limit/redis`: one decision of the distributed limit (a round trip running the GCRA
//!   script) against a bare `PING`, one call at a time; and a hot key's refusal answered from
//!   the refusal cache.
//!
//! tower-governor (governor as an axum-flavoured tower layer) is not in the run: it needs
//! `http::Request`s and axum's extractors, so it would measure request building, not the
//! limit; `governor_direct` is its floor.
//!
//! Run: `cargo bench -p rampart-benches --bench rate_limit`.

use std::{
    convert::Infallible,
    future::{Ready, ready},
    hint::black_box,
    num::NonZeroU32,
    sync::Arc,
    time::Duration,
};

use criterion::{Criterion, criterion_group, criterion_main};
use governor::{Quota as GQuota, RateLimiter};
use rampart_benches::{
    bench_calls, bench_threads, configure, configure_contended, ready_call, runtime,
};
use rampart_core::{
    clock::{Clock, Instant},
    key::key_fn,
};
use rampart_rate_limit::{Quota, RateLimitLayer};
use tower::{Layer, limit::RateLimitLayer as TowerRateLimitLayer, service_fn};

/// std's monotonic clock, as tokio's reads it when its `test-util` feature is off.
#[derive(Debug)]
struct StdClock;

impl Clock for StdClock {
    fn now(&self) -> Instant {
        Instant::from_std(std::time::Instant::now())
    }
}

/// The protected service: answers at once, allocates nothing.
fn echo(req: u64) -> Ready<Result<u64, Infallible>> {
    ready(Ok(req))
}

/// A billion units a second, 2^30 at once: never reached by a bench.
fn quota() -> Quota {
    Quota::new(1_000_000_000, Duration::from_secs(1)).burst(1 << 30)
}

fn governor_quota() -> GQuota {
    GQuota::per_second(NonZeroU32::MAX).allow_burst(NonZeroU32::MAX)
}

const KEYS: u64 = 10_000;

fn admitted(c: &mut Criterion) {
    let rt = runtime();
    let _enter = rt.enter();
    let mut group = c.benchmark_group("rate_limit/admitted");
    configure(&mut group);

    bench_calls(&mut group, "baseline", service_fn(echo));

    let limiter = Arc::new(RateLimiter::direct(governor_quota()));
    let governor = service_fn(move |req: u64| {
        let ok = limiter.check().is_ok();
        ready(if ok { Ok::<_, Infallible>(req) } else { Ok(0) })
    });
    bench_calls(&mut group, "governor_direct", governor);

    bench_calls(
        &mut group,
        "tower_rate_limit",
        TowerRateLimitLayer::new(u64::MAX, Duration::from_secs(1)).layer(service_fn(echo)),
    );

    let layer = RateLimitLayer::builder(quota())
        .name("bench")
        .layer()
        .expect("a valid quota");
    let mut svc = layer.layer(service_fn(echo));
    assert!(matches!(ready_call(&mut svc, 7), Ok(7)));
    bench_calls(&mut group, "rampart", svc);
    assert_eq!(
        layer.handle().stats().rejected,
        0,
        "nothing refused: the admitted path"
    );

    // The same with std's clock: what a build without tokio's `test-util` reads (see above).
    let layer = RateLimitLayer::builder(quota())
        .name("bench")
        .clock(Arc::new(StdClock))
        .layer()
        .expect("a valid quota");
    bench_calls(
        &mut group,
        "rampart_std_clock",
        layer.layer(service_fn(echo)),
    );

    // The TSC clock governor reads too.
    let layer = RateLimitLayer::builder(quota())
        .name("bench")
        .fast_clock()
        .layer()
        .expect("a valid quota");
    bench_calls(
        &mut group,
        "rampart_fast_clock",
        layer.layer(service_fn(echo)),
    );

    group.finish();
}

fn keyed(c: &mut Criterion) {
    let rt = runtime();
    let _enter = rt.enter();
    let mut group = c.benchmark_group("rate_limit/keyed");
    configure(&mut group);

    let limiter = Arc::new(RateLimiter::keyed(governor_quota()));
    let mut governor = service_fn(move |req: u64| {
        let ok = limiter.check_key(&req).is_ok();
        ready(if ok { Ok::<_, Infallible>(req) } else { Ok(0) })
    });
    group.bench_function("governor_keyed", |b| {
        let mut n = 0u64;
        b.iter(|| {
            n = (n + 1) % KEYS;
            black_box(ready_call(&mut governor, black_box(n)).is_ok())
        });
    });

    let layer = RateLimitLayer::builder(quota())
        .name("bench")
        .fast_clock()
        .max_keys(2 * KEYS as usize)
        .keyed(key_fn(|req: &u64| Some(*req)))
        .expect("a valid quota");
    let mut svc = layer.layer(service_fn(echo));
    group.bench_function("rampart_keyed", |b| {
        let mut n = 0u64;
        b.iter(|| {
            n = (n + 1) % KEYS;
            black_box(ready_call(&mut svc, black_box(n)).is_ok())
        });
    });
    // Under a filter (`-- redis`) the group's functions do not run and no key exists yet.
    let keys = layer.limit().keys();
    assert!(keys == 0 || keys == KEYS as usize, "{keys} keys");
    assert_eq!(layer.handle().stats().rejected, 0);

    group.finish();
}

fn contended(c: &mut Criterion) {
    let rt = runtime();
    let _enter = rt.enter();
    let mut group = c.benchmark_group("rate_limit/contended");
    configure_contended(&mut group);

    bench_threads(&mut group, "baseline", &service_fn(echo));

    let limiter = Arc::new(RateLimiter::direct(governor_quota()));
    let governor = service_fn(move |req: u64| {
        let ok = limiter.check().is_ok();
        ready(if ok { Ok::<_, Infallible>(req) } else { Ok(0) })
    });
    bench_threads(&mut group, "governor_direct", &governor);

    let layer = RateLimitLayer::builder(quota())
        .name("bench")
        .fast_clock()
        .layer()
        .expect("a valid quota");
    bench_threads(
        &mut group,
        "rampart_fast_clock",
        &layer.layer(service_fn(echo)),
    );

    group.finish();
}

/// The distributed limit on Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`): one
/// decision (the GCRA script, `EVALSHA`) against a bare `PING` on the same connection kind, one
/// call at a time; skipped, with a note on stderr, if Redis does not answer.
fn redis(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let Ok(client) = redis::Client::open(url.as_str()) else {
        return;
    };
    let Ok(Ok(mut conn)) = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(2),
            client.get_multiplexed_async_connection(),
        )
        .await
    }) else {
        eprintln!("rate_limit/redis: skipped, no Redis at {url}");
        return;
    };
    let limiter = rt
        .block_on(
            // A million a second (one per microsecond, the script's resolution): never reached
            // at a round trip per call.
            rampart_redis::RedisRateLimiter::builder(
                &url,
                Quota::new(1_000_000, Duration::from_secs(1)).burst(1 << 20),
            )
            .prefix(format!("rampart_bench:{}", std::process::id()))
            .name("bench")
            .response_timeout(Duration::from_secs(1))
            .connect(),
        )
        .expect("a limiter");
    let mut group = c.benchmark_group("rate_limit/redis");
    configure(&mut group);
    group.bench_function("ping", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    let _: String = redis::cmd("PING")
                        .query_async(&mut conn)
                        .await
                        .expect("PONG");
                }
                start.elapsed()
            })
        });
    });
    group.bench_function("rampart_decision", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    let decided = limiter.check("tenant", 1).await;
                    assert!(decided.is_ok(), "admitted: {decided:?}");
                }
                start.elapsed()
            })
        });
    });
    // A hot key over its limit: refused from the refusal cache, no round trip.
    let hot = rt
        .block_on(
            rampart_redis::RedisRateLimiter::builder(&url, Quota::per_hour(1).burst(1))
                .prefix(format!("rampart_bench:{}", std::process::id()))
                .name("hot")
                .connect(),
        )
        .expect("a limiter");
    rt.block_on(async {
        let _ = hot.check("tenant", 1).await;
        let _ = hot.check("tenant", 1).await;
    });
    group.bench_function("rampart_refused_cached", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    black_box(hot.check(black_box("tenant"), 1).await.is_err());
                }
                start.elapsed()
            })
        });
    });
    assert!(!limiter.is_degraded() && !hot.is_degraded());
    assert!(hot.refusals_cached() > 0);
    group.finish();
}

criterion_group!(benches, admitted, keyed, contended, redis);
criterion_main!(benches);
