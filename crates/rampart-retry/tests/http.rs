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
    hints::{Hints, HttpHints, ServerHint},
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
struct ResponseHints(HttpHints);

impl Hints<u32, http::Response<()>, std::io::Error> for ResponseHints {
    fn replay_safe(&self, _: &u32) -> bool {
        true
    }

    fn server_hint(&self, result: Result<&http::Response<()>, &std::io::Error>) -> ServerHint {
        Hints::<http::Request<()>, _, _>::server_hint(&self.0, result)
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
        .hints(ResponseHints::default());
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
        .hints(ResponseHints::default());
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
