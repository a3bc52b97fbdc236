//! A bulkhead with a real tonic client and server over loopback: a full bulkhead reaches the
//! caller as `RESOURCE_EXHAUSTED` (with no pushback) through `rejections_as_status`, whether
//! the bulkhead guards the client's `Channel` or the server.
//!
//! The server's handler blocks on a semaphore the test holds closed and reports on a channel
//! when it starts: no sleeps.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use rampart::{ServiceBuilderExt, bulkhead::BulkheadLayer};
use tokio::sync::{Semaphore, mpsc};
use tonic::{
    Code, Request, Response, Status,
    codegen::tokio_stream::{self, wrappers::TcpListenerStream},
    transport::{Channel, Server},
};
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse,
    health_check_response::ServingStatus,
    health_client::HealthClient,
    health_server::{Health, HealthServer},
};
use tower::ServiceBuilder;

/// A health service whose `check` reports on `entered`, then waits for a permit of `release`.
#[derive(Clone)]
struct SlowHealth {
    entered: mpsc::UnboundedSender<()>,
    release: Arc<Semaphore>,
    calls: Arc<AtomicUsize>,
}

impl SlowHealth {
    fn new() -> (Self, mpsc::UnboundedReceiver<()>) {
        let (entered, rx) = mpsc::unbounded_channel();
        let health = Self {
            entered,
            release: Arc::new(Semaphore::new(0)),
            calls: Arc::default(),
        };
        (health, rx)
    }
}

#[tonic::async_trait]
impl Health for SlowHealth {
    async fn check(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.entered.send(()).expect("the test is listening");
        self.release.acquire().await.expect("never closed").forget();
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving.into(),
        }))
    }

    type WatchStream = tokio_stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("not needed here"))
    }
}

async fn listen() -> (tokio::net::TcpListener, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    (listener, addr)
}

async fn connect(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

/// Waits for `fut`, failing the test after 10 s instead of hanging.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn check() -> Request<HealthCheckRequest> {
    Request::new(HealthCheckRequest::default())
}

fn assert_bulkhead_full(status: &Status) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(status.message(), "bulkhead is full");
    assert!(
        status
            .metadata()
            .get(rampart::core::header::GRPC_RETRY_PUSHBACK_MS)
            .is_none(),
        "a bulkhead cannot know when a permit frees up"
    );
}

#[tokio::test]
async fn a_client_side_bulkhead_rejects_with_resource_exhausted() {
    let (health, mut entered) = SlowHealth::new();
    let (listener, addr) = listen().await;
    let server = health.clone();
    tokio::spawn(async move {
        Server::builder()
            .add_service(HealthServer::new(server))
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .expect("tonic server");
    });

    let bulkhead = BulkheadLayer::builder()
        .name("tonic-e2e-client")
        .max_concurrent(1)
        .layer()
        .expect("valid config");
    let handle = bulkhead.handle();
    let svc = ServiceBuilder::new()
        .rejections_as_status()
        .bulkhead(bulkhead)
        .service(connect(addr).await);
    let client = HealthClient::new(svc);

    // One call takes the only permit and waits in the server.
    let mut first = client.clone();
    let first = tokio::spawn(async move { first.check(check()).await });
    within("the first call to reach the server", entered.recv()).await;

    // The next one is rejected by the client's bulkhead without being sent.
    let status = client.clone().check(check()).await.expect_err("rejected");
    assert_bulkhead_full(&status);
    assert_eq!(health.calls.load(Ordering::SeqCst), 1, "server not reached");
    assert_eq!((handle.stats().active, handle.stats().rejected), (1, 1));

    health.release.add_permits(1);
    let res = within("the first call", first)
        .await
        .expect("task")
        .expect("served");
    assert_eq!(res.into_inner().status(), ServingStatus::Serving);
    assert_eq!(handle.stats().active, 0);
}

#[tokio::test]
async fn a_server_side_bulkhead_rejects_with_resource_exhausted() {
    let (health, mut entered) = SlowHealth::new();
    let (listener, addr) = listen().await;
    let bulkhead = BulkheadLayer::builder()
        .name("tonic-e2e-server")
        .max_concurrent(1)
        .layer()
        .expect("valid config");
    let handle = bulkhead.handle();
    let server = health.clone();
    tokio::spawn(async move {
        Server::builder()
            .layer(
                ServiceBuilder::new()
                    .rejections_as_status()
                    .bulkhead(bulkhead),
            )
            .add_service(HealthServer::new(server))
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .expect("tonic server");
    });
    let client = HealthClient::new(connect(addr).await);

    let mut first = client.clone();
    let first = tokio::spawn(async move { first.check(check()).await });
    within("the first call to reach the handler", entered.recv()).await;

    // The server answers the second call itself, without running the handler.
    let status = client.clone().check(check()).await.expect_err("rejected");
    assert_bulkhead_full(&status);
    assert_eq!(health.calls.load(Ordering::SeqCst), 1, "handler not run");
    assert_eq!((handle.stats().active, handle.stats().rejected), (1, 1));

    health.release.add_permits(1);
    within("the first call", first)
        .await
        .expect("task")
        .expect("served");
    assert_eq!(handle.stats().active, 0);
}
