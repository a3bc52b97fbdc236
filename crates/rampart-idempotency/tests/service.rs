#![allow(clippy::unwrap_used)]
//! The service without a network: pass-through, store failures, cancellation, crashed and
//! overlong requests (in paused time), metrics and logs.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use rampart_core::{
    body::ReplayBody,
    key::IdempotencyKey,
    testing::{LogBuffer, MetricsRecorder},
};
use rampart_idempotency::{
    IdempotencyLayer, IdempotencyOutcome, IdempotencyProblem, IdempotencyStore, KeyPolicy,
    MemoryStore, StoreErrorKind, StoreFailure, conformance::FailingStore,
};
use tower::{Layer, Service, ServiceExt, service_fn};

type Req = Request<ReplayBody<Full<Bytes>>>;

/// The last body and key a handler saw.
type Last = Option<(Bytes, Option<String>)>;

/// What the handler saw: its runs, and the last body and key.
#[derive(Clone, Default)]
struct Seen {
    runs: Arc<AtomicUsize>,
    body: Arc<std::sync::Mutex<Last>>,
}

impl Seen {
    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

/// A handler that reads the whole body, waits `delay` (tokio time), and answers `201`.
fn handler(
    seen: Seen,
    delay: Duration,
) -> impl Service<Req, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(move |req: Req| {
        let seen = seen.clone();
        async move {
            let n = seen.runs.fetch_add(1, Ordering::SeqCst) + 1;
            let key = IdempotencyKey::of(&req).map(|k| k.0.to_str().unwrap().to_owned());
            let body = req.into_body().collect().await.unwrap().to_bytes();
            *seen.body.lock().unwrap() = Some((body, key));
            tokio::time::sleep(delay).await;
            let mut res = Response::new(Full::new(Bytes::from(format!("run {n}"))));
            *res.status_mut() = StatusCode::CREATED;
            Ok::<_, Infallible>(res)
        }
    })
}

