//! The asynchronous hook before a retry: a `401` answered by refreshing the token, the retry
//! carrying the new one; a refresh that fails ends the retries with its error. Paused time.

#![cfg(feature = "http")]
#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{Request, Response, StatusCode};
use rampart_core::{classify::HttpClassifier, error::BoxError};
use rampart_retry::{
    LastError, RetryLayer,
    backoff::{Backoff, Delays, Jitter},
    hook::{Previous, on_retry},
    policy::GiveUp,
};
use tower::{Layer, ServiceExt, service_fn};

/// The identity provider: hands out `token-1`, `token-2`, … and counts the refreshes; fails
/// once `down` is set.
#[derive(Clone, Default)]
struct Tokens {
    issued: Arc<Mutex<u32>>,
    down: Arc<Mutex<bool>>,
}

impl Tokens {
    async fn refresh(&self) -> Result<String, BoxError> {
        // A real refresh waits on the network.
        tokio::time::sleep(Duration::from_millis(30)).await;
        if *self.down.lock().unwrap() {
            return Err("identity provider unavailable".into());
        }
        let mut n = self.issued.lock().unwrap();
        *n += 1;
        Ok(format!("Bearer token-{n}"))
    }
}

/// `401` counts as a transient failure for the retry (the token may be renewed); `5xx` as
/// usual.
fn classifier() -> HttpClassifier {
    HttpClassifier::builder()
        .failure_statuses([401..=401, 500..=599])
        .transient_statuses([401..=401, 502..=504])
        .build()
        .unwrap()
}

/// An API that accepts only `current` as the bearer token, recording what each attempt sent.
fn api(
    current: &'static str,
    seen: Arc<Mutex<Vec<Option<String>>>>,
) -> impl tower::Service<Request<()>, Response = Response<()>, Error = BoxError, Future: Send> + Clone
{
    service_fn(move |req: Request<()>| {
        let auth = req
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        seen.lock().unwrap().push(auth.clone());
        async move {
            let status = if auth.as_deref() == Some(current) {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            };
            let mut res = Response::new(());
            *res.status_mut() = status;
            Ok::<_, BoxError>(res)
        }
    })
}

fn layer(
    tokens: &Tokens,
) -> impl Layer<
    tower::util::BoxCloneSyncService<Request<()>, Response<()>, BoxError>,
    Service: tower::Service<
        Request<()>,
        Response = Response<()>,
        Error = rampart_retry::RetryError<BoxError>,
    >,
> {
    let tokens = tokens.clone();
    RetryLayer::builder()
        .max_attempts(3)
        .backoff(
            Backoff::builder()
                .delays(Delays::Constant(Duration::from_millis(10)))
                .jitter(Jitter::None)
                .build()
                .unwrap(),
        )
        .layer()
        .unwrap()
        .classifier(classifier())
        .on_attempt(on_retry(
            move |mut req: Request<()>, previous: Previous<'_, Response<()>, BoxError>, _n: u32| {
                let unauthorized = matches!(
                    previous,
                    Previous::Response(res) if res.status() == StatusCode::UNAUTHORIZED
                );
                let tokens = tokens.clone();
                async move {
                    if unauthorized {
                        let token = tokens.refresh().await?;
                        req.headers_mut().insert("authorization", token.parse()?);
                    }
                    Ok(req)
                }
            },
        ))
}

fn call_with(token: &str) -> Request<()> {
    Request::get("http://api/orders")
        .header("authorization", token)
        .body(())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_401_is_answered_by_a_refresh_and_the_retry_carries_the_new_token() {
    let tokens = Tokens::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let svc = layer(&tokens).layer(tower::util::BoxCloneSyncService::new(api(
        "Bearer token-1",
        seen.clone(),
    )));
    let res = svc.oneshot(call_with("Bearer expired")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            Some("Bearer expired".to_owned()),
            Some("Bearer token-1".to_owned())
        ],
        "the retry carried the refreshed token"
    );
    assert_eq!(*tokens.issued.lock().unwrap(), 1, "one refresh");
}

#[tokio::test(start_paused = true)]
async fn a_failure_that_is_not_a_401_refreshes_nothing() {
    let tokens = Tokens::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let down = service_fn({
        let seen = seen.clone();
        move |req: Request<()>| {
            seen.lock()
                .unwrap()
                .push(req.headers().get("authorization").cloned());
            async {
                let mut res = Response::new(());
                *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                Ok::<_, BoxError>(res)
            }
        }
    });
    let svc = layer(&tokens).layer(tower::util::BoxCloneSyncService::new(down));
    let res = svc.oneshot(call_with("Bearer fine")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.lock().unwrap().len(), 3, "every attempt made");
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|a| a.as_ref().unwrap() == "Bearer fine"),
        "each retry sent the original token"
    );
    assert_eq!(*tokens.issued.lock().unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_refresh_that_fails_ends_the_retries_with_its_error() {
    let tokens = Tokens::default();
    *tokens.down.lock().unwrap() = true;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let svc = layer(&tokens).layer(tower::util::BoxCloneSyncService::new(api(
        "Bearer token-1",
        seen.clone(),
    )));
    let err = svc.oneshot(call_with("Bearer expired")).await.unwrap_err();
    assert_eq!((err.attempts(), err.reason()), (1, GiveUp::HookFailed));
    assert!(
        matches!(err.last(), LastError::Hook(e) if e.to_string() == "identity provider unavailable"),
        "{err}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1, "no retry without a token");
}
