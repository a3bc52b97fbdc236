//! The end-to-end chaos test: 10,000 requests, mixed `POST` and `GET`, through the recommended
//! client stack against an upstream that fails every way the demo's does (503s, 429s with
//! `Retry-After`, slow answers, connections reset after the order was placed, an outage).
//!
//! It asserts what the stack promises together:
//! - nothing lost: every request either succeeded or is in the dead-letter store;
//! - nothing done twice: the upstream executes each order (per idempotency key) at most once,
//!   and after the parked ones are redriven, exactly once;
//! - the breaker opened during the outage and closed after it.
//!
//! It runs for the tower stack over hyper (`rampart_examples::stack`) and for the same
//! stack as reqwest-middleware middlewares (`rampart-reqwest`).
#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    collections::HashSet,
    future::Future,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rampart::{
    circuit_breaker::State as Breaker,
    core::error::{find, find_in},
    dead_letter::{DeadLetterStore, Filter, Parked, Query, Redrive, SqliteStore, State},
};
use rampart_examples::{
    stack::{self, Settings},
    upstream::{Faults, Upstream},
};
use tower::ServiceExt;

const REQUESTS: usize = 10_000;
const WORKERS: usize = 32;
const PACE: Duration = Duration::from_millis(15);
const OUTAGE: (Duration, Duration) = (Duration::from_millis(1500), Duration::from_millis(3000));

const FAULTS: Faults = Faults {
    server_error: 0.06,
    throttle: 0.005,
    slow: 0.02,
    slow_by: Duration::from_millis(200),
    reset_after_commit: 0.04,
};

/// What became of one logical request.
#[derive(Debug)]
enum Fate {
    Succeeded,
    Parked(String),
    Lost(String),
}

/// The upstream, the dead-letter store, and the breaker transitions seen (with whether the
/// upstream was down at the time).
struct Harness {
    grpc: bool,
    upstream: Upstream,
    store: Arc<dyn DeadLetterStore>,
    down: Arc<AtomicBool>,
    transitions: Arc<Mutex<Vec<(Breaker, Breaker, bool)>>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn new() -> Harness {
        Self::start(false).await
    }

