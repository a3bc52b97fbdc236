//! The Redis idempotency store against a real Redis (`REDIS_URL`, default
//! `redis://127.0.0.1:6379`): the store conformance suite in real time; two replicas (two axum
//! servers, each with its own layer and its own connection to one Redis) that run a key once
//! under 50 concurrent requests; the round trips of each kind of request, counted on the wire
//! by a proxy between the store and Redis; entries that cannot be read; and an outage.
//!
//! Each test uses a prefix of its own and removes its keys at the end (a failed test's keys
//! expire with their TTLs).

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, body::Body, routing::post};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rampart_idempotency::{
    Begin, IdempotencyLayer, IdempotencyStore, KeyPolicy, Lease, LeaseToken, StoreErrorKind,
    StoreKey, conformance,
};
use rampart_redis::RedisIdempotencyStore;
use rampart_tests::{redis_url, serve};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tower::ServiceExt;

/// How long responses are kept: long enough for a test, short enough that a failed test's
/// entries soon go.
const RETENTION: Duration = Duration::from_secs(60);

/// The body every charge sends.
const CHARGE: &str = r#"{"amount":500,"currency":"eur"}"#;

/// A prefix no other test (or run) uses.
fn unique_prefix() -> String {
    format!(
        "rampart-test:idem:{}:{:016x}",
        std::process::id(),
        fastrand::u64(..)
    )
}

async fn store(url: &str, prefix: &str) -> RedisIdempotencyStore {
    RedisIdempotencyStore::builder(url)
        .prefix(prefix)
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn passes_the_conformance_suite_in_real_time() {
    let Some(url) = redis_url() else {
        return;
    };
    let store = store(&url, &unique_prefix()).await;
    assert!(
        store.describe().contains("(prefix rampart-test:idem:"),
        "{}",
        store.describe()
    );
    conformance::run_with_ttl(&store, Duration::from_millis(300)).await;
    assert!(
        store.clear().await.unwrap() > 0,
        "the suite leaves entries behind, and clear finds them"
    );
    assert_eq!(
        store.clear().await.unwrap(),
        0,
        "nothing left under the prefix"
    );
}

/// One replica: an axum server whose `POST /charges` runs behind an idempotency layer over its
/// own connection to the shared store. The handler counts its executions in `executions`, and
/// takes 150 ms, so that concurrent requests find it in flight.
async fn replica(
    url: &str,
    prefix: &str,
    name: &'static str,
    executions: Arc<AtomicUsize>,
) -> (SocketAddr, Arc<RedisIdempotencyStore>) {
    let store = Arc::new(store(url, prefix).await);
    let layer = IdempotencyLayer::builder(store.clone())
        .name(name)
        .policy(KeyPolicy::Required)
        .retention(RETENTION)
        .build()
        .unwrap();
    let handler = move |body: String| async move {
        let n = executions.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
        (
            StatusCode::CREATED,
            [("x-replica", name)],
            format!("{{\"charge\":{body},\"execution\":{n}}}"),
        )
    };
    let router = Router::new().route("/charges", post(handler).layer(layer));
    (serve(router).await, store)
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A client with a new connection per request.
fn client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

/// What one request got: status, `x-replica`, whether it is a replay, and the body.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: StatusCode,
    replica: Option<String>,
    replayed: bool,
    body: Bytes,
}

async fn charge(client: &HttpClient, addr: SocketAddr, key: &str) -> Answer {
    let req = Request::post(format!("http://{addr}/charges"))
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from_static(CHARGE.as_bytes())))
        .unwrap();
    let res = client.request(req).await.unwrap();
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let replica = header("x-replica");
    let replayed = header("idempotent-replayed").is_some_and(|v| v == "true");
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        replica,
        replayed,
        body,
    }
}

