#![allow(clippy::unwrap_used)]
//! Timeouts by class, deadlines carried inward, `grpc-timeout` in and out. Paused time.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use rampart_core::{
    deadline::Deadline,
    error::{Elapsed, find},
};
use rampart_timeout::{DeadlineExceeded, OperationClass, RequestHead, TimeoutLayer};
use tower::{Layer, ServiceExt, service_fn};

/// An upstream that takes `delay`, and notes the deadline and `grpc-timeout` it saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Observed>>>);

/// The deadline's time left and the `grpc-timeout` header, as the upstream saw them.
type Observed = (Option<Duration>, Option<String>);

fn upstream(
    delay: Duration,
    seen: Seen,
) -> impl tower::Service<
    http::Request<()>,
    Response = http::Response<()>,
    Error = std::io::Error,
    Future: Send,
> + Clone {
    service_fn(move |req: http::Request<()>| {
        let seen = seen.clone();
        async move {
            seen.0.lock().unwrap().push((
                Deadline::of(req.extensions()).map(|d| d.remaining()),
                req.headers()
                    .get("grpc-timeout")
                    .map(|v| v.to_str().unwrap().to_owned()),
            ));
            tokio::time::sleep(delay).await;
            Ok(http::Response::new(()))
        }
    })
}

fn with_class(class: &'static str) -> http::Request<()> {
    let mut req = http::Request::new(());
    req.extensions_mut().insert(OperationClass(class));
    req
}

#[tokio::test(start_paused = true)]
async fn each_class_gets_its_own_timeout() {
    let layer = TimeoutLayer::builder().layer().unwrap();
    let slow = |secs| layer.layer(upstream(Duration::from_secs(secs), Seen::default()));

    // request: 30 s
    assert!(slow(29).oneshot(http::Request::new(())).await.is_ok());
    let err = slow(31).oneshot(http::Request::new(())).await.unwrap_err();
    let rejected = err.rejection().unwrap();
    assert_eq!(rejected.class(), "request");
    assert_eq!(rejected.timeout(), Duration::from_secs(30));
    assert!(!rejected.inherited());

    // upload: 120 s; long_poll: 300 s; connect: 5 s
    assert!(slow(119).oneshot(with_class("upload")).await.is_ok());
    assert!(slow(121).oneshot(with_class("upload")).await.is_err());
    assert!(slow(299).oneshot(with_class("long_poll")).await.is_ok());
    assert!(slow(6).oneshot(with_class("connect")).await.is_err());
    // An unknown class gets the default class.
    let err = slow(31).oneshot(with_class("mystery")).await.unwrap_err();
    assert_eq!(err.rejection().unwrap().class(), "request");
}

#[tokio::test(start_paused = true)]
async fn expiry_is_typed_and_found_as_elapsed() {
    let svc = TimeoutLayer::new(Duration::from_secs(1))
        .unwrap()
        .layer(upstream(Duration::from_secs(2), Seen::default()));
    let err = svc.oneshot(http::Request::new(())).await.unwrap_err();
    let boxed = err.into_box();
    assert!(find::<Elapsed>(&*boxed).is_some());
    assert!(find::<DeadlineExceeded>(&*boxed).is_some());
}

