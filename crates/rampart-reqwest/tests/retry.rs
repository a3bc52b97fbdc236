//! The retry middleware against real axum servers: Retry-After and pushback honoured, one
//! idempotency key per logical request, non-idempotent requests only with a key, streaming
//! bodies once; a request that could not be sent as it is (a scheme reqwest does not speak, a
//! redirect loop) once.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Script, client, reply};
use rampart_reqwest::{RetryMiddleware, find};
use rampart_retry::{
    RetryError,
    backoff::{Backoff, Delays, Jitter},
    policy::{GiveUp, RetryPolicy},
    protocol::RetryInfo,
};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};

/// Retries at once (10 ms), so that only what the server asks for makes the client wait.
fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .max_attempts(max_attempts)
        .backoff(
            Backoff::builder()
                .delays(Delays::Constant(Duration::from_millis(10)))
                .jitter(Jitter::None)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

fn with(retry: RetryMiddleware) -> ClientWithMiddleware {
    ClientBuilder::new(client()).with(retry).build()
}

fn info(res: &reqwest::Response) -> RetryInfo {
    *res.extensions().get::<RetryInfo>().expect("a RetryInfo")
}

#[tokio::test]
async fn honours_retry_after_in_seconds() {
    let server = Script::new([reply(503).header("retry-after", "1"), reply(200)]);
    let base = server.serve().await;
    let http = with(RetryMiddleware::new(policy(3)));
    let started = Instant::now();
    let res = http.get(format!("{base}/status")).send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(res.status(), 200);
    assert_eq!(server.hits(), 2);
    assert!(
        took >= Duration::from_secs(1),
        "retried after {took:?}, before the second asked for"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(info(&res), RetryInfo { gave_up: None });
}

#[tokio::test]
async fn honours_retry_after_as_an_http_date_and_grpc_pushback() {
    // An HTTP-date in the past: retry now (not after the 30 s the date format can't express).
    let past = "Sun, 06 Nov 1994 08:49:37 GMT";
    let server = Script::new([
        reply(503).header("retry-after", past),
        reply(429).header("grpc-retry-pushback-ms", "300"),
        reply(200),
    ]);
    let base = server.serve().await;
    let http = with(RetryMiddleware::new(policy(3)));
    let started = Instant::now();
    let res = http.get(&base).send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(res.status(), 200);
    assert_eq!(server.hits(), 3);
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn a_server_delay_over_the_cap_gives_up_at_once_and_a_negative_pushback_forbids() {
    let server = Script::new([reply(503).header("retry-after", "120")]);
    let base = server.serve().await;
    let retry = RetryMiddleware::new(
        RetryPolicy::builder()
            .max_server_delay(Duration::from_secs(1))
            .build()
            .unwrap(),
    );
    let res = with(retry).get(&base).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(server.hits(), 1);
    assert!(matches!(
        info(&res).gave_up,
        Some(GiveUp::ServerDelayTooLong { .. })
    ));

    server.set([reply(503).header("grpc-retry-pushback-ms", "-1")]);
    let res = with(RetryMiddleware::new(policy(3)))
        .get(&base)
        .send()
        .await
        .unwrap();
    assert_eq!(info(&res).gave_up, Some(GiveUp::ServerSaidNo));
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn a_post_carries_the_same_idempotency_key_on_every_attempt() {
    let server = Script::new([reply(503), reply(502), reply(201)]);
    let base = server.serve().await;
    let res = with(RetryMiddleware::new(policy(3)))
        .post(format!("{base}/charges"))
        .body("{\"amount\":42}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    let keys: Vec<_> = seen
        .iter()
        .map(|s| s.headers.get("idempotency-key").expect("a key").clone())
        .collect();
    assert!(keys.iter().all(|k| *k == keys[0]), "one key: {keys:?}");
    let key = uuid_version(keys[0].to_str().unwrap());
    assert_eq!(key, 7, "a UUID v7, as the tower layer makes");
    assert!(
        seen.iter()
            .all(|s| s.body == "{\"amount\":42}" && s.method == "POST")
    );

    // The next logical request gets a key of its own.
    server.set([reply(200)]);
    with(RetryMiddleware::new(policy(3)))
        .post(format!("{base}/charges"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_ne!(server.seen()[3].headers["idempotency-key"], keys[0]);
}

fn uuid_version(key: &str) -> u32 {
    assert_eq!(key.len(), 36, "{key}");
    key[14..15].parse().unwrap()
}

#[tokio::test]
async fn a_post_without_key_injection_is_not_retried_unless_the_caller_keyed_it() {
    let server = Script::new([reply(503)]);
    let base = server.serve().await;
    let http = with(RetryMiddleware::new(policy(3)).without_idempotency_keys());

    let res = http.post(&base).body("{}").send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(server.hits(), 1, "a POST without a key is sent once");
    assert!(server.seen()[0].headers.get("idempotency-key").is_none());
    assert_eq!(
        info(&res),
        RetryInfo {
            gave_up: Some(GiveUp::NotReplaySafe)
        }
    );

    // The caller's own key makes it safe: retried, the key unchanged.
    let res = http
        .post(&base)
        .header("idempotency-key", "order-42")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        info(&res),
        RetryInfo {
            gave_up: Some(GiveUp::AttemptsExhausted)
        }
    );
    assert_eq!(server.hits(), 4, "1 before, then 3 attempts of this one");
    assert!(
        server.seen()[1..]
            .iter()
            .all(|s| s.headers["idempotency-key"] == "order-42")
    );

    // And a GET is idempotent: retried without any key.
    let res = http.get(&base).send().await.unwrap();
    assert_eq!(info(&res).gave_up, Some(GiveUp::AttemptsExhausted));
    assert_eq!(server.hits(), 7);
}

#[tokio::test]
async fn a_streaming_body_gets_one_attempt_and_the_failure_says_so() {
    let server = Script::new([reply(503)]);
    let base = server.serve().await;
    let http = with(RetryMiddleware::new(policy(3)));
    let stream = || reqwest::Body::wrap(http_body_util::Full::new(Bytes::from_static(b"chunk")));

    let res = http.put(&base).body(stream()).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(server.hits(), 1);
    assert_eq!(server.seen()[0].body, "chunk");
    assert_eq!(info(&res).gave_up, Some(GiveUp::NotReplayable));

    // A transport error: the error itself says why there was no second attempt.
    let refused = format!("http://{}", common::refused_addr().await);
    let err = http.put(&refused).body(stream()).send().await.unwrap_err();
    let retry = find::<RetryError<reqwest_middleware::Error>>(&err).expect("a RetryError");
    assert_eq!(
        (retry.attempts(), retry.reason()),
        (1, GiveUp::NotReplayable)
    );
    assert!(
        err.to_string()
            .contains("the request body cannot be sent again"),
        "{err}"
    );
}

#[tokio::test]
async fn transport_errors_are_retried_until_the_attempts_run_out() {
    let refused = format!("http://{}", common::refused_addr().await);
    let err = with(RetryMiddleware::new(policy(3)))
        .get(&refused)
        .send()
        .await
        .unwrap_err();
    let retry = find::<RetryError<reqwest_middleware::Error>>(&err).expect("a RetryError");
    assert_eq!(
        (retry.attempts(), retry.reason()),
        (3, GiveUp::AttemptsExhausted)
    );
    let transport = find::<reqwest::Error>(&err).expect("the last reqwest error");
    assert!(transport.is_connect(), "{transport}");
    assert!(
        err.to_string().starts_with("gave up after 3 attempts"),
        "{err}"
    );
}

#[tokio::test]
async fn an_attempt_timeout_cuts_a_slow_attempt_and_retries() {
    use axum::{Router, routing::get};
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let router = Router::new().route(
        "/",
        get({
            let calls = calls.clone();
            move || async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    // Never answers in time: the attempt is cut by the middleware.
                    std::future::pending::<()>().await;
                }
                "ok"
            }
        }),
    );
    let base = format!("http://{}", common::serve(router).await);
    let retry = RetryMiddleware::new(
        RetryPolicy::builder()
            .max_attempts(2)
            .attempt_timeout(Duration::from_millis(200))
            .backoff(
                Backoff::builder()
                    .delays(Delays::Constant(Duration::from_millis(10)))
                    .jitter(Jitter::None)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap(),
    );
    let res = with(retry).get(&base).send().await.unwrap();
    assert_eq!(res.text().await.unwrap(), "ok");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_request_reqwest_refuses_is_tried_once() {
    let err = with(RetryMiddleware::new(policy(3)))
        .get("ftp://127.0.0.1:1/file")
        .send()
        .await
        .unwrap_err();
    let retry = find::<RetryError<reqwest_middleware::Error>>(&err).expect("a RetryError");
    assert_eq!(
        (retry.attempts(), retry.reason()),
        (1, GiveUp::Fatal),
        "{err}"
    );
    assert!(
        find::<reqwest::Error>(&err)
            .expect("reqwest's error")
            .is_builder()
    );
}

#[tokio::test]
async fn a_redirect_loop_is_followed_once_not_once_per_attempt() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    let hits = Arc::new(AtomicUsize::new(0));
    let router = axum::Router::new().route(
        "/loop",
        axum::routing::get({
            let hits = hits.clone();
            move || async move {
                hits.fetch_add(1, Ordering::SeqCst);
                axum::response::Redirect::temporary("/loop")
            }
        }),
    );
    let addr = common::serve(router).await;
    let err = with(RetryMiddleware::new(policy(3)))
        .get(format!("http://{addr}/loop"))
        .send()
        .await
        .unwrap_err();
    let retry = find::<RetryError<reqwest_middleware::Error>>(&err).expect("a RetryError");
    assert_eq!(
        (retry.attempts(), retry.reason()),
        (1, GiveUp::Fatal),
        "{err}"
    );
    assert!(
        find::<reqwest::Error>(&err)
            .expect("reqwest's error")
            .is_redirect()
    );
    // reqwest's default policy follows 10 redirects, then gives up: one attempt's worth.
    assert_eq!(hits.load(Ordering::SeqCst), 11);
}