#[tokio::test]
async fn a_request_cancelled_after_its_handler_returned_is_stored_not_run_again() {
    let Some(url) = redis_url() else {
        return;
    };
    let store = Arc::new(store(&url, &unique_prefix()).await);
    conformance::cancelled_after_the_handler(store.clone()).await;
    store.clear().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_run_a_key_once_under_50_concurrent_requests() {
    let Some(url) = redis_url() else {
        return;
    };
    let prefix = unique_prefix();
    let executions = Arc::new(AtomicUsize::new(0));
    let (a, store) = replica(&url, &prefix, "a", executions.clone()).await;
    let (b, _) = replica(&url, &prefix, "b", executions.clone()).await;
    let client = client();
    let key = format!("order-{:016x}", fastrand::u64(..));

    // Five bursts of 10, 60 ms apart, alternating replicas: the first burst races for the
    // lease, the next ones find the request in flight (409) or completed (a replay).
    let tasks: Vec<JoinHandle<(SocketAddr, Answer)>> = (0..50u32)
        .map(|i| {
            let addr = if i % 2 == 0 { a } else { b };
            let client = client.clone();
            let key = key.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(60) * (i / 10)).await;
                (addr, charge(&client, addr, &key).await)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }

    assert_eq!(
        executions.load(Ordering::SeqCst),
        1,
        "one execution across both replicas: {answers:#?}"
    );
    let first: Vec<_> = answers
        .iter()
        .filter(|(_, x)| x.status == StatusCode::CREATED && !x.replayed)
        .collect();
    assert_eq!(first.len(), 1, "one first answer: {answers:#?}");
    let (first_addr, original) = first[0].clone();
    let executed_by = original.replica.clone().unwrap();
    let (mut conflicts, mut replays, mut replays_elsewhere) = (0, 0, 0);
    for (addr, x) in &answers {
        if x.status == StatusCode::CREATED && !x.replayed {
            continue; // the first answer
        }
        match x.status {
            StatusCode::CONFLICT => conflicts += 1,
            StatusCode::CREATED => {
                assert!(x.replayed, "{x:?}");
                assert_eq!(x.body, original.body, "a replay is the original response");
                assert_eq!(x.replica.as_ref(), Some(&executed_by), "its headers too");
                replays += 1;
                if *addr != first_addr {
                    replays_elsewhere += 1;
                }
            }
            other => panic!("only 409s and replays besides the first: {other} in {answers:#?}"),
        }
    }
    assert_eq!(conflicts + replays, 49, "{answers:#?}");

    // Once it completed, each replica replays it, whichever ran it.
    for addr in [a, b] {
        let x = charge(&client, addr, &key).await;
        assert_eq!(x.status, StatusCode::CREATED);
        assert!(x.replayed);
        assert_eq!(x.body, original.body);
        assert_eq!(x.replica.as_ref(), Some(&executed_by));
    }
    assert_eq!(executions.load(Ordering::SeqCst), 1);
    eprintln!(
        "two replicas: executed by {executed_by}; {conflicts} conflicts, {replays} replays \
         ({replays_elsewhere} by the other replica)"
    );
    store.clear().await.unwrap();
}

/// A TCP proxy in front of Redis that records the name of every command sent through it, as
/// the server will see them: what a store costs in round trips, measured on the wire and not
/// by the store's own account.
struct CommandProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    commands: Arc<Mutex<Vec<String>>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl CommandProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut proxy = Self {
            addr: listener.local_addr().unwrap(),
            upstream,
            commands: Arc::default(),
            tasks: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: TcpListener) {
        let (upstream, commands, tasks) =
            (self.upstream, self.commands.clone(), self.tasks.clone());
        let accept = tokio::spawn({
            let tasks = tasks.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let server = TcpStream::connect(upstream).await.unwrap();
                    let (mut client_rx, mut client_tx) = client.into_split();
                    let (mut server_rx, mut server_tx) = server.into_split();
                    let commands = commands.clone();
                    let up = tokio::spawn(async move {
                        let mut parser = RespCommands::default();
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match client_rx.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            // Recorded before Redis sees them: counted by the time it answers.
                            commands.lock().unwrap().extend(parser.feed(&buf[..n]));
                            if server_tx.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                    let down = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut server_rx, &mut client_tx).await;
                    });
                    tasks.lock().unwrap().extend([up, down]);
                }
            }
        });
        tasks.lock().unwrap().push(accept);
    }

    /// The commands sent since the last call.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.commands.lock().unwrap())
    }

    /// Closes the listener and every connection: Redis is gone, as far as the store can tell.
    fn stop(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Listens again, on the same address.
    async fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

/// Splits a client's RESP stream into commands (arrays of bulk strings, as redis-rs sends
/// them) and names each by its first element, upper-cased.
#[derive(Default)]
struct RespCommands {
    buf: Vec<u8>,
}

impl RespCommands {
    fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some((len, name)) = command(&self.buf) {
            out.push(name);
            self.buf.drain(..len);
        }
        out
    }
}

