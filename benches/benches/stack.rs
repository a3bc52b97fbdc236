//! Whole stacks on real loopback servers: what a user runs, measured as a user would.
//!
//! One invocation runs every case below, interleaved (case after case, then again, for
//! `ROUNDS` rounds), each for `SECS` seconds with `CONNECTIONS` connections kept busy by an
//! in-process load generator (hyper's HTTP/1 client, one task per connection, no pipelining).
//! It prints requests per second and p50/p99 latency per case, and each case's ratio to its
//! baseline.
//!
//! | case | baseline | what it is |
//! |---|---|---|
//! | `server_get_stack` | `server_get_bare` | a trivial axum GET route behind `RespondToErrorsLayer` + bulkhead + breaker + timeout + `IdempotencyLayer` (memory store; a GET passes through) |
//! | `server_post_memory` | `server_post_bare` | a POST with a fresh `Idempotency-Key` each, through the memory idempotency store (bounded, so keys churn) |
//! | `server_post_redis` | `server_post_bare` | the same with the Redis store, if Redis answers at `REDIS_URL` (default `redis://127.0.0.1:6379`) |
//! | `client_stack` | `client_bare` | `rampart_examples::stack::client` (keys, dead letters on the memory store, total deadline, retry, breaker, bulkhead, attempt timeout) over hyper-util's client, vs that client bare, both against a fast loopback server |
//! | `client_stack_sqlite_flaky` | `client_bare_flaky` | the stack parking in SQLite while the upstream fails 10 % of calls with `503`, vs the bare client against the same upstream |
//!
//! Run it with `cargo bench -p rampart-benches --bench stack`. `STACK_SECS`, `STACK_ROUNDS`
//! and `STACK_CONNECTIONS` change the defaults (2 s, 3 rounds, 32 connections).
//!
//! Trade-offs of the method, named: the load generator shares the process and the runtime
//! (two worker threads on this machine) with the servers, as `wrk` on the same host shares
//! its cores; it is cheaper per request than `wrk` (no parsing of its own beyond hyper's), so
//! the overhead of a stack shows at least as much here as it would under `wrk`. Latencies are
//! the load generator's (send to the end of the body).

#![allow(clippy::print_stdout, reason = "the report is the bench's output")]

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, routing::get, routing::post};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use rampart::{
    ServiceBuilderExt,
    bulkhead::BulkheadLayer,
    circuit_breaker::CircuitBreakerLayer,
    core::{classify::HttpClassifier, header::IDEMPOTENCY_KEY},
    dead_letter::{DeadLetterStore, MemoryStore as DeadLetters, SqliteStore},
    idempotency::{IdempotencyLayer, IdempotencyStore, KeyPolicy, MemoryStore},
    timeout::TimeoutLayer,
};
use tokio::net::{TcpListener, TcpStream};
use tower::{Service, ServiceBuilder, ServiceExt};

/// Keys made so far, in every case and round: each POST gets a fresh one.
static NEXT_KEY: AtomicU64 = AtomicU64::new(0);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one run of a case measured.
#[derive(Default)]
struct Sample {
    ok: u64,
    failed: u64,
    elapsed: Duration,
    /// Microseconds per request, every request of every round.
    latencies: Vec<u32>,
}

impl Sample {
    fn add(&mut self, other: Sample) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
    }

    fn per_sec(&self) -> f64 {
        (self.ok + self.failed) as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        Duration::from_micros(u64::from(self.latencies[i]))
    }
}

/// One connection's requests: sends one and says whether it succeeded.
trait Caller: Send + 'static {
    fn call(&mut self) -> impl Future<Output = bool> + Send + '_;
}

/// Drives `callers` (one task each) for `secs`, then stops them and merges what they saw.
async fn drive<C: Caller>(callers: Vec<C>, secs: Duration) -> Sample {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let tasks: Vec<_> = callers
        .into_iter()
        .map(|mut caller| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut s = Sample::default();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let ok = caller.call().await;
                    s.latencies
                        .push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                    if ok {
                        s.ok += 1;
                    } else {
                        s.failed += 1;
                    }
                }
                s
            })
        })
        .collect();
    tokio::time::sleep(secs).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Sample::default();
    for t in tasks {
        total.add(t.await.expect("a load task"));
    }
    total.elapsed = start.elapsed();
    total
}

/// A caller on its own HTTP/1 connection to a server.
struct Connection {
    send: SendRequest<Full<Bytes>>,
    path: &'static str,
    post: bool,
}

impl Connection {
    async fn open(addr: SocketAddr, path: &'static str, post: bool) -> Self {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Self { send, path, post }
    }
}

impl Caller for Connection {
    async fn call(&mut self) -> bool {
        if self.send.ready().await.is_err() {
            return false;
        }
        let mut req = Request::builder()
            .uri(self.path)
            .header("host", "127.0.0.1");
        let body = if self.post {
            let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
            req = req
                .method("POST")
                .header(IDEMPOTENCY_KEY, format!("bench-{key}"));
            Full::new(Bytes::from_static(b"{\"amount\":42}"))
        } else {
            Full::new(Bytes::new())
        };
        let req = req.body(body).expect("a request");
        match self.send.send_request(req).await {
            Ok(res) => {
                let ok = res.status().is_success();
                ok && res.into_body().collect().await.is_ok()
            }
            Err(_) => false,
        }
    }
}