    async fn start(grpc: bool) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let upstream = if grpc {
            Upstream::start_grpc(FAULTS, 42).await.unwrap()
        } else {
            Upstream::start(FAULTS, 42).await.unwrap()
        };
        Harness {
            grpc,
            upstream,
            store: Arc::new(SqliteStore::open(dir.path().join("dlq.db")).unwrap()),
            down: Arc::default(),
            transitions: Arc::default(),
            _dir: dir,
        }
    }

    /// What a breaker's `on_transition` should call.
    fn on_transition(
        &self,
    ) -> impl Fn(&rampart::circuit_breaker::Transition) + Send + Sync + 'static {
        let (down, transitions) = (self.down.clone(), self.transitions.clone());
        move |t| {
            let during = down.load(Ordering::SeqCst);
            transitions.lock().unwrap().push((t.from, t.to, during));
        }
    }

    /// Sends the requests (60 % `POST /orders`, 40 % `GET /inventory`) with `send`, from
    /// `WORKERS` tasks, through the outage window; returns each request's fate and the number
    /// of `POST`s.
    async fn drive<F, Fut>(&self, send: F) -> (Vec<Fate>, usize)
    where
        F: Fn(bool, usize, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Fate> + Send,
    {
        let outage = tokio::spawn({
            let (upstream, down) = (self.upstream.clone(), self.down.clone());
            async move {
                tokio::time::sleep(OUTAGE.0).await;
                down.store(true, Ordering::SeqCst);
                upstream.set_outage(true);
                tokio::time::sleep(OUTAGE.1 - OUTAGE.0).await;
                upstream.set_outage(false);
                down.store(false, Ordering::SeqCst);
            }
        });
        let next = Arc::new(AtomicUsize::new(0));
        let posts = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..WORKERS {
            let (send, next, posts, addr) = (
                send.clone(),
                next.clone(),
                posts.clone(),
                self.upstream.addr(),
            );
            workers.push(tokio::spawn(async move {
                let mut fates = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= REQUESTS {
                        return fates;
                    }
                    let post = i % 5 < 3;
                    if post {
                        posts.fetch_add(1, Ordering::Relaxed);
                    }
                    fates.push(send(post, i, addr).await);
                    tokio::time::sleep(PACE).await;
                }
            }));
        }
        let mut fates = Vec::new();
        for w in workers {
            fates.extend(w.await.unwrap());
        }
        outage.await.unwrap();
        (fates, posts.load(Ordering::Relaxed))
    }

    /// Everything the stack promises, checked; then the parked requests are redriven and each
    /// order must have run exactly once. `breaker_now` is the breaker's state at the end.
    async fn verify(&self, fates: Vec<Fate>, posts: usize, breaker_now: Breaker) {
        assert_eq!(fates.len(), REQUESTS);

        // Nothing lost: each request succeeded, or its dead letter is in the store.
        let lost: Vec<_> = fates
            .iter()
            .filter_map(|f| match f {
                Fate::Lost(why) => Some(why.clone()),
                _ => None,
            })
            .collect();
        assert!(
            lost.is_empty(),
            "{} lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
        let parked: HashSet<String> = fates
            .iter()
            .filter_map(|f| match f {
                Fate::Parked(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        let stored: HashSet<String> = self
            .store
            .list(&Query::new(Filter::all(), 100_000))
            .await
            .unwrap()
            .iter()
            .map(|r| r.id.to_string())
            .collect();
        assert!(!parked.is_empty(), "the outage parks requests");
        assert_eq!(
            parked, stored,
            "every parked request is in the store, and nothing else"
        );
        let succeeded = fates
            .iter()
            .filter(|f| matches!(f, Fate::Succeeded))
            .count();
        assert_eq!(succeeded + parked.len(), REQUESTS);

        // Nothing done twice, even with connections reset after the work was done.
        let up = self.upstream.stats();
        assert!(up.resets > 0 && up.replays > 0, "{up:?}");
        let effects = self.upstream.effects();
        assert!(
            effects.values().all(|&n| n == 1),
            "duplicate effects: {:?}",
            effects
                .iter()
                .filter(|&(_, &n)| n > 1)
                .take(5)
                .collect::<Vec<_>>()
        );

        // The breaker opened during the outage and closed after it.
        let transitions = self.transitions.lock().unwrap().clone();
        assert!(
            transitions
                .iter()
                .any(|&(from, to, during)| from == Breaker::Closed
                    && to == Breaker::Open
                    && during),
            "{transitions:?}"
        );
        assert_eq!(
            transitions.last().map(|t| t.1),
            Some(Breaker::Closed),
            "{transitions:?}"
        );
        assert_eq!(breaker_now, Breaker::Closed);

        // Redrive the parked ones until none is pending: each order then ran exactly once.
        let plain: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .http2_only(self.grpc)
            .build_http();
        // The default classifier judges gRPC answers by their `grpc-status`, HTTP ones by
        // their status.
        let redrive = Redrive::builder(self.store.clone(), plain)
            .concurrency(8)
            .max_redrives(10)
            .build()
            .unwrap();
        for _ in 0..10 {
            if redrive.all(|_| {}).await.unwrap().failed == 0 {
                break;
            }
        }
        let stats = self.store.stats().await.unwrap();
        assert_eq!(stats.backlog(), 0, "{stats:?}");
        assert_eq!(stats.in_state(State::Delivered), stats.total);
        let effects = self.upstream.effects();
        assert_eq!(effects.len(), posts, "every order placed");
        assert!(effects.values().all(|&n| n == 1), "and placed once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_stack_loses_nothing_and_duplicates_nothing() {
    let h = Harness::new().await;
    let (client, handles) =
        stack::client(h.store.clone(), &Settings::default(), h.on_transition()).unwrap();
    let (fates, posts) = h
        .drive(move |post, i, addr| {
            let client = client.clone();
            async move {
                let req = if post {
                    http::Request::post(format!("http://{addr}/orders"))
                        .body(Full::new(Bytes::from(format!("{{\"item\":{i}}}"))))
                } else {
                    http::Request::get(format!("http://{addr}/inventory"))
                        .body(Full::new(Bytes::new()))
                }
                .unwrap();
                match client.oneshot(req).await {
                    Ok(res) => match res.headers().get(rampart::dead_letter::DEAD_LETTER_ID) {
                        Some(id) => Fate::Parked(id.to_str().unwrap().to_owned()),
                        None if res.status().is_success() => Fate::Succeeded,
                        None => Fate::Lost(format!("status {}", res.status())),
                    },
                    Err(e) => match find_in::<Parked>(&*e) {
                        Some(p) => Fate::Parked(p.id().to_string()),
                        None => Fate::Lost(e.to_string()),
                    },
                }
            }
        })
        .await;
    h.verify(fates, posts, handles.breaker.state()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_stack_loses_nothing_and_duplicates_nothing() {
    use rampart::{
        bulkhead::BulkheadLayer,
        circuit_breaker::CircuitBreakerLayer,
        dead_letter::DeadLetterLayer,
        retry::{
            backoff::{Backoff, Delays, Jitter},
            policy::RetryPolicy,
        },
    };
    use rampart_reqwest::{
        BulkheadMiddleware, CircuitBreakerMiddleware, DeadLetterMiddleware, RetryMiddleware,
    };

    let h = Harness::new().await;
    let settings = Settings::default();
    let breaker = CircuitBreakerMiddleware::per_host(
        CircuitBreakerLayer::builder()
            .name("upstream")
            .time_window(Duration::from_secs(2), 10)
            .failure_rate_threshold(50.0)
            .minimum_calls(20)
            .open_duration(settings.open_duration)
            .half_open_max_probes(3)
            .on_transition(h.on_transition()),
    )
    .unwrap();
    let client = reqwest_middleware::ClientBuilder::new(
        reqwest::Client::builder()
            .timeout(settings.attempt_timeout)
            .build()
            .unwrap(),
    )
    .with(DeadLetterMiddleware::new(
        DeadLetterLayer::builder("orders-client", h.store.clone())
            .build()
            .unwrap(),
    ))
    .with(RetryMiddleware::new(
        RetryPolicy::builder()
            .max_attempts(settings.max_attempts)
            .backoff(
                Backoff::builder()
                    .delays(Delays::Exponential {
                        base: Duration::from_millis(20),
                        factor: 2.0,
                    })
                    .max_delay(Duration::from_millis(400))
                    .jitter(Jitter::Full)
                    .build()
                    .unwrap(),
            )
            .max_server_delay(Duration::from_secs(2))
            .build()
            .unwrap(),
    ))
    .with(breaker.clone())
    .with(BulkheadMiddleware::new(
        BulkheadLayer::builder()
            .name("upstream")
            .max_concurrent(settings.max_concurrent)
            .max_wait(settings.max_wait)
            .layer()
            .unwrap(),
    ))
    .build();
    let (fates, posts) = h
        .drive(move |post, i, addr| {
            let client = client.clone();
            async move {
                let req = if post {
                    client
                        .post(format!("http://{addr}/orders"))
                        .body(format!("{{\"item\":{i}}}"))
                } else {
                    client.get(format!("http://{addr}/inventory"))
                };
                match req.send().await {
                    Ok(res) => match res.headers().get(rampart::dead_letter::DEAD_LETTER_ID) {
                        Some(id) => Fate::Parked(id.to_str().unwrap().to_owned()),
                        None if res.status().is_success() => Fate::Succeeded,
                        None => Fate::Lost(format!("status {}", res.status())),
                    },
                    Err(e) => match rampart_reqwest::find::<Parked>(&e) {
                        Some(p) => Fate::Parked(p.id().to_string()),
                        None => Fate::Lost(e.to_string()),
                    },
                }
            }
        })
        .await;
    let key = rampart::core::key::KeyExtractor::extract(
        &rampart_reqwest::ByHost,
        &reqwest::Client::new()
            .get(format!("http://{}/", h.upstream.addr()))
            .build()
            .unwrap(),
    );
    let state = breaker.handle(key.as_ref()).unwrap().state();
    h.verify(fates, posts, state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_stack_loses_nothing_and_duplicates_nothing() {
    use rampart_examples::grpc;

    let h = Harness::start(true).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", h.upstream.addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let origin: http::Uri = format!("http://{}", h.upstream.addr()).parse().unwrap();
    let (client, handles) = grpc::client(
        channel,
        origin,
        h.store.clone(),
        &Settings::default(),
        h.on_transition(),
    )
    .unwrap();
    let (fates, posts) = h
        .drive(move |post, i, _addr| {
            let client = client.clone();
            async move {
                let (method, message) = if post {
                    (
                        "/orders.Orders/Place",
                        Bytes::from(format!("{{\"item\":{i}}}")),
                    )
                } else {
                    ("/orders.Orders/Stock", Bytes::new())
                };
                match grpc::call(client, method, message).await {
                    Ok(_) => Fate::Succeeded,
                    Err(status) => {
                        if let Some(id) = status.metadata().get("rampart-dead-letter-id") {
                            return Fate::Parked(id.to_str().unwrap().to_owned());
                        }
                        match find::<Parked>(&status) {
                            Some(p) => Fate::Parked(p.id().to_string()),
                            None => Fate::Lost(format!("{status:?}")),
                        }
                    }
                }
            }
        })
        .await;
    // gRPC: every call is a POST with a key, `Stock` included; only `Place` has an effect.
    h.verify(fates, posts, handles.breaker.state()).await;
}
