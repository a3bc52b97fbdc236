#![allow(clippy::unwrap_used)]
//! Fallback answers: cache with staleness, static, function; marked; only when failing.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use rampart_core::error::BoxError;
use rampart_fallback::{
    FALLBACK, Failed, FallbackAnswer, FallbackLayer, LastGood, Source, Staleness, StaticResponse,
};
use tower::{Layer, Service, ServiceExt, service_fn};

/// What the upstream does next: answer `Ok(status)` or fail.
#[derive(Clone)]
struct Script(Arc<Mutex<Result<u16, &'static str>>>);

impl Default for Script {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Ok(200))))
    }
}

impl Script {
    fn set(&self, next: Result<u16, &'static str>) {
        *self.0.lock().unwrap() = next;
    }
}

fn upstream(
    script: Script,
) -> impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = std::io::Error, Future: Send>
+ Clone {
    service_fn(move |req: Request<()>| {
        let next = *script.0.lock().unwrap();
        async move {
            match next {
                Ok(status) => {
                    let mut res = Response::new(Full::new(Bytes::from(format!(
                        "{} says {status}",
                        req.uri().path()
                    ))));
                    *res.status_mut() = StatusCode::from_u16(status).unwrap();
                    res.headers_mut()
                        .insert("x-from", "upstream".parse().unwrap());
                    Ok(res)
                }
                Err(e) => Err(std::io::Error::other(e)),
            }
        }
    })
}

fn cache() -> LastGood {
    LastGood::builder()
        .fresh_for(Duration::from_secs(10))
        .stale_for(Duration::from_secs(60))
        .max_age(Duration::from_secs(300))
        .build()
        .unwrap()
}

fn get(path: &str) -> Request<()> {
    Request::get(format!("http://svc{path}")).body(()).unwrap()
}

async fn text<B: http_body::Body<Data = Bytes>>(res: Response<B>) -> String
where
    B::Error: std::fmt::Debug,
{
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_last_good_answer_stands_in_and_says_how_stale_it_is() {
    let script = Script::default();
    script.set(Ok(200));
    let svc = FallbackLayer::builder()
        .cache(cache())
        .build()
        .layer(upstream(script.clone()));
    let res = svc.clone().oneshot(get("/a")).await.unwrap();
    assert!(res.headers().get(FALLBACK).is_none());
    assert!(res.extensions().get::<FallbackAnswer>().is_none());
    assert_eq!(text(res).await, "/a says 200");

    script.set(Ok(503));
    for (wait, staleness) in [
        (0, Staleness::Fresh),
        (30, Staleness::Stale),
        (60, Staleness::VeryStale),
    ] {
        tokio::time::advance(Duration::from_secs(wait)).await;
        let res = svc.clone().oneshot(get("/a")).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["x-from"],
            "upstream",
            "the stored headers come back"
        );
        let info = *res.extensions().get::<FallbackAnswer>().unwrap();
        let Source::Cache { staleness: got, .. } = info.source else {
            panic!("{info:?}")
        };
        assert_eq!(got, staleness);
        assert_eq!(info.replaced_status, Some(StatusCode::SERVICE_UNAVAILABLE));
        assert!(
            res.headers()[FALLBACK]
                .to_str()
                .unwrap()
                .starts_with(&format!("cache; staleness={}", staleness.as_str()))
        );
        assert_eq!(text(res).await, "/a says 200");
    }

    // Past max_age: nothing to stand in, the failure as it was.
    tokio::time::advance(Duration::from_secs(300)).await;
    let res = svc.clone().oneshot(get("/a")).await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.headers().get(FALLBACK).is_none());
}

#[tokio::test(start_paused = true)]
async fn errors_fall_back_too_and_other_keys_are_not_mixed_up() {
    let script = Script::default();
    script.set(Ok(200));
    let svc = FallbackLayer::builder()
        .cache(cache())
        .static_response(StaticResponse::new(StatusCode::OK, "default"))
        .build()
        .layer(upstream(script.clone()));
    text(svc.clone().oneshot(get("/a")).await.unwrap()).await;

    script.set(Err("connection refused"));
    let res = svc.clone().oneshot(get("/a")).await.unwrap();
    let info = *res.extensions().get::<FallbackAnswer>().unwrap();
    assert!(matches!(info.source, Source::Cache { .. }));
    assert_eq!(info.replaced_status, None, "an error, not a response");
    assert_eq!(text(res).await, "/a says 200");

    let res = svc.oneshot(get("/b")).await.unwrap();
    assert_eq!(res.headers()[FALLBACK], "static");
    assert_eq!(text(res).await, "default");
}

#[tokio::test]
async fn post_answers_are_not_cached_and_4xx_is_not_a_failure() {
    let script = Script::default();
    script.set(Ok(200));
    let svc = FallbackLayer::builder()
        .cache(cache())
        .build()
        .layer(upstream(script.clone()));
    let post = || Request::post("http://svc/a").body(()).unwrap();
    text(svc.clone().oneshot(post()).await.unwrap()).await;
    script.set(Ok(503));
    let res = svc.clone().oneshot(post()).await.unwrap();
    assert_eq!(res.status(), 503, "no cached answer for a POST");

    script.set(Ok(404));
    let res = svc.oneshot(get("/missing")).await.unwrap();
    assert_eq!(res.status(), 404);
    assert!(res.headers().get(FALLBACK).is_none());
}

#[tokio::test]
async fn a_function_gets_the_failure_and_answers() {
    let script = Script::default();
    script.set(Err("reset"));
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let svc = FallbackLayer::builder()
        .function(move |failed: Failed| {
            c.fetch_add(1, Ordering::SeqCst);
            async move {
                assert_eq!(failed.uri.path(), "/x");
                let why = failed.error.unwrap().to_string();
                Ok::<_, BoxError>(StaticResponse::new(
                    StatusCode::OK,
                    format!("degraded: {why}"),
                ))
            }
        })
        .build()
        .layer(upstream(script.clone()));
    let res = svc.clone().oneshot(get("/x")).await.unwrap();
    assert_eq!(res.headers()[FALLBACK], "function");
    assert_eq!(text(res).await, "degraded: reset");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Not called when the upstream is fine.
    script.set(Ok(200));
    svc.oneshot(get("/x")).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn with_nothing_to_fall_back_on_the_error_comes_back() {
    let script = Script::default();
    script.set(Err("down"));
    let svc = FallbackLayer::builder()
        .cache(cache())
        .build()
        .layer(upstream(script));
    let err = svc.oneshot(get("/never")).await.unwrap_err();
    assert_eq!(err.to_string(), "down");
}

#[tokio::test]
async fn a_body_over_the_cache_limit_is_not_kept() {
    let script = Script::default();
    script.set(Ok(200));
    let svc = FallbackLayer::builder()
        .cache(LastGood::builder().max_body(4).build().unwrap())
        .build()
        .layer(upstream(script.clone()));
    text(svc.clone().oneshot(get("/big")).await.unwrap()).await;
    script.set(Ok(500));
    assert_eq!(svc.oneshot(get("/big")).await.unwrap().status(), 500);
}