/// The length and name of the command at the start of `b`, if it is all there.
fn command(b: &[u8]) -> Option<(usize, String)> {
    let (count, mut at) = line(b, b'*')?;
    let mut name = String::new();
    for i in 0..count {
        let (len, head) = line(b.get(at..)?, b'$')?;
        let start = at + head;
        let end = start + len;
        if b.len() < end + 2 {
            return None;
        }
        if i == 0 {
            name = String::from_utf8_lossy(&b[start..end]).to_uppercase();
        }
        at = end + 2;
    }
    Some((at, name))
}

/// The number on a `<sigil><number>\r\n` line at the start of `b`, and the line's length.
fn line(b: &[u8], sigil: u8) -> Option<(usize, usize)> {
    let first = *b.first()?;
    assert_eq!(
        first,
        sigil,
        "not a RESP command: {:?}",
        String::from_utf8_lossy(b)
    );
    let end = b.windows(2).position(|w| w == b"\r\n")?;
    let n = std::str::from_utf8(&b[1..end]).unwrap().parse().unwrap();
    Some((n, end + 2))
}

/// `url` with its `host:port` replaced by `addr`.
fn via(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    assert_eq!(scheme, "redis", "the proxy speaks plain TCP: {url}");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let auth = authority
        .rsplit_once('@')
        .map(|(auth, _)| format!("{auth}@"));
    format!("redis://{}{addr}{tail}", auth.unwrap_or_default())
}

#[test]
fn resp_commands_are_split_however_the_bytes_arrive() {
    let wire = b"*2\r\n$7\r\nEVALSHA\r\n$4\r\na\r\nb\r\n*1\r\n$4\r\nping\r\n";
    for cut in 0..wire.len() {
        let mut p = RespCommands::default();
        let mut names = p.feed(&wire[..cut]);
        names.extend(p.feed(&wire[cut..]));
        assert_eq!(names, ["EVALSHA", "PING"], "cut at {cut}");
    }
    assert_eq!(
        via(
            "redis://u:pw@localhost:6379/2",
            "127.0.0.1:7000".parse().unwrap()
        ),
        "redis://u:pw@127.0.0.1:7000/2"
    );
    assert_eq!(
        via("redis://127.0.0.1", "127.0.0.1:7000".parse().unwrap()),
        "redis://127.0.0.1:7000"
    );
}

fn keyed(uri: &str, key: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header("idempotency-key", key)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn a_replay_costs_one_round_trip_and_a_first_execution_two() {
    let Some(url) = redis_url() else {
        return;
    };
    let proxy = CommandProxy::start(rampart_tests::redis_addr(&url)).await;
    let store = Arc::new(store(&via(&url, proxy.addr), &unique_prefix()).await);
    let connect = proxy.take();
    assert!(
        connect.iter().any(|c| c == "SCRIPT"),
        "connect loads the scripts: {connect:?}"
    );
    let layer = IdempotencyLayer::builder(store.clone())
        .policy(KeyPolicy::Required)
        .retention(RETENTION)
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/charges",
            post(|| async { (StatusCode::CREATED, "{\"id\":\"ch_1\"}") }),
        )
        .route(
            "/fails",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "down") }),
        )
        .layer(layer);
    let key = format!("order-{:016x}", fastrand::u64(..));

    let send = async |req: Request<Body>| {
        let res = app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let replayed = res.headers().contains_key("idempotent-replayed");
        (status, replayed, proxy.take())
    };

    let (status, replayed, first) = send(keyed("/charges", &key, CHARGE)).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, false));
    assert_eq!(
        first,
        ["EVALSHA", "EVALSHA"],
        "a first execution: begin takes the lease, complete stores the response"
    );

    for _ in 0..3 {
        let (status, replayed, replay) = send(keyed("/charges", &key, CHARGE)).await;
        assert_eq!((status, replayed), (StatusCode::CREATED, true));
        assert_eq!(replay, ["EVALSHA"], "a replay: begin finds the response");
    }

    let (status, _, mismatch) = send(keyed("/charges", &key, "{}")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(mismatch, ["EVALSHA"], "a mismatch: begin alone");

    let (status, _, not_stored) = send(keyed("/fails", &format!("{key}-fails"), CHARGE)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        not_stored,
        ["EVALSHA", "EVALSHA"],
        "a response not stored: begin, then release"
    );
    eprintln!(
        "round trips on the wire: first execution {}, replay 1, not stored {}",
        first.len(),
        not_stored.len()
    );
    store.clear().await.unwrap();
}

