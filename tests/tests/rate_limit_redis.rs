//! The distributed rate limit on a real Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`):
//! three limiters (as three replicas) sharing one limit admit within 1 % of it over 10 s under
//! concurrency; with Redis cut off behind a loopback proxy the local fallback decides at once
//! and the limiter says it is degraded, and it goes back to Redis when Redis is back; a bad
//! setting names its field.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rampart_rate_limit::Quota;
use rampart_redis::{RateLimiterErrorKind, RedisFallback, RedisRateLimiter};
use tokio::net::TcpListener;

fn unique() -> String {
    format!(
        "rampart-test:{}:{}",
        std::process::id(),
        rampart_dead_letter::DeadLetterId::new()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_limit_within_one_percent() {
    let Some(url) = rampart_tests::redis_url() else {
        return;
    };
    let prefix = unique();
    const RATE: u64 = 100;
    const BURST: u64 = 10;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(
            RedisRateLimiter::builder(&url, Quota::per_second(RATE).burst(BURST))
                .prefix(&prefix)
                .name("shared")
                .response_timeout(Duration::from_secs(1))
                .connect()
                .await
                .unwrap(),
        );
    }
    let admitted = Arc::new(AtomicU64::new(0));
    let run_for = Duration::from_secs(10);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for limiter in &replicas {
        for _ in 0..3 {
            let (limiter, admitted) = (limiter.clone(), admitted.clone());
            tasks.push(tokio::spawn(async move {
                while start.elapsed() < run_for {
                    match limiter.check("tenant-1", 1).await {
                        Ok(None) => {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Some(_)) => panic!("no waiting configured"),
                        // Asked again when the next unit is due, as a client would.
                        Err(refused) => {
                            let wait = refused.retry_after().unwrap();
                            tokio::time::sleep(wait.min(run_for.saturating_sub(start.elapsed())))
                                .await;
                        }
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let admitted = admitted.load(Ordering::Relaxed) as f64;
    let limit = BURST as f64 + RATE as f64 * elapsed;
    assert!(
        admitted <= limit + 1.0,
        "{admitted} admitted over {elapsed:.2} s: over the limit of {limit:.0}"
    );
    assert!(
        admitted >= limit * 0.99,
        "{admitted} admitted over {elapsed:.2} s: more than 1 % under the limit of {limit:.0}"
    );
    assert!(
        replicas
            .iter()
            .all(|r| !r.is_degraded() && r.backend_failures() == 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_cut_off_the_local_fallback_decides_and_the_limiter_recovers() {
    let Some(url) = rampart_tests::redis_url() else {
        return;
    };
    let redis = rampart_tests::redis_addr(&url);
    let proxy = rampart_tests::Proxy::start(redis).await;
    let limiter = RedisRateLimiter::builder(
        format!("redis://{}", proxy.addr),
        Quota::per_minute(1000).burst(1000),
    )
    .prefix(unique())
    .name("cut")
    .response_timeout(Duration::from_millis(100))
    .fallback(RedisFallback::Local { replicas: 100 })
    .connect()
    .await
    .unwrap();
    assert_eq!(limiter.check("k", 1).await, Ok(None), "Redis decides");

    proxy.cut.store(true, Ordering::SeqCst);
    // Until the proxy has dropped the open connection (probing another key, whose local
    // limit is its own).
    tokio::time::timeout(Duration::from_secs(5), async {
        while !limiter.is_degraded() {
            let _ = limiter.check("probe", 1).await;
        }
    })
    .await
    .expect("the cut is seen");
    // The local fallback holds a hundredth of the limit: 10 at once.
    let started = Instant::now();
    let mut admitted = 0;
    for _ in 0..20 {
        if limiter.check("k", 1).await.is_ok() {
            admitted += 1;
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "never held much past the response timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(admitted, 10, "the local share while Redis is away");
    assert!(limiter.is_degraded());
    assert!(
        limiter.backend_failures() >= 20,
        "{}",
        limiter.backend_failures()
    );
    // The health view says so, and how the calls are decided meanwhile.
    let health = rampart::health::Component::check(&limiter).await;
    assert_eq!(health.status, rampart::health::Status::Degraded);
    let reason = health.reason.clone().unwrap_or_default();
    assert!(reason.contains("deciding locally at 10 per"), "{reason}");

    proxy.cut.store(false, Ordering::SeqCst);
    let back = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if limiter.check("k", 1).await.is_ok() && !limiter.is_degraded() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(back.is_ok(), "back on Redis once it answers again");
    let health = rampart::health::Component::check(&limiter).await;
    assert_eq!(health.status, rampart::health::Status::Healthy);
}

#[tokio::test]
async fn a_bad_setting_names_its_field_and_an_absent_redis_is_unavailable() {
    let err = RedisRateLimiter::builder("redis://127.0.0.1:1", Quota::per_second(10))
        .name("{bad}")
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), RateLimiterErrorKind::Config);
    assert!(err.to_string().contains("name"), "{err}");

    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let err = RedisRateLimiter::builder(format!("redis://{closed}"), Quota::per_second(10))
        .connect_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), RateLimiterErrorKind::Unavailable, "{err}");
}

/// Two replicas of an axum service, each with the layer over one Redis limit per tenant: the
/// tenant's quota is spent across both, and the second replica answers `429`.
#[tokio::test]
async fn two_axum_replicas_enforce_one_limit_per_tenant() {
    use axum::{Router, error_handling::HandleErrorLayer, routing::get};
    use http_body_util::Empty;
    use rampart::core::key::ByHeader;
    use rampart_rate_limit::RemoteRateLimitLayer;
    use tower::ServiceBuilder;

    let Some(url) = rampart_tests::redis_url() else {
        return;
    };
    let prefix = unique();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let limiter = RedisRateLimiter::builder(&url, Quota::per_minute(3))
            .prefix(&prefix)
            .name("api")
            .connect()
            .await
            .unwrap();
        let layer = RemoteRateLimitLayer::new(
            limiter.keyed(ByHeader::new(http::HeaderName::from_static("x-tenant"))),
        );
        let app = Router::new().route("/items", get(|| async { "[]" })).layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(rampart::axum::handle_error))
                .layer(layer),
        );
        replicas.push(rampart_tests::serve(app).await);
    }
    let client = rampart_tests::http_client();
    let call = |addr: SocketAddr, tenant: &'static str| {
        let client = client.clone();
        async move {
            let req = http::Request::get(format!("http://{addr}/items"))
                .header("x-tenant", tenant)
                .body(Empty::new())
                .unwrap();
            client.request(req).await.unwrap()
        }
    };
    assert_eq!(call(replicas[0], "acme").await.status(), 200);
    assert_eq!(call(replicas[1], "acme").await.status(), 200);
    assert_eq!(call(replicas[0], "acme").await.status(), 200);
    let refused = call(replicas[1], "acme").await;
    assert_eq!(
        refused.status(),
        429,
        "the quota was spent across both replicas"
    );
    assert_eq!(refused.headers()["retry-after"], "20");
    assert_eq!(refused.headers()["ratelimit-policy"], r#""limit";q=3;w=60"#);
    assert_eq!(
        call(replicas[1], "globex").await.status(),
        200,
        "another tenant"
    );
}

#[tokio::test]
async fn a_budget_kept_in_redis_survives_a_restart_and_expires_with_its_period() {
    use rampart_rate_limit::budget::{Budget, BudgetLayer, BudgetStoreErrorKind, Period};
    use rampart_redis::RedisBudgetStore;
    use redis::AsyncCommands as _;
    use tower::{Layer, ServiceExt, service_fn};

    let Some(url) = rampart_tests::redis_url() else {
        return;
    };
    let prefix = unique();
    let store = || async {
        RedisBudgetStore::builder(&url)
            .prefix(&prefix)
            .connect()
            .await
            .unwrap()
    };
    let budget = |store| Budget::new(10, Period::hour()).name("llm").store(store);
    let svc = service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) });
    {
        let first = BudgetLayer::connect(budget(store().await)).await.unwrap();
        for _ in 0..4 {
            first.layer(svc).oneshot(()).await.unwrap();
        }
        first.handle().flush().await.unwrap();
    }
    // A new connection, as a restarted process makes.
    let second = BudgetLayer::connect(budget(store().await)).await.unwrap();
    assert_eq!(second.handle().stats().spent, 4);

    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = format!("{prefix}:llm");
    let ttl: i64 = conn.ttl(&key).await.unwrap();
    assert!(
        (1..=3600).contains(&ttl),
        "expires with the hour, ttl {ttl}"
    );

    let () = conn.set(&key, "not a snapshot").await.unwrap();
    let err = BudgetLayer::connect(budget(store().await))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), BudgetStoreErrorKind::Corrupt);
    assert!(err.to_string().contains("llm"), "{err}");
    let () = conn.del(&key).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_hot_key_is_refused_again_without_a_round_trip() {
    let Some(url) = rampart_tests::redis_url() else {
        return;
    };
    let redis = rampart_tests::redis_addr(&url);
    for cache in [10_000, 0] {
        let proxy = rampart_tests::Proxy::start(redis).await;
        let limiter = RedisRateLimiter::builder(
            format!("redis://{}", proxy.addr),
            Quota::per_minute(1).burst(1),
        )
        .prefix(unique())
        .name("hot")
        .response_timeout(Duration::from_millis(100))
        .refusal_cache(cache)
        .connect()
        .await
        .unwrap();
        assert_eq!(limiter.check("hot", 1).await, Ok(None));
        let refused = limiter.check("hot", 1).await.unwrap_err();
        let wait = refused.retry_after().unwrap();
        assert!(wait > Duration::from_secs(59), "{wait:?}");

        // Redis unreachable: only a call that needs it notices.
        proxy.cut.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await; // the proxy drops its connections
        let again = limiter.check("hot", 1).await;
        if cache > 0 {
            assert!(again.unwrap_err().retry_after().unwrap() <= wait);
            assert_eq!(limiter.refusals_cached(), 1);
            assert_eq!(
                limiter.backend_failures(),
                0,
                "no round trip for the hot key"
            );
            assert!(!limiter.is_degraded());
        } else {
            assert_eq!(limiter.refusals_cached(), 0);
            assert!(limiter.is_degraded(), "without the cache, Redis was asked");
            assert_eq!(again, Ok(None), "and the local fallback, fresh, decided");
        }
    }
}
