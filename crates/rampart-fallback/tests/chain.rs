#![allow(clippy::unwrap_used)]
//! A chain of alternatives (cache → queue for later → local answer): each tried in order when
//! the one before has nothing, and a function that sees the request's headers and body.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use rampart_core::{body::ReplayBody, error::BoxError};
use rampart_fallback::StaticResponse;
use rampart_fallback::{FALLBACK, Failed, FallbackAnswer, FallbackLayer, LastGood, Source};
use rampart_retry::replay::BufferBodyLayer;
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};

type Upstream = tower::util::BoxCloneSyncService<
    Request<ReplayBody<Full<Bytes>>>,
    Response<Full<Bytes>>,
    std::io::Error,
>;

/// An upstream that is down: every call answers `503`.
fn down() -> Upstream {
    tower::util::BoxCloneSyncService::new(service_fn(
        |_req: Request<ReplayBody<Full<Bytes>>>| async {
            let mut res = Response::new(Full::new(Bytes::from_static(b"down")));
            *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            Ok::<_, std::io::Error>(res)
        },
    ))
}

/// What the queue alternative parked: (idempotency key, body).
type Queue = Arc<Mutex<Vec<(String, Bytes)>>>;

/// The chain the write-ups describe: the last good answer, else park a write that carries an
/// idempotency key and answer `202`, else a local answer.
fn chain(queue: &Queue) -> FallbackLayer {
    let queue = queue.clone();
    FallbackLayer::builder()
        .cache(LastGood::builder().build().unwrap())
        .function(move |failed: Failed| {
            let queue = queue.clone();
            async move {
                let key = failed
                    .headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .ok_or("no idempotency key: not safe to queue")?;
                let body = failed.body.ok_or("body not held: nothing to queue")?;
                queue.lock().unwrap().push((key.to_owned(), body));
                Ok::<_, BoxError>(StaticResponse::new(StatusCode::ACCEPTED, "queued"))
            }
        })
        .static_response(StaticResponse::new(StatusCode::OK, "local answer"))
        .build()
}

fn post(key: Option<&str>, body: &'static str) -> Request<Full<Bytes>> {
    let mut req = Request::post("http://orders/orders");
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    req.body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

#[tokio::test]
async fn a_keyed_write_is_queued_with_its_body_and_an_unkeyed_one_gets_the_local_answer() {
    let queue = Queue::default();
    let svc = ServiceBuilder::new()
        .layer(BufferBodyLayer::default())
        .layer(chain(&queue))
        .service(down());

    let res = svc
        .clone()
        .oneshot(post(Some("order-1"), r#"{"sku":"A1"}"#))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let info = *res.extensions().get::<FallbackAnswer>().unwrap();
    assert_eq!(
        (info.source, info.alternative, info.replaced_status),
        (Source::Function, 0, Some(StatusCode::SERVICE_UNAVAILABLE))
    );
    assert_eq!(res.headers()[FALLBACK], "function");
    assert_eq!(
        *queue.lock().unwrap(),
        vec![("order-1".to_owned(), Bytes::from_static(br#"{"sku":"A1"}"#))],
        "the queue saw the key and the whole body"
    );

    // No key: the queue has nothing to offer, the next alternative answers.
    let res = svc.oneshot(post(None, "{}")).await.unwrap();
    let info = *res.extensions().get::<FallbackAnswer>().unwrap();
    assert_eq!((info.source, info.alternative), (Source::Static, 1));
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        "local answer"
    );
    assert_eq!(queue.lock().unwrap().len(), 1, "nothing more queued");
}

#[tokio::test]
async fn without_a_layer_holding_the_body_a_function_sees_none() {
    let queue = Queue::default();
    // The request goes straight in: the fallback does not hold back the streaming body.
    let svc = chain(&queue).layer(service_fn(|_req: Request<Full<Bytes>>| async {
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.status_mut() = StatusCode::BAD_GATEWAY;
        Ok::<_, std::io::Error>(res)
    }));
    let res = svc.oneshot(post(Some("order-2"), "{}")).await.unwrap();
    let info = *res.extensions().get::<FallbackAnswer>().unwrap();
    assert_eq!((info.source, info.alternative), (Source::Static, 1));
    assert!(queue.lock().unwrap().is_empty());
}

#[tokio::test]
async fn when_every_function_fails_the_caller_gets_the_last_ones_error() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (first, second) = (seen.clone(), seen.clone());
    let svc = FallbackLayer::builder()
        .function(move |failed: Failed| {
            first.lock().unwrap().push(("first", failed.status));
            async { Err::<StaticResponse, BoxError>("first had nothing".into()) }
        })
        .function(move |failed: Failed| {
            second.lock().unwrap().push(("second", failed.status));
            async { Err::<StaticResponse, BoxError>("second had nothing".into()) }
        })
        .build()
        .layer(service_fn(|_req: Request<()>| async {
            let mut res = Response::new(Full::new(Bytes::new()));
            *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            Ok::<_, std::io::Error>(res)
        }));
    let err = svc
        .oneshot(Request::get("http://svc/").body(()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "second had nothing");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            ("first", Some(StatusCode::INTERNAL_SERVER_ERROR)),
            ("second", Some(StatusCode::INTERNAL_SERVER_ERROR))
        ],
        "both tried, in order, each told of the upstream's failure"
    );
}

#[tokio::test]
async fn a_static_answer_ends_the_chain() {
    let called = Arc::new(Mutex::new(false));
    let c = called.clone();
    let svc = FallbackLayer::builder()
        .static_response(StaticResponse::new(StatusCode::OK, "first"))
        .function(move |_failed: Failed| {
            *c.lock().unwrap() = true;
            async { Ok::<_, BoxError>(StaticResponse::new(StatusCode::OK, "never")) }
        })
        .build()
        .layer(service_fn(|_req: Request<()>| async {
            Err::<Response<Full<Bytes>>, _>(std::io::Error::other("reset"))
        }));
    let res = svc
        .oneshot(Request::get("http://svc/").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "first");
    assert!(!*called.lock().unwrap());
}
