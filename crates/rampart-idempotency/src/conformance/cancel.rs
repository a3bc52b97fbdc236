//! [`cancelled_after_the_handler`]: a caller that goes away while its response is stored.

use super::*;

/// Through an [`IdempotencyLayer`](crate::IdempotencyLayer) on `store`: a request whose caller
/// goes away after the handler returned, while the response body is still on its way (its
/// first frame comes 50 ms later; the caller gives up after 10 ms), is not run a second time
/// by the retry. At once the retry gets `409` (the response is being stored); 200 ms later it
/// gets the stored response, replayed. The handler runs once.
///
/// Works under paused time (the memory store) and in real time (a networked store).
pub async fn cancelled_after_the_handler(store: std::sync::Arc<dyn IdempotencyStore>) {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    use tower_layer::Layer as _;
    use tower_service::Service;

    let name = store.describe();
    let runs = Arc::new(AtomicUsize::new(0));
    let svc = crate::IdempotencyLayer::builder(store)
        .build()
        .unwrap()
        .layer(SlowBodyHandler { runs: runs.clone() });
    let key = format!("conformance-cancel-{:016x}", fastrand::u64(..));
    let request = || {
        http::Request::post("/orders")
            .header("idempotency-key", key.as_str())
            .body(String::from("{\"order\":1}"))
            .unwrap()
    };
    let send = |svc: &crate::Idempotency<SlowBodyHandler>| {
        let req = request();
        let mut svc = svc.clone();
        async move {
            poll_fn(|cx| Service::<http::Request<String>>::poll_ready(&mut svc, cx))
                .await
                .unwrap();
            svc.call(req).await.unwrap()
        }
    };

    let first = tokio::time::timeout(Duration::from_millis(10), send(&svc)).await;
    assert!(
        first.is_err(),
        "{name}: the caller gave up before the response body came"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "{name}");

    let retry = send(&svc).await;
    assert_eq!(
        retry.status(),
        StatusCode::CONFLICT,
        "{name}: while the response is being stored, a retry is told to wait, not run again"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "{name}: one execution");

    tokio::time::sleep(Duration::from_millis(200)).await;
    let later = send(&svc).await;
    assert_eq!(
        later.status(),
        StatusCode::CREATED,
        "{name}: the stored response"
    );
    assert_eq!(
        later
            .headers()
            .get(crate::IDEMPOTENT_REPLAYED)
            .map(|v| v.as_bytes()),
        Some(&b"true"[..]),
        "{name}: replayed, stored after its caller had gone"
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "{name}: still one execution"
    );
}

/// A handler that counts its runs and answers `201` at once, with a body whose first frame
/// comes 50 ms later.
#[derive(Debug, Clone)]
struct SlowBodyHandler {
    runs: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl<B> tower_service::Service<http::Request<B>> for SlowBodyHandler {
    type Response = http::Response<SlowBody>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<B>) -> Self::Future {
        self.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut res = http::Response::new(SlowBody {
            delay: Some(Box::pin(tokio::time::sleep(Duration::from_millis(50)))),
        });
        *res.status_mut() = StatusCode::CREATED;
        std::future::ready(Ok(res))
    }
}

/// A body: nothing for a while, then `created`.
#[derive(Debug)]
struct SlowBody {
    delay: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for SlowBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        match self.delay.as_mut() {
            Some(delay) => {
                std::task::ready!(delay.as_mut().poll(cx));
                self.delay = None;
                Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(
                    b"created",
                )))))
            }
            None => Poll::Ready(None),
        }
    }
}
