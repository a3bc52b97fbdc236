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

/// `GET /account` as `who` (in `authorization`).
fn as_user(who: &str) -> Request<()> {
    Request::get("http://svc/account")
        .header("authorization", who)
        .body(())
        .unwrap()
}

/// An upstream answering each request with its caller's name (from `authorization`), a
/// session cookie, and the cache-control it is told to.
fn personal_upstream(
    up: Arc<std::sync::atomic::AtomicBool>,
    cache_control: Option<&'static str>,
) -> impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = std::io::Error, Future: Send>
+ Clone {
    service_fn(move |req: Request<()>| {
        let ok = up.load(Ordering::SeqCst);
        let who = req
            .headers()
            .get("authorization")
            .map_or("anonymous".to_owned(), |v| v.to_str().unwrap().to_owned());
        async move {
            if !ok {
                return Err(std::io::Error::other("down"));
            }
            let mut res = Response::new(Full::new(Bytes::from(format!("account of {who}"))));
            res.headers_mut()
                .insert("set-cookie", "session=ALICE-SESSION".parse().unwrap());
            if let Some(cc) = cache_control {
                res.headers_mut()
                    .insert("cache-control", cc.parse().unwrap());
            }
            Ok(res)
        }
    })
}

#[tokio::test]
async fn one_users_answer_is_never_served_to_another() {
    let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let svc = FallbackLayer::builder()
        .cache(cache())
        .static_response(StaticResponse::new(StatusCode::SERVICE_UNAVAILABLE, "down"))
        .build()
        .layer(personal_upstream(up.clone(), None));
    assert_eq!(
        text(svc.clone().oneshot(as_user("alice")).await.unwrap()).await,
        "account of alice"
    );
    up.store(false, Ordering::SeqCst);
    let res = svc.clone().oneshot(as_user("bob")).await.unwrap();
    assert_eq!(
        res.headers()[FALLBACK],
        "static",
        "not alice's cached answer"
    );
    assert_eq!(text(res).await, "down");
}

#[tokio::test]
async fn set_cookie_is_never_stored_and_private_answers_are_not_kept() {
    let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let svc = FallbackLayer::builder()
        .cache(cache())
        .build()
        .layer(personal_upstream(up.clone(), None));
    text(svc.clone().oneshot(get("/public")).await.unwrap()).await;
    up.store(false, Ordering::SeqCst);
    let res = svc.clone().oneshot(get("/public")).await.unwrap();
    assert!(
        res.headers().get(FALLBACK).is_some(),
        "served from the cache"
    );
    assert!(
        res.headers().get("set-cookie").is_none(),
        "a cached answer hands out nobody's session"
    );

    for cc in ["private, max-age=60", "no-store"] {
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let svc = FallbackLayer::builder()
            .cache(cache())
            .build()
            .layer(personal_upstream(up.clone(), Some(cc)));
        text(svc.clone().oneshot(get("/me")).await.unwrap()).await;
        up.store(false, Ordering::SeqCst);
        let err = svc.clone().oneshot(get("/me")).await;
        assert!(err.is_err(), "{cc}: not kept, so nothing to stand in");
    }
}

#[tokio::test]
async fn a_key_with_the_identity_in_it_caches_per_caller() {
    let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let svc = FallbackLayer::builder()
        .cache(cache())
        .key_has_identity(true)
        .build()
        .key(rampart_core::key::key_fn(|req: &Request<()>| {
            let who = req.headers().get("authorization")?.to_str().ok()?;
            Some(format!("{who}{}", req.uri().path()))
        }))
        .layer(personal_upstream(up.clone(), None));
    text(svc.clone().oneshot(as_user("alice")).await.unwrap()).await;
    up.store(false, Ordering::SeqCst);
    assert_eq!(
        text(svc.clone().oneshot(as_user("alice")).await.unwrap()).await,
        "account of alice"
    );
    assert!(
        svc.oneshot(as_user("bob")).await.is_err(),
        "bob has no answer kept"
    );
}

#[test]
fn answers_are_counted_under_the_layers_name_and_source() {
    let store = rampart_core::testing::MetricsRecorder::capture(async {
        let script = Script::default();
        script.set(Err("down"));
        let svc = FallbackLayer::builder()
            .name("catalog")
            .static_response(StaticResponse::new(StatusCode::OK, "[]"))
            .build()
            .layer(upstream(script));
        let res = svc.oneshot(get("/items")).await.unwrap();
        assert_eq!(
            res.extensions().get::<FallbackAnswer>().unwrap().source,
            Source::Static
        );
    });
    assert_eq!(
        store.get("rampart_fallback_answers_total{name=catalog,source=static}"),
        1
    );
}
