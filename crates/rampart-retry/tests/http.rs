//! The `RetryLayer` with HTTP responses: `Retry-After` waited, a too-long one given up on at
//! once, and the last failure response handed back. Paused time: waits are checked, not slept.

#![cfg(feature = "http")]
#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use rampart_core::classify::HttpClassifier;
use rampart_retry::{
    RetryLayer,
    backoff::{Backoff, Jitter},
    protocol::{HttpProtocol, RetryProtocol, ServerHint},
};
use tokio::time::Instant;
use tower::{Layer, ServiceExt, service_fn};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn no_jitter() -> Backoff {
    Backoff::builder().jitter(Jitter::None).build().unwrap()
}

/// The HTTP hints on the response side, over a request type that replays by `Clone`.
#[derive(Clone, Default)]
struct ResponseHints(HttpProtocol);

impl RetryProtocol<u32, http::Response<()>, std::io::Error> for ResponseHints {
    fn replay_safe(&self, _: &u32) -> bool {
        true
    }

    fn server_hint(&self, result: Result<&http::Response<()>, &std::io::Error>) -> ServerHint {
        RetryProtocol::<http::Request<()>, _, _>::server_hint(&self.0, result)
    }

    fn annotate(&self, res: &mut http::Response<()>, info: rampart_retry::protocol::RetryInfo) {
        RetryProtocol::<http::Request<()>, _, std::io::Error>::annotate(&self.0, res, info)
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_waited_and_a_503_comes_back_when_giving_up() {
    let layer = RetryLayer::builder()
        .max_attempts(3)
        .backoff(no_jitter())
        .max_server_delay(secs(5))
        .layer()
        .unwrap()
        .classifier(HttpClassifier::default())
        .protocol(ResponseHints::default());
    let calls = Arc::new(Mutex::new(Vec::new()));
    let svc = layer.layer(service_fn({
        let calls = calls.clone();
        move |_: u32| {
            calls.lock().unwrap().push(Instant::now());
            async {
                Ok::<_, std::io::Error>(
                    http::Response::builder()
                        .status(503)
                        .header("retry-after", "4")
                        .body(())
                        .unwrap(),
                )
            }
        }
    }));
    let res = svc.oneshot(1).await.unwrap();
    assert_eq!(res.status(), 503, "the last response, not an error");
    assert_eq!(
        res.extensions().get::<rampart_retry::protocol::RetryInfo>(),
        Some(&rampart_retry::protocol::RetryInfo {
            gave_up: Some(rampart_retry::policy::GiveUp::AttemptsExhausted),
        }),
        "and how it came to be the last"
    );
    assert_eq!(calls.lock().unwrap().len(), 3);
    assert_eq!(
        calls
            .lock()
            .unwrap()
            .windows(2)
            .map(|w| w[1] - w[0])
            .collect::<Vec<_>>(),
        [secs(4), secs(4)],
        "the server's 4 s, not the backoff's 1 s and 2 s"
    );
}

#[tokio::test(start_paused = true)]
async fn a_server_asking_too_much_is_given_up_on_at_once() {
    let layer = RetryLayer::builder()
        .backoff(no_jitter())
        .max_server_delay(secs(5))
        .layer()
        .unwrap()
        .classifier(HttpClassifier::default())
        .protocol(ResponseHints::default());
    let started = Instant::now();
    let svc = layer.layer(service_fn(|_: u32| async {
        Ok::<_, std::io::Error>(
            http::Response::builder()
                .status(429)
                .header("retry-after", "3600")
                .body(())
                .unwrap(),
        )
    }));
    let res = svc.oneshot(1).await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(started.elapsed(), Duration::ZERO, "no hour-long sleep");
}

mod replay {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use rampart_retry::{
        policy::GiveUp,
        replay::{BufferBodyLayer, HttpReplay, ReplayBody},
    };
    use tower::ServiceBuilder;

    /// What rampart-idempotency's `IdempotencyKeyLayer` does outside the retries (the
    /// end-to-end tests in `tests/` run the real one): one fresh key per logical request.
    fn with_a_key(mut req: http::Request<Full<Bytes>>) -> http::Request<Full<Bytes>> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        req.headers_mut()
            .insert("idempotency-key", format!("key-{n}").parse().unwrap());
        req
    }

    type Seen = Arc<Mutex<Vec<(Instant, Option<http::HeaderValue>, Bytes)>>>;

    /// An upstream that answers 503 with `Retry-After: 2` to its first `fails` attempts,
    /// recording each attempt's time, idempotency key and body.
    fn upstream(
        fails: usize,
        seen: Seen,
    ) -> impl tower::Service<
        http::Request<ReplayBody<Full<Bytes>>>,
        Response = http::Response<()>,
        Error = std::io::Error,
        Future: Send,
    > + Clone {
        service_fn(move |req: http::Request<ReplayBody<Full<Bytes>>>| {
            let seen = seen.clone();
            async move {
                let key = req.headers().get("idempotency-key").cloned();
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.push((Instant::now(), key, body));
                    seen.len()
                };
                let res = if n <= fails {
                    http::Response::builder()
                        .status(503)
                        .header("retry-after", "2")
                        .body(())
                } else {
                    http::Response::builder().status(201).body(())
                };
                Ok::<_, std::io::Error>(res.unwrap())
            }
        })
    }