fn post(key: Option<&str>, body: &'static str) -> Request<Full<Bytes>> {
    let mut req = Request::post("/charges");
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    req.body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

fn memory() -> Arc<MemoryStore> {
    Arc::new(MemoryStore::bounded(1000).unwrap())
}

async fn body_of<B>(res: Response<B>) -> Bytes
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    res.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn the_handler_gets_the_whole_body_and_the_key() {
    let seen = Seen::default();
    let svc = IdempotencyLayer::builder(memory())
        .build()
        .unwrap()
        .layer(handler(seen.clone(), Duration::ZERO));
    let res = svc
        .oneshot(post(Some("\"k-1\""), "{\"amount\":5}"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(
        res.extensions().get(),
        Some(&IdempotencyOutcome::Executed { stored: true })
    );
    let (body, key) = seen.body.lock().unwrap().clone().unwrap();
    assert_eq!(body, "{\"amount\":5}");
    assert_eq!(key.as_deref(), Some("k-1"), "the parsed key, unquoted");
}

#[tokio::test]
async fn an_optional_route_without_a_key_and_an_off_route_pass_through() {
    let seen = Seen::default();
    let optional = IdempotencyLayer::builder(memory())
        .build()
        .unwrap()
        .layer(handler(seen.clone(), Duration::ZERO));
    for _ in 0..2 {
        let res = optional.clone().oneshot(post(None, "x")).await.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        assert!(
            res.extensions().get::<IdempotencyOutcome>().is_none(),
            "untouched"
        );
    }
    let off = IdempotencyLayer::builder(memory())
        .policy(KeyPolicy::Off)
        .build()
        .unwrap()
        .layer(handler(seen.clone(), Duration::ZERO));
    for _ in 0..2 {
        let res = off
            .clone()
            .oneshot(post(Some("not a key"), "x"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    assert_eq!(seen.runs(), 4);
}

#[tokio::test]
async fn methods_are_configurable() {
    let seen = Seen::default();
    let svc = IdempotencyLayer::builder(memory())
        .methods([http::Method::PUT])
        .build()
        .unwrap()
        .layer(handler(seen.clone(), Duration::ZERO));
    let put = || {
        Request::put("/charges/1")
            .header("idempotency-key", "p")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    svc.clone().oneshot(put()).await.unwrap();
    let again = svc.clone().oneshot(put()).await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    // POST is no longer covered.
    svc.clone().oneshot(post(Some("p"), "")).await.unwrap();
    svc.clone().oneshot(post(Some("p"), "")).await.unwrap();
    assert_eq!(seen.runs(), 3);
}

#[tokio::test]
async fn a_store_that_is_down_fails_closed_with_503_and_nothing_runs() {
    let seen = Seen::default();
    let store = Arc::new(FailingStore::new());
    let svc = IdempotencyLayer::builder(store.clone())
        .build()
        .unwrap()
        .layer(handler(seen.clone(), Duration::ZERO));
    let res = svc.oneshot(post(Some("k"), "{}")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(
        res.extensions().get(),
        Some(&IdempotencyOutcome::Rejected(
            IdempotencyProblem::Unavailable
        ))
    );
    assert_eq!(seen.runs(), 0, "never run without a lease");
    assert_eq!(
        store.calls(),
        2,
        "the begin, then the release of a lease it may have taken before failing"
    );
}

#[tokio::test]
async fn failing_open_runs_the_request_unprotected() {
    let seen = Seen::default();
    let svc = IdempotencyLayer::builder(Arc::new(FailingStore::new()))
        .on_store_error(StoreFailure::FailOpen)
        .build()
        .unwrap()
        .layer(handler(seen.clone(), Duration::ZERO));
    let res = svc.oneshot(post(Some("k"), "{}")).await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["idempotency-stored"], "false");
    assert_eq!(
        res.extensions().get(),
        Some(&IdempotencyOutcome::Unprotected)
    );
    assert_eq!(seen.runs(), 1);
}

#[tokio::test]
async fn a_full_store_is_503_even_when_failing_open() {
    let seen = Seen::default();
    let svc = IdempotencyLayer::builder(Arc::new(FailingStore::with_kind(StoreErrorKind::Full)))
        .on_store_error(StoreFailure::FailOpen)
        .build()
        .unwrap()
        .layer(handler(seen.clone(), Duration::ZERO));
    let res = svc.oneshot(post(Some("k"), "{}")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.runs(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_memory_store_full_of_leases_answers_503_rather_than_run_twice() {
    let seen = Seen::default();
    let svc = IdempotencyLayer::builder(Arc::new(MemoryStore::bounded(2).unwrap()))
        .build()
        .unwrap()
        .layer(handler(seen.clone(), Duration::from_secs(5)));
    let a = tokio::spawn(svc.clone().oneshot(post(Some("a"), "")));
    let b = tokio::spawn(svc.clone().oneshot(post(Some("b"), "")));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let c = svc.clone().oneshot(post(Some("c"), "")).await.unwrap();
    assert_eq!(c.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.runs(), 2);
    assert_eq!(a.await.unwrap().unwrap().status(), StatusCode::CREATED);
    assert_eq!(b.await.unwrap().unwrap().status(), StatusCode::CREATED);
    // Completed entries can now be evicted to make room.
    let c = svc.clone().oneshot(post(Some("c"), "")).await.unwrap();
    assert_eq!(c.status(), StatusCode::CREATED);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_request_releases_its_lease() {
    let seen = Seen::default();
    let store = memory();
    let svc = IdempotencyLayer::builder(store.clone())
        .build()
        .unwrap()
        .layer(handler(seen.clone(), Duration::from_secs(10)));
    // The client goes away while the handler runs: its future is dropped.
    let dropped = tokio::time::timeout(
        Duration::from_secs(1),
        svc.clone().oneshot(post(Some("k"), "{}")),
    )
    .await;
    assert!(dropped.is_err());
    assert_eq!(seen.runs(), 1);
    assert_eq!(store.stats().in_flight, 0, "the lease was released on drop");
    // Its retry runs at once.
    let res = svc.clone().oneshot(post(Some("k"), "{}")).await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(seen.runs(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_request_cancelled_after_its_handler_returned_is_stored_not_run_again() {
    rampart_idempotency::conformance::cancelled_after_the_handler(memory()).await;
}

#[tokio::test(start_paused = true)]
async fn a_retention_of_duration_max_keeps_the_response_for_good_without_a_panic() {
    let seen = Seen::default();
    let svc = IdempotencyLayer::builder(memory())
        .retention(Duration::MAX)
        .lease_ttl(Duration::MAX)
        .build()
        .unwrap()
        .layer(handler(seen.clone(), Duration::ZERO));
    let first = svc.clone().oneshot(post(Some("k"), "{}")).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    tokio::time::advance(Duration::from_secs(365 * 24 * 3600)).await;
    let again = svc.clone().oneshot(post(Some("k"), "{}")).await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(seen.runs(), 1);
}

#[tokio::test(start_paused = true)]
async fn without_release_on_cancel_a_crashed_lease_holds_until_its_ttl() {
    let seen = Seen::default();
    let svc = IdempotencyLayer::builder(memory())
        .lease_ttl(Duration::from_secs(30))
        .retry_after(Duration::from_secs(5))
        .release_on_cancel(false)
        .build()
        .unwrap()
        .layer(handler(seen.clone(), Duration::from_secs(10)));
    let dropped = tokio::time::timeout(
        Duration::from_secs(1),
        svc.clone().oneshot(post(Some("k"), "{}")),
    )
    .await;
    assert!(dropped.is_err());

    let res = svc.clone().oneshot(post(Some("k"), "{}")).await.unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(res.headers()["retry-after"], "5");

    // Near the end of the lease, Retry-After is the time left on it.
    tokio::time::advance(Duration::from_millis(26_500)).await;
    let res = svc.clone().oneshot(post(Some("k"), "{}")).await.unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(res.headers()["retry-after"], "3");

    tokio::time::advance(Duration::from_secs(3)).await;
    let res = svc.clone().oneshot(post(Some("k"), "{}")).await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "the lease expired: the retry runs"
    );
    assert_eq!(seen.runs(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_request_that_outlives_its_lease_is_not_stored() {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    // The first run takes 8 s, longer than its 5 s lease; later ones 1 s.
    let uneven = service_fn(move |_req: Req| {
        let n = r.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            let secs = if n == 1 { 8 } else { 1 };
            tokio::time::sleep(Duration::from_secs(secs)).await;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!("run {n}")))))
        }
    });
    let svc = IdempotencyLayer::builder(memory())
        .lease_ttl(Duration::from_secs(5))
        .build()
        .unwrap()
        .layer(uneven);
    let slow = tokio::spawn(svc.clone().oneshot(post(Some("k"), "{}")));
    tokio::time::sleep(Duration::from_secs(6)).await;
    // The lease expired while the first still runs: the retry runs too (the documented risk
    // of a lease TTL shorter than the request).
    let retry = tokio::spawn(svc.clone().oneshot(post(Some("k"), "{}")));
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(
        slow.headers()["idempotency-stored"],
        "false",
        "its lease was lost"
    );
    assert_eq!(
        slow.extensions().get(),
        Some(&IdempotencyOutcome::Executed { stored: false })
    );
    let retry = retry.await.unwrap().unwrap();
    assert!(
        retry.headers().get("idempotency-stored").is_none(),
        "the retry's response is stored"
    );
    let replay = svc.clone().oneshot(post(Some("k"), "{}")).await.unwrap();
    assert_eq!(body_of(replay).await, "run 2");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_stored_response_is_replayed_for_its_retention_only() {
    let seen = Seen::default();
    let svc = IdempotencyLayer::builder(memory())
        .retention(Duration::from_secs(3600))
        .build()
        .unwrap()
        .layer(handler(seen.clone(), Duration::ZERO));
    svc.clone().oneshot(post(Some("k"), "{}")).await.unwrap();
    tokio::time::advance(Duration::from_secs(3599)).await;
    let res = svc.clone().oneshot(post(Some("k"), "{}")).await.unwrap();
    assert_eq!(res.extensions().get(), Some(&IdempotencyOutcome::Replayed));
    tokio::time::advance(Duration::from_secs(1)).await;
    let res = svc.clone().oneshot(post(Some("k"), "{}")).await.unwrap();
    assert_eq!(
        res.extensions().get(),
        Some(&IdempotencyOutcome::Executed { stored: true })
    );
    assert_eq!(seen.runs(), 2);
}

#[tokio::test]
async fn a_handler_error_releases_the_lease_and_passes_through() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let failing = service_fn(move |_req: Req| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                Err(std::io::Error::other("boom"))
            } else {
                Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
            }
        }
    });
    let store = memory();
    let svc = IdempotencyLayer::builder(store.clone())
        .build()
        .unwrap()
        .layer(failing);
    let err = svc.clone().oneshot(post(Some("k"), "")).await.unwrap_err();
    assert_eq!(err.to_string(), "boom", "the inner error, untouched");
    assert_eq!(store.stats().in_flight, 0);
    let res = svc.clone().oneshot(post(Some("k"), "")).await.unwrap();
    assert_eq!(body_of(res).await, "ok");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_response_body_that_fails_is_not_stored() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let broken = service_fn(move |_req: Req| {
        c.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, Infallible>(Response::new(BrokenBody(0))) }
    });
    let svc = IdempotencyLayer::builder(memory())
        .build()
        .unwrap()
        .layer(broken);
    let res = svc.clone().oneshot(post(Some("k"), "")).await.unwrap();
    assert_eq!(res.headers()["idempotency-stored"], "false");
    assert!(
        res.into_body().collect().await.is_err(),
        "the client sees the body fail"
    );
    let _ = svc.clone().oneshot(post(Some("k"), "")).await.unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "nothing stored: the retry runs"
    );
}

/// A body that sends one chunk, then fails.
struct BrokenBody(u8);

impl http_body::Body for BrokenBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.0 += 1;
        std::task::Poll::Ready(match self.0 {
            1 => Some(Ok(http_body::Frame::data(Bytes::from_static(b"partial")))),
            2 => Some(Err(std::io::Error::other("connection reset"))),
            _ => None,
        })
    }
}

#[tokio::test]
async fn trailers_are_stored_and_replayed() {
    let with_trailers = service_fn(|_req: Req| async {
        let mut t = http::HeaderMap::new();
        t.insert("x-checksum", "abc".parse().unwrap());
        let body = http_body_util::Full::new(Bytes::from_static(b"data"))
            .with_trailers(std::future::ready(Some(Ok::<_, Infallible>(t))));
        Ok::<_, Infallible>(Response::new(body))
    });
    let svc = IdempotencyLayer::builder(memory())
        .build()
        .unwrap()
        .layer(with_trailers);
    let _ = svc.clone().oneshot(post(Some("k"), "")).await.unwrap();
    let replay = svc.clone().oneshot(post(Some("k"), "")).await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let collected = replay.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["x-checksum"], "abc");
    assert_eq!(collected.to_bytes(), "data");
}

#[tokio::test]
async fn every_outcome_is_counted() {
    let recorder = MetricsRecorder::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let seen = Seen::default();
    let svc = IdempotencyLayer::builder(memory())
        .name("charges")
        .build()
        .unwrap()
        .layer(handler(seen.clone(), Duration::ZERO));
    svc.clone().oneshot(post(Some("k"), "a")).await.unwrap();
    svc.clone().oneshot(post(Some("k"), "a")).await.unwrap();
    svc.clone().oneshot(post(Some("k"), "b")).await.unwrap();
    svc.clone().oneshot(post(Some("a b"), "a")).await.unwrap();
    svc.clone().oneshot(post(None, "a")).await.unwrap();
    let get = |outcome: &str| {
        recorder.get(&format!(
            "rampart_idempotency_requests_total{{name=charges,outcome={outcome}}}"
        ))
    };
    assert_eq!(get("executed"), 1);
    assert_eq!(get("replayed"), 1);
    assert_eq!(get("mismatch"), 1);
    assert_eq!(get("bad_key"), 1);
    assert_eq!(get("no_key"), 1);
}

#[tokio::test]
async fn store_failures_are_logged_at_warn() {
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let svc = IdempotencyLayer::builder(Arc::new(FailingStore::new()))
        .build()
        .unwrap()
        .layer(handler(Seen::default(), Duration::ZERO));
    svc.oneshot(post(Some("k"), "")).await.unwrap();
    let logs = buffer.contents();
    assert!(logs.contains("WARN"), "{logs}");
    assert!(
        logs.contains("fail closed") && logs.contains("connection refused"),
        "{logs}"
    );
}

#[tokio::test]
async fn the_store_is_shared_by_every_service_the_layer_makes() {
    let seen = Seen::default();
    let store: Arc<dyn IdempotencyStore> = memory();
    let layer = IdempotencyLayer::builder(store).build().unwrap();
    let a = layer.layer(handler(seen.clone(), Duration::ZERO));
    let b = layer.clone().layer(handler(seen.clone(), Duration::ZERO));
    a.oneshot(post(Some("k"), "")).await.unwrap();
    let res = b.oneshot(post(Some("k"), "")).await.unwrap();
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    assert_eq!(seen.runs(), 1);
}

/// A memory store whose next `begin` takes the lease and then reports a timeout: the reply
/// was lost on the way back, as it is from a networked store under load.
#[derive(Debug)]
struct LostReply {
    inner: MemoryStore,
    lose_next: std::sync::atomic::AtomicBool,
}

impl IdempotencyStore for LostReply {
    fn describe(&self) -> String {
        "lost-reply".into()
    }
    fn begin<'a>(
        &'a self,
        key: &'a rampart_idempotency::StoreKey,
        fingerprint: &'a rampart_idempotency::Fingerprint,
        lease: rampart_idempotency::Lease,
    ) -> rampart_idempotency::BoxFuture<
        'a,
        Result<rampart_idempotency::Begin, rampart_idempotency::StoreError>,
    > {
        Box::pin(async move {
            let begun = self.inner.begin(key, fingerprint, lease).await;
            if self.lose_next.swap(false, Ordering::SeqCst) {
                return Err(rampart_idempotency::StoreError::new(
                    "lost-reply",
                    StoreErrorKind::Unavailable,
                )
                .with_source("no answer within 50ms"));
            }
            begun
        })
    }
    fn complete<'a>(
        &'a self,
        key: &'a rampart_idempotency::StoreKey,
        token: rampart_idempotency::LeaseToken,
        response: &'a rampart_idempotency::StoredResponse,
        retention: Duration,
    ) -> rampart_idempotency::BoxFuture<'a, Result<bool, rampart_idempotency::StoreError>> {
        self.inner.complete(key, token, response, retention)
    }
    fn release<'a>(
        &'a self,
        key: &'a rampart_idempotency::StoreKey,
        token: rampart_idempotency::LeaseToken,
    ) -> rampart_idempotency::BoxFuture<'a, Result<bool, rampart_idempotency::StoreError>> {
        self.inner.release(key, token)
    }
}

#[tokio::test(start_paused = true)]
async fn a_begin_that_timed_out_after_taking_the_lease_gives_it_back() {
    let seen = Seen::default();
    let store = Arc::new(LostReply {
        inner: MemoryStore::bounded(100).unwrap(),
        lose_next: std::sync::atomic::AtomicBool::new(true),
    });
    let svc = IdempotencyLayer::builder(store)
        .build()
        .unwrap()
        .layer(handler(seen.clone(), Duration::ZERO));
    let first = svc.clone().oneshot(post(Some("k"), "{}")).await.unwrap();
    assert_eq!(
        first.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "fail closed"
    );
    assert_eq!(seen.runs(), 0);
    let retry = svc.clone().oneshot(post(Some("k"), "{}")).await.unwrap();
    assert_eq!(
        retry.status(),
        StatusCode::CREATED,
        "the retry runs at once, not 409 for the lease's TTL"
    );
    assert_eq!(seen.runs(), 1);
}