#[tokio::test(start_paused = true)]
async fn an_inner_layer_keeps_to_the_outer_deadline() {
    let seen = Seen::default();
    let outer = TimeoutLayer::new(Duration::from_secs(10)).unwrap();
    let inner = TimeoutLayer::new(Duration::from_secs(60)).unwrap();
    let svc = outer.layer(inner.layer(upstream(Duration::from_secs(20), seen.clone())));
    let start = tokio::time::Instant::now();
    let err = svc
        .oneshot(http::Request::new(()))
        .await
        .unwrap_err()
        .into_box();
    // Cut off at 10 s: the inner layer had inherited the outer deadline (and, firing at the
    // same instant, says so).
    assert_eq!(start.elapsed(), Duration::from_secs(10));
    let exceeded = find::<DeadlineExceeded>(&*err).unwrap();
    assert!(exceeded.inherited() || exceeded.timeout() == Duration::from_secs(10));
    let (deadline, _) = seen.0.lock().unwrap()[0].clone();
    assert_eq!(
        deadline,
        Some(Duration::from_secs(10)),
        "the upstream sees the outer deadline"
    );

    // And when the inner one is the one that fires, it says it was an inherited deadline.
    let inner_outer = TimeoutLayer::new(Duration::from_secs(60)).unwrap().layer(
        TimeoutLayer::new(Duration::from_secs(5))
            .unwrap()
            .layer(upstream(Duration::from_secs(20), Seen::default())),
    );
    let mut req = http::Request::new(());
    Deadline::after(Duration::from_secs(2)).tighten(req.extensions_mut());
    let err = inner_outer.oneshot(req).await.unwrap_err().into_box();
    let exceeded = find::<DeadlineExceeded>(&*err).unwrap();
    assert!(exceeded.inherited());
}

#[tokio::test(start_paused = true)]
async fn a_passed_deadline_fails_without_calling() {
    let seen = Seen::default();
    let svc = TimeoutLayer::new(Duration::from_secs(5))
        .unwrap()
        .layer(upstream(Duration::ZERO, seen.clone()));
    let mut req = http::Request::new(());
    Deadline::after(Duration::from_secs(1)).tighten(req.extensions_mut());
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(svc.oneshot(req).await.is_err());
    assert!(seen.0.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn grpc_timeout_is_sent_and_honoured() {
    let seen = Seen::default();
    let client = TimeoutLayer::builder()
        .class("request", Duration::from_millis(1500))
        .grpc_timeout_header(true)
        .layer()
        .unwrap()
        .layer(upstream(Duration::ZERO, seen.clone()));
    client.oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(seen.0.lock().unwrap()[0].1.as_deref(), Some("1500000u"));

    // A server-side layer tightens its 30 s to the 2 s the client asked for.
    let server = TimeoutLayer::builder()
        .layer()
        .unwrap()
        .layer(upstream(Duration::from_secs(3), Seen::default()));
    let req = http::Request::builder()
        .header("grpc-timeout", "2S")
        .body(())
        .unwrap();
    let err = server.oneshot(req).await.unwrap_err();
    assert!(err.rejection().unwrap().inherited());
}

#[tokio::test(start_paused = true)]
async fn a_classifier_function_picks_the_class() {
    let layer = TimeoutLayer::builder()
        .classify(|head: &RequestHead<'_>| {
            if head.method == http::Method::PUT {
                "upload"
            } else {
                "request"
            }
        })
        .layer()
        .unwrap();
    let put = http::Request::put("/file").body(()).unwrap();
    let svc = layer.layer(upstream(Duration::from_secs(100), Seen::default()));
    assert!(svc.oneshot(put).await.is_ok());
}

#[test]
fn bad_configuration_names_the_field() {
    let err = TimeoutLayer::builder()
        .class("request", Duration::ZERO)
        .layer()
        .unwrap_err();
    assert_eq!(err.field(), "class");
    assert!(err.to_string().contains("`request`"), "{err}");
    let err = TimeoutLayer::builder()
        .default_class("nope")
        .layer()
        .unwrap_err();
    assert_eq!(err.field(), "default_class");
}

#[test]
fn a_timeout_is_counted_under_the_layers_name_and_class() {
    let store = rampart_core::testing::MetricsRecorder::capture(async {
        let layer = TimeoutLayer::builder()
            .name("inventory")
            .class("request", Duration::from_secs(1))
            .layer()
            .unwrap();
        let err = layer
            .layer(upstream(Duration::from_secs(2), Seen::default()))
            .oneshot(http::Request::new(()))
            .await
            .unwrap_err();
        assert_eq!(
            err.rejection().map(DeadlineExceeded::name),
            Some("inventory")
        );
    });
    assert_eq!(
        store.get("rampart_timeout_elapsed_total{class=request,name=inventory}"),
        1
    );
}