/// A caller through a client service (a clone of it per connection).
struct ClientCaller<S> {
    svc: S,
    uri: http::Uri,
}

impl<S, B> Caller for ClientCaller<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    async fn call(&mut self) -> bool {
        let req = Request::post(self.uri.clone())
            .body(Full::new(Bytes::from_static(b"{\"amount\":42}")))
            .expect("a request");
        let Ok(svc) = self.svc.ready().await else {
            return false;
        };
        match svc.call(req).await {
            Ok(res) => {
                let ok = res.status().is_success();
                ok && res.into_body().collect().await.is_ok()
            }
            Err(_) => false,
        }
    }
}

/// `n` callers through clones of `svc`, to `uri`.
fn clients<S: Clone>(svc: &S, uri: http::Uri, n: usize) -> Vec<ClientCaller<S>> {
    (0..n)
        .map(|_| ClientCaller {
            svc: svc.clone(),
            uri: uri.clone(),
        })
        .collect()
}

async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

/// The server stack of the issue: bulkhead + breaker + timeout, then idempotency.
fn guarded<S>(
    route: axum::routing::MethodRouter<S>,
    store: Arc<dyn IdempotencyStore>,
) -> axum::routing::MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    let bulkhead = BulkheadLayer::builder()
        .name("bench")
        .max_concurrent(256)
        .max_wait(Duration::from_millis(100))
        .layer()
        .expect("a bulkhead");
    let breaker = CircuitBreakerLayer::builder()
        .name("bench")
        .layer()
        .expect("a breaker")
        .classifier(HttpClassifier::new());
    let idempotency = IdempotencyLayer::builder(store)
        .name("bench")
        .policy(KeyPolicy::Optional)
        .build()
        .expect("an idempotency layer");
    route.layer(
        ServiceBuilder::new()
            .layer(rampart::axum::RespondToErrorsLayer::new())
            .bulkhead(bulkhead)
            .circuit_breaker(breaker)
            .timeouts(TimeoutLayer::new(Duration::from_secs(1)).expect("a timeout"))
            .idempotency(idempotency),
    )
}

fn memory_store() -> Arc<MemoryStore> {
    // Bounded below what a run makes, so the run churns through the bound.
    Arc::new(
        MemoryStore::builder()
            .max_entries(50_000)
            .build()
            .expect("a memory store"),
    )
}

async fn redis_store() -> Option<Arc<dyn IdempotencyStore>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("rampart_bench:stack:{}", std::process::id());
    match rampart_redis::RedisIdempotencyStore::builder(url.as_str())
        .prefix(prefix)
        .connect()
        .await
    {
        Ok(store) => Some(Arc::new(store)),
        Err(e) => {
            eprintln!("server_post_redis skipped: {e}");
            None
        }
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let secs = Duration::from_secs_f64(env_or("STACK_SECS", 2.0));
    let rounds: usize = env_or("STACK_ROUNDS", 3);
    let connections: usize = env_or("STACK_CONNECTIONS", 32);
    // `cargo bench` passes `--bench`; a filter argument runs only the cases it names.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(run(secs, rounds, connections, filter));
}

type Case = (&'static str, Option<&'static str>);