    fn retry() -> rampart_retry::RetryLayer<HttpClassifier, HttpProtocol, HttpReplay> {
        RetryLayer::builder()
            .max_attempts(4)
            .backoff(no_jitter())
            .layer()
            .unwrap()
            .classifier(HttpClassifier::default())
            .protocol(HttpProtocol::default())
            .replay(HttpReplay)
    }

    fn post(body: &'static [u8]) -> http::Request<Full<Bytes>> {
        http::Request::post("http://api.test/charges")
            .body(Full::new(Bytes::from_static(body)))
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_post_is_replayed_with_one_key_and_the_same_body() {
        let seen = Seen::default();
        let svc = ServiceBuilder::new()
            .map_request(with_a_key)
            .layer(BufferBodyLayer::default())
            .layer(retry())
            .service(upstream(2, seen.clone()));
        let res = svc.oneshot(post(b"{\"amount\":42}")).await.unwrap();
        assert_eq!(res.status(), 201, "the third attempt succeeded");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        let key = seen[0].1.clone().expect("a key was set");
        assert!(
            seen.iter().all(|(_, k, _)| k.as_ref() == Some(&key)),
            "one key"
        );
        assert!(
            seen.iter().all(|(_, _, b)| b == "{\"amount\":42}"),
            "one body"
        );
        let waits: Vec<_> = seen.windows(2).map(|w| w[1].0 - w[0].0).collect();
        assert_eq!(
            waits,
            [secs(2), secs(2)],
            "Retry-After, not the 1 s backoff"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_post_without_a_key_gets_one_attempt() {
        let seen = Seen::default();
        let svc = ServiceBuilder::new()
            .layer(BufferBodyLayer::default())
            .layer(retry())
            .service(upstream(2, seen.clone()));
        let res = svc.oneshot(post(b"x")).await.unwrap();
        assert_eq!(res.status(), 503, "not retried: it could charge twice");
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_over_the_limit_is_sent_whole_once() {
        let seen = Seen::default();
        let body: &'static [u8] = &[7u8; 100];
        let svc = ServiceBuilder::new()
            .map_request(with_a_key)
            .layer(BufferBodyLayer::new(10))
            .layer(retry())
            .service(upstream(2, seen.clone()));
        let res = svc.oneshot(post(body)).await.unwrap();
        assert_eq!(res.status(), 503);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "one attempt");
        assert_eq!(seen[0].2.len(), 100, "the whole body all the same");
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_says_why_the_request_was_not_replayed() {
        let svc = ServiceBuilder::new()
            .map_request(with_a_key)
            .layer(BufferBodyLayer::new(4))
            .layer(retry())
            .service(service_fn(
                |_: http::Request<ReplayBody<Full<Bytes>>>| async {
                    Err::<http::Response<()>, _>(std::io::Error::other("reset"))
                },
            ));
        let err = svc.oneshot(post(b"too long")).await.unwrap_err();
        assert_eq!((err.attempts(), err.reason()), (1, GiveUp::NotReplayable));
    }
}

mod conflict_and_grpc {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Empty;
    use rampart_retry::protocol::{GrpcProtocol, http_retry_classifier};

    #[tokio::test(start_paused = true)]
    async fn a_409_for_a_key_in_progress_is_retried_after_its_retry_after() {
        let layer = RetryLayer::builder()
            .max_attempts(3)
            .backoff(no_jitter())
            .layer()
            .unwrap()
            .classifier(http_retry_classifier())
            .protocol(ResponseHints::default());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let svc = layer.layer(service_fn({
            let calls = calls.clone();
            move |_: u32| {
                let n = {
                    let mut c = calls.lock().unwrap();
                    c.push(Instant::now());
                    c.len()
                };
                async move {
                    let res = if n == 1 {
                        http::Response::builder()
                            .status(409)
                            .header("retry-after", "2")
                            .body(())
                    } else {
                        http::Response::builder().status(201).body(())
                    };
                    Ok::<_, std::io::Error>(res.unwrap())
                }
            }
        }));
        assert_eq!(svc.oneshot(1).await.unwrap().status(), 201);
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1] - calls[0], secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_422_is_not_retried() {
        let layer = RetryLayer::builder()
            .backoff(no_jitter())
            .layer()
            .unwrap()
            .classifier(http_retry_classifier())
            .protocol(ResponseHints::default());
        let calls = Arc::new(Mutex::new(0));
        let svc = layer.layer(service_fn({
            let calls = calls.clone();
            move |_: u32| {
                *calls.lock().unwrap() += 1;
                async {
                    Ok::<_, std::io::Error>(http::Response::builder().status(422).body(()).unwrap())
                }
            }
        }));
        assert_eq!(svc.oneshot(1).await.unwrap().status(), 422);
        assert_eq!(
            *calls.lock().unwrap(),
            1,
            "a key/payload mismatch: retrying won't help"
        );
    }

    #[derive(Clone, Default)]
    struct GrpcResponseHints(GrpcProtocol);

    impl RetryProtocol<u32, http::Response<Empty<Bytes>>, std::io::Error> for GrpcResponseHints {
        fn replay_safe(&self, _: &u32) -> bool {
            true
        }

        fn server_hint(
            &self,
            result: Result<&http::Response<Empty<Bytes>>, &std::io::Error>,
        ) -> ServerHint {
            RetryProtocol::<http::Request<()>, _, _>::server_hint(&self.0, result)
        }
    }

    /// A gRPC server answering trailers-only responses with `code` (and `pushback`, if any)
    /// `fails` times, then OK.
    fn grpc(
        code: &'static str,
        pushback: Option<&'static str>,
        fails: usize,
        calls: Arc<Mutex<usize>>,
    ) -> impl tower::Service<
        u32,
        Response = http::Response<Empty<Bytes>>,
        Error = std::io::Error,
        Future: Send,
    > + Clone {
        service_fn(move |_: u32| {
            let n = {
                let mut c = calls.lock().unwrap();
                *c += 1;
                *c
            };
            async move {
                let mut res = http::Response::builder().header("content-type", "application/grpc");
                if n <= fails {
                    res = res.header("grpc-status", code);
                    if let Some(p) = pushback {
                        res = res.header("grpc-retry-pushback-ms", p);
                    }
                } else {
                    res = res.header("grpc-status", "0");
                }
                Ok::<_, std::io::Error>(res.body(Empty::new()).unwrap())
            }
        })
    }

    fn grpc_retry() -> RetryLayer<rampart_core::classify::GrpcClassifier, GrpcResponseHints> {
        RetryLayer::builder()
            .max_attempts(3)
            .backoff(no_jitter())
            .layer()
            .unwrap()
            .classifier(rampart_core::classify::GrpcClassifier::default())
            .protocol(GrpcResponseHints::default())
    }

    fn status(res: &http::Response<Empty<Bytes>>) -> &str {
        res.headers()["grpc-status"].to_str().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn grpc_unavailable_is_retried_and_a_pushback_is_waited() {
        let calls = Arc::new(Mutex::new(0));
        let started = Instant::now();
        let svc = grpc_retry().layer(grpc("14", Some("1500"), 2, calls.clone()));
        let res = svc.oneshot(1).await.unwrap();
        assert_eq!(status(&res), "0");
        assert_eq!(*calls.lock().unwrap(), 3);
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(3500),
            "the pushback's 1.5 s, then the backoff's 2 s (the longer of the two each time)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn grpc_resource_exhausted_is_retried_only_with_a_pushback() {
        let calls = Arc::new(Mutex::new(0));
        let svc = grpc_retry().layer(grpc("8", None, 2, calls.clone()));
        let res = svc.oneshot(1).await.unwrap();
        assert_eq!(status(&res), "8", "no pushback: not retried");
        assert_eq!(*calls.lock().unwrap(), 1);

        let calls = Arc::new(Mutex::new(0));
        let svc = grpc_retry().layer(grpc("8", Some("100"), 1, calls.clone()));
        assert_eq!(status(&svc.oneshot(1).await.unwrap()), "0");
        assert_eq!(*calls.lock().unwrap(), 2);

        let calls = Arc::new(Mutex::new(0));
        let svc = grpc_retry().layer(grpc("14", Some("-1"), 2, calls.clone()));
        assert_eq!(
            status(&svc.oneshot(1).await.unwrap()),
            "14",
            "a negative pushback: stop"
        );
        assert_eq!(*calls.lock().unwrap(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn the_builder_switches_the_whole_http_stack_on() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use rampart_retry::replay::ReplayBody;

    let stack = RetryLayer::builder()
        .max_attempts(3)
        .backoff(no_jitter())
        .http_layer()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let svc = tower::Layer::layer(
        &stack,
        service_fn({
            let seen = seen.clone();
            move |req: http::Request<ReplayBody<Full<Bytes>>>| {
                let seen = seen.clone();
                async move {
                    let key = req.headers().get("idempotency-key").cloned();
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let n = {
                        let mut s = seen.lock().unwrap();
                        s.push((key, body));
                        s.len()
                    };
                    let status = if n == 1 { 503 } else { 201 };
                    Ok::<_, std::io::Error>(
                        http::Response::builder().status(status).body(()).unwrap(),
                    )
                }
            }
        }),
    );
    // The key comes from outside (rampart-idempotency's `IdempotencyKeyLayer`, or the caller):
    // the retry stack replays it and sets none of its own.
    let mut req = http::Request::post("/charges")
        .header("idempotency-key", "order-7")
        .body(Full::new(Bytes::from_static(b"pay")))
        .unwrap();
    // The attempt count's one channel: a counter in the request, noted by every attempt.
    let attempts = rampart_core::attempt::AttemptCounter::new();
    req.extensions_mut().insert(attempts.clone());
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(attempts.get(), 2);
    assert_eq!(
        res.extensions().get::<rampart_retry::protocol::RetryInfo>(),
        Some(&rampart_retry::protocol::RetryInfo { gave_up: None })
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].0.as_ref().map(|k| k.to_str().unwrap()),
        Some("order-7")
    );
    assert_eq!(seen[0].0, seen[1].0, "every attempt carries the one key");
    assert_eq!(seen[1].1, "pay");
}

/// A request body that sends `ab` and then fails.
struct FailingBody(bool);

impl http_body::Body for FailingBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        let first = !self.0;
        self.0 = true;
        std::task::Poll::Ready(Some(if first {
            Ok(http_body::Frame::data(bytes::Bytes::from_static(b"ab")))
        } else {
            Err(std::io::Error::other("client went away"))
        }))
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_that_fails_while_buffered_fails_the_same_way_inside_once() {
    use http_body_util::BodyExt;
    use rampart_retry::{policy::GiveUp, replay::ReplayBody};

    let stack = RetryLayer::builder()
        .backoff(no_jitter())
        .http_layer()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let svc = tower::Layer::layer(
        &stack,
        service_fn({
            let seen = seen.clone();
            move |req: http::Request<ReplayBody<FailingBody>>| {
                let seen = seen.clone();
                async move {
                    let read = req.into_body().collect().await;
                    seen.lock()
                        .unwrap()
                        .push(read.map(|_| ()).map_err(|e| e.to_string()));
                    Err::<http::Response<()>, _>(std::io::Error::other(
                        "upstream saw a broken body",
                    ))
                }
            }
        }),
    );
    // Keyed, so that a retry would be safe: what stops it is the body that can't be replayed.
    let req = http::Request::post("/upload")
        .header("idempotency-key", "upload-1")
        .body(FailingBody(false))
        .unwrap();
    let err = svc.oneshot(req).await.unwrap_err();
    assert_eq!((err.attempts(), err.reason()), (1, GiveUp::NotReplayable));
    assert_eq!(
        *seen.lock().unwrap(),
        [Err("client went away".to_owned())],
        "the error reached the inner service: no truncated body passed as whole"
    );
}

/// An upstream that refuses every connection.
fn refusing() -> impl tower::Service<
    http::Request<rampart_core::body::ReplayBody<http_body_util::Empty<bytes::Bytes>>>,
    Response = http::Response<()>,
    Error = std::io::Error,
    Future: Send,
> + Clone {
    service_fn(
        |_: http::Request<rampart_core::body::ReplayBody<http_body_util::Empty<bytes::Bytes>>>| async {
            Err::<http::Response<()>, _>(std::io::Error::other("refused"))
        },
    )
}

/// A deadline from an outer timeout layer, in the request: no retry waits past it, and the
/// attempt counter an outer layer put there sees every attempt.
#[tokio::test(start_paused = true)]
async fn a_deadline_in_the_request_stops_retries_and_attempts_are_counted() {
    use rampart_core::{attempt::AttemptCounter, deadline::Deadline};
    use rampart_retry::{policy::GiveUp, replay::HttpReplay};

    let layer = RetryLayer::builder()
        .max_attempts(10)
        .backoff(no_jitter()) // 1 s, 2 s, 4 s, …
        .layer()
        .unwrap()
        .classifier(HttpClassifier::default())
        .protocol(HttpProtocol::default())
        .replay(HttpReplay);
    let svc = layer.layer(refusing());
    let counter = AttemptCounter::new();
    let mut req = http::Request::get("/")
        .body(http_body_util::Empty::new())
        .unwrap();
    req.extensions_mut().insert(counter.clone());
    Deadline::after(secs(5)).tighten(req.extensions_mut());
    let start = Instant::now();
    let err = ServiceExt::oneshot(
        rampart_retry::replay::BufferBodyLayer::default().layer(svc),
        req,
    )
    .await
    .unwrap_err();
    // Attempts at 0 s, 1 s and 3 s; the next would wait 4 s, past the 5 s deadline.
    assert_eq!(err.attempts(), 3);
    assert_eq!(err.reason(), GiveUp::DeadlineWouldPass);
    assert_eq!(start.elapsed(), secs(3));
    assert_eq!(counter.get(), 3);
}

/// A retry that the request's own deadline forbids takes nothing from the budget: only the
/// retries made are paid for.
#[tokio::test(start_paused = true)]
async fn a_retry_the_deadline_forbids_takes_no_budget() {
    use rampart_core::deadline::Deadline;
    use rampart_retry::{budget::RetryBudget, policy::GiveUp, replay::HttpReplay};

    let budget = RetryBudget::builder()
        .ratio(1.0)
        .min_per_sec(0)
        .build()
        .unwrap();
    for _ in 0..4 {
        budget.deposit();
    }
    let layer = RetryLayer::builder()
        .max_attempts(10)
        .backoff(no_jitter()) // 1 s, 2 s, 4 s, …
        .budget(budget.clone())
        .layer()
        .unwrap()
        .classifier(HttpClassifier::default())
        .protocol(HttpProtocol::default())
        .replay(HttpReplay);
    let svc = layer.layer(refusing());
    let mut req = http::Request::get("/")
        .body(http_body_util::Empty::new())
        .unwrap();
    Deadline::after(secs(5)).tighten(req.extensions_mut());
    let err = ServiceExt::oneshot(
        rampart_retry::replay::BufferBodyLayer::default().layer(svc),
        req,
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), GiveUp::DeadlineWouldPass);
    assert_eq!(err.attempts(), 3, "two retries made");
    // 4 deposited by hand + 1 for the request, 2 retries paid for.
    assert_eq!(budget.available(), 3, "the vetoed retry took nothing");
}