#[tokio::test]
async fn an_outage_is_unavailable_quickly_and_the_store_recovers() {
    let Some(url) = redis_url() else {
        return;
    };
    let mut proxy = CommandProxy::start(rampart_tests::redis_addr(&url)).await;
    let store = RedisIdempotencyStore::builder(via(&url, proxy.addr))
        .prefix(unique_prefix())
        .connect_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap();
    let fp = conformance::fingerprint(b"outage");
    let lease = || Lease::new(LeaseToken::random(), Duration::from_secs(30));
    let key = StoreKey::global(&format!("outage-{:016x}", fastrand::u64(..)));
    assert_eq!(
        store.begin(&key, &fp, lease()).await.unwrap(),
        Begin::Acquired
    );

    proxy.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let err = store.begin(&key, &fp, lease()).await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.kind(), StoreErrorKind::Unavailable, "{err}");
        assert!(took < Duration::from_secs(1), "took {took:?}: {err}");
        assert!(
            err.to_string().contains("(prefix rampart-test:idem:"),
            "{err}"
        );
    }

    proxy.restart().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let back = loop {
        match store.begin(&key, &fp, lease()).await {
            Ok(begin) => break begin,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.kind(), StoreErrorKind::Unavailable, "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the store did not reconnect: {e}"),
        }
    };
    assert!(
        matches!(back, Begin::InFlight { .. }),
        "the lease taken before the outage holds: {back:?}"
    );
    store.clear().await.unwrap();
}

#[tokio::test]
async fn entries_that_cannot_be_read_are_corrupt() {
    let Some(url) = redis_url() else {
        return;
    };
    let store = store(&url, &unique_prefix()).await;
    let mut redis = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let fp = conformance::fingerprint(b"corrupt");
    let key = |n: &str| StoreKey::global(n);
    let lease = Lease::new(LeaseToken::random(), Duration::from_secs(30));

    // A stored response that does not decode.
    redis::cmd("HSET")
        .arg(store.entry_key(&key("bad-response")))
        .arg("fp")
        .arg(fp.to_hex())
        .arg("resp")
        .arg("not a response")
        .exec_async(&mut redis)
        .await
        .unwrap();
    // A key of another type.
    redis::cmd("SET")
        .arg(store.entry_key(&key("a-string")))
        .arg("x")
        .exec_async(&mut redis)
        .await
        .unwrap();
    // An entry without a fingerprint.
    redis::cmd("HSET")
        .arg(store.entry_key(&key("no-fingerprint")))
        .arg("token")
        .arg(LeaseToken::random().to_hex())
        .exec_async(&mut redis)
        .await
        .unwrap();
    // A lease whose expiry was removed.
    let k = key("persisted");
    assert_eq!(store.begin(&k, &fp, lease).await.unwrap(), Begin::Acquired);
    redis::cmd("PERSIST")
        .arg(store.entry_key(&k))
        .exec_async(&mut redis)
        .await
        .unwrap();

    for (name, why) in [
        ("bad-response", "cannot decode"),
        ("a-string", "WRONGTYPE"),
        ("no-fingerprint", "without a fingerprint"),
        ("persisted", "no expiry"),
    ] {
        let err = store.begin(&key(name), &fp, lease).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{name}: {err}");
        assert!(err.to_string().contains(why), "{name}: {err}");
    }
    assert_eq!(store.clear().await.unwrap(), 4);
}