async fn run(secs: Duration, rounds: usize, connections: usize, filter: Option<String>) {
    let memory = memory_store();
    let redis = redis_store().await;
    let mut app = Router::new()
        .route("/get_bare", get(|| async { "ok" }))
        .route(
            "/get_stack",
            guarded(get(|| async { "ok" }), memory.clone()),
        )
        .route(
            "/post_bare",
            post(|body: Bytes| async move { (StatusCode::CREATED, body) }),
        )
        .route(
            "/post_memory",
            guarded(
                post(|body: Bytes| async move { (StatusCode::CREATED, body) }),
                memory.clone(),
            ),
        );
    if let Some(store) = redis.clone() {
        app = app.route(
            "/post_redis",
            guarded(
                post(|body: Bytes| async move { (StatusCode::CREATED, body) }),
                store,
            ),
        );
    }
    let server = serve(app).await;

    let flaky_count = Arc::new(AtomicU64::new(0));
    let upstream = serve(Router::new().route("/fast", post(|| async { "ok" })).route(
        "/flaky",
        post(move || {
            let n = flaky_count.fetch_add(1, Ordering::Relaxed);
            async move {
                if n % 10 == 9 {
                    (StatusCode::SERVICE_UNAVAILABLE, "try later")
                } else {
                    (StatusCode::OK, "ok")
                }
            }
        }),
    ))
    .await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sqlite: Arc<dyn DeadLetterStore> =
        Arc::new(SqliteStore::open(dir.path().join("dlq.sqlite3")).expect("a SQLite store"));
    let dead_letters: Arc<dyn DeadLetterStore> =
        Arc::new(DeadLetters::bounded(1_000_000).expect("a memory store"));
    let settings = rampart_examples::stack::Settings {
        max_concurrent: 256,
        ..Default::default()
    };
    let (stack, _) =
        rampart_examples::stack::client(dead_letters, &settings, |_| {}).expect("the client stack");
    let (stack_sqlite, _) =
        rampart_examples::stack::client(sqlite.clone(), &settings, |_| {}).expect("the stack");
    let bare: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();

    let mut cases: Vec<Case> = vec![
        ("server_get_bare", None),
        ("server_get_stack", Some("server_get_bare")),
        ("server_post_bare", None),
        ("server_post_memory", Some("server_post_bare")),
    ];
    if redis.is_some() {
        cases.push(("server_post_redis", Some("server_post_bare")));
    }
    cases.extend([
        ("client_bare", None),
        ("client_stack", Some("client_bare")),
        ("client_bare_flaky", None),
        ("client_stack_sqlite_flaky", Some("client_bare_flaky")),
    ]);
    if let Some(f) = &filter {
        cases.retain(|(name, base)| {
            name.contains(f.as_str()) || base.is_some_and(|b| b.contains(f.as_str()))
        });
        // Keep each kept case's baseline.
        let names: Vec<_> = cases.iter().filter_map(|(_, b)| *b).collect();
        for b in names {
            if !cases.iter().any(|(n, _)| *n == b) {
                cases.push((b, None));
            }
        }
    }
    let uri = |addr: SocketAddr, path: &str| -> http::Uri {
        format!("http://{addr}{path}").parse().expect("a URI")
    };

    let rss_before = rss_kib();
    let mut results: Vec<(&'static str, Sample)> =
        cases.iter().map(|(n, _)| (*n, Sample::default())).collect();
    for round in 0..rounds {
        for (i, (name, _)) in cases.iter().enumerate() {
            let sample = match *name {
                "server_get_bare" | "server_get_stack" | "server_post_bare"
                | "server_post_memory" | "server_post_redis" => {
                    let (path, post) = match *name {
                        "server_get_bare" => ("/get_bare", false),
                        "server_get_stack" => ("/get_stack", false),
                        "server_post_bare" => ("/post_bare", true),
                        "server_post_memory" => ("/post_memory", true),
                        _ => ("/post_redis", true),
                    };
                    let mut callers = Vec::with_capacity(connections);
                    for _ in 0..connections {
                        callers.push(Connection::open(server, path, post).await);
                    }
                    drive(callers, secs).await
                }
                "client_bare" => {
                    drive(clients(&bare, uri(upstream, "/fast"), connections), secs).await
                }
                "client_bare_flaky" => {
                    drive(clients(&bare, uri(upstream, "/flaky"), connections), secs).await
                }
                "client_stack" => {
                    drive(clients(&stack, uri(upstream, "/fast"), connections), secs).await
                }
                _ => {
                    let callers = clients(&stack_sqlite, uri(upstream, "/flaky"), connections);
                    drive(callers, secs).await
                }
            };
            eprintln!(
                "round {}/{rounds} {name}: {:.0} req/s",
                round + 1,
                sample.per_sec()
            );
            results[i].1.add(sample);
        }
    }
    let rss_after = rss_kib();

    println!(
        "\n{connections} connections, {rounds} rounds of {:.1} s per case, interleaved\n",
        secs.as_secs_f64()
    );
    println!(
        "| case | req/s | ratio | p50 | p99 | p99 ratio | failed |\n|---|---|---|---|---|---|---|"
    );
    for (i, (name, base)) in cases.iter().enumerate() {
        let s = &mut results[i].1;
        s.latencies.sort_unstable();
        let (per_sec, p50, p99, failed) =
            (s.per_sec(), s.percentile(0.5), s.percentile(0.99), s.failed);
        let total = s.ok + s.failed;
        let base = base.and_then(|b| results.iter().position(|(n, _)| *n == b));
        let (ratio, p99_ratio) = match base {
            Some(j) => {
                let b = &results[j].1;
                let mut lat = b.latencies.clone();
                lat.sort_unstable();
                let b99 = Sample {
                    latencies: lat,
                    ..Sample::default()
                }
                .percentile(0.99);
                (
                    format!("{:.2}×", per_sec / b.per_sec()),
                    format!("{:.2}×", p99.as_secs_f64() / b99.as_secs_f64().max(1e-9)),
                )
            }
            None => ("baseline".to_owned(), "baseline".to_owned()),
        };
        println!(
            "| {name} | {per_sec:.0} | {ratio} | {p50:?} | {p99:?} | {p99_ratio} | {:.2} % |",
            100.0 * failed as f64 / total.max(1) as f64
        );
    }
    let stats = memory.stats();
    println!(
        "\nmemory idempotency store after the run: {} completed entries (bound 50 000), {} in flight, {} KiB of responses, {} evicted; process RSS {} KiB before the rounds, {} KiB after",
        stats.completed,
        stats.in_flight,
        stats.bytes / 1024,
        stats.evicted,
        rss_before,
        rss_after
    );
    let parked = sqlite.stats().await.map(|s| s.total).unwrap_or(0);
    println!("dead letters parked in SQLite by the flaky runs: {parked}");
}
