//! A dead-letter store that fails: with Redis cut off (a loopback proxy in front of it is shut
//! down mid-test), the dead-letter layer keeps every record in its SQLite secondary store, and
//! without a secondary, the caller gets both the original failure and the store's error.
#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use rampart::core::body::ReplayBody;
use rampart_dead_letter::{
    DEAD_LETTER_ID, DeadLetterLayer, DeadLetterStore, Filter, ParkFailed, Query, SqliteStore,
    StoreErrorKind,
};
use rampart_redis::RedisDeadLetterStore;
use tokio::{net::TcpListener, task::JoinSet};
use tower::{Layer, ServiceExt, service_fn};

/// A TCP proxy on loopback to `target`; dropping it cuts every connection through it.
struct Proxy {
    addr: std::net::SocketAddr,
    tasks: JoinSet<()>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut tasks = JoinSet::new();
        let conns = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        let held = conns.clone();
        tasks.spawn(async move {
            let _held = held;
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let target = target.clone();
                conns.lock().await.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Proxy { addr, tasks }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Aborting the accept loop drops the connections' `JoinSet`, which aborts them too.
        self.tasks.abort_all();
    }
}

fn failing() -> impl tower::Service<
    Request<ReplayBody<Full<Bytes>>>,
    Response = Response<Full<Bytes>>,
    Error = std::convert::Infallible,
    Future: Send,
> + Clone {
    service_fn(|_req: Request<ReplayBody<Full<Bytes>>>| async {
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.status_mut() = StatusCode::BAD_GATEWAY;
        Ok(res)
    })
}

fn order(i: usize) -> Request<Full<Bytes>> {
    Request::post("http://payments.internal/orders")
        .header("idempotency-key", format!("order-{i}"))
        .body(Full::new(Bytes::from(format!("{{\"order\":{i}}}"))))
        .unwrap()
}

fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hp = rest.split(['/', '?']).next().unwrap();
    let hp = hp.rsplit_once('@').map_or(hp, |(_, h)| h);
    if hp.contains(':') {
        hp.to_owned()
    } else {
        format!("{hp}:6379")
    }
}

#[tokio::test]
async fn with_redis_cut_off_records_go_to_the_secondary_and_none_is_lost() {
    let Some(url) = rampart_tests::redis_url() else {
        return;
    };
    let proxy = Proxy::start(host_port(&url)).await;
    let prefix = format!("rampart:test:outage:{}", std::process::id());
    let redis = RedisDeadLetterStore::builder(format!("redis://{}", proxy.addr))
        .prefix(prefix.clone())
        .response_timeout(Duration::from_millis(500))
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let redis: Arc<dyn DeadLetterStore> = Arc::new(redis);
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn DeadLetterStore> =
        Arc::new(SqliteStore::open(dir.path().join("fallback.db")).unwrap());
    let svc = DeadLetterLayer::builder("payments", redis.clone())
        .secondary(sqlite.clone())
        .build()
        .unwrap()
        .layer(failing());

    // Redis up: the record goes to Redis.
    let res = svc.clone().oneshot(order(0)).await.unwrap();
    let first = res.headers()[DEAD_LETTER_ID].to_str().unwrap().to_owned();
    let in_redis = redis.list(&Query::new(Filter::all(), 10)).await.unwrap();
    assert_eq!(in_redis.len(), 1);
    assert_eq!(in_redis[0].id.to_string(), first);

    // Redis cut off: every record lands in SQLite, and each response names it.
    drop(proxy);
    let mut ids = Vec::new();
    for i in 1..=5 {
        let res = tokio::time::timeout(Duration::from_secs(10), svc.clone().oneshot(order(i)))
            .await
            .expect("a failing store answers within its timeout")
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::BAD_GATEWAY,
            "the caller still gets the failure"
        );
        ids.push(res.headers()[DEAD_LETTER_ID].to_str().unwrap().to_owned());
    }
    let kept = sqlite.list(&Query::new(Filter::all(), 10)).await.unwrap();
    assert_eq!(
        kept.iter().map(|r| r.id.to_string()).collect::<Vec<_>>(),
        ids,
        "nothing lost"
    );
    assert!(
        kept.iter()
            .zip(1..)
            .all(|(r, i)| r.idempotency_key.as_deref() == Some(format!("order-{i}").as_str()))
    );
    let err = redis.stats().await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Unavailable);

    // Without a secondary, the caller gets the failure and the store's error, not silence.
    let alone = DeadLetterLayer::builder("payments", redis.clone())
        .build()
        .unwrap()
        .layer(failing());
    let err = alone.oneshot(order(9)).await.unwrap_err();
    let failed = err.downcast_ref::<ParkFailed>().unwrap();
    assert_eq!(failed.store_errors()[0].kind(), StoreErrorKind::Unavailable);
    assert!(err.to_string().contains("502"), "{err}");

    // Clean up through a direct connection.
    let direct = RedisDeadLetterStore::builder(url)
        .prefix(prefix)
        .connect()
        .await
        .unwrap();
    direct.destroy().await.unwrap();
}
