//! A tonic client with retry, a circuit breaker and a bulkhead on its `Channel`.
//!
//! ```text
//! cargo run -p rampart-examples --bin tonic_client
//! ```
//!
//! It starts a gRPC health server on loopback that answers `UNAVAILABLE` (with a
//! `grpc-retry-pushback-ms`) to every third call, then goes down for a while, then recovers. The client stack,
//! outermost first:
//!
//! | layer | what it does here |
//! |---|---|
//! | `rejections_as_status` | an open breaker or a full bulkhead reaches the caller as `UNAVAILABLE` / `RESOURCE_EXHAUSTED`, not `UNKNOWN` |
//! | `RetryLayer` (`GrpcClassifier`, `GrpcProtocol`) | retries `UNAVAILABLE` (status in headers or trailers), honouring the server's pushback |
//! | `CircuitBreakerLayer` | opens while the server is down; then calls fail fast |
//! | `BulkheadLayer` | at most 8 calls in flight |
//! | `BufferBodyLayer` + `HttpReplay` | hold each request body so a retry can send it again |
#![allow(clippy::print_stdout)]

use rampart::core::header::GRPC_RETRY_PUSHBACK_MS;
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use rampart::{
    ServiceBuilderExt,
    bulkhead::BulkheadLayer,
    circuit_breaker::CircuitBreakerLayer,
    core::{classify::GrpcClassifier, error::BoxError},
    retry::{
        RetryLayer,
        backoff::{Backoff, Delays, Jitter},
        protocol::GrpcProtocol,
        replay::{BufferBodyLayer, HttpReplay},
    },
};
use tonic::{
    Request, Response, Status,
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

#[derive(Clone, Default)]
struct Flaky {
    /// Every third call fails.
    flaky: Arc<AtomicBool>,
    /// Every call fails.
    down: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl Health for Flaky {
    async fn check(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) || (self.flaky.load(Ordering::SeqCst) && n % 3 == 2) {
            let mut status = Status::unavailable("busy");
            status.metadata_mut().insert(
                GRPC_RETRY_PUSHBACK_MS,
                tonic::metadata::MetadataValue::from_static("20"),
            );
            return Err(status);
        }
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving.into(),
        }))
    }

    type WatchStream = tokio_stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("not in this example"))
    }
}

async fn start(flaky: Flaky) -> Result<SocketAddr, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        Server::builder()
            .add_service(HealthServer::new(flaky))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let flaky = Flaky::default();
    flaky.flaky.store(true, Ordering::SeqCst);
    let addr = start(flaky.clone()).await?;
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;

    let breaker = CircuitBreakerLayer::builder()
        .name("health-backend")
        .consecutive_failures(5)
        .open_duration(Duration::from_millis(300))
        .layer()?
        .classifier(GrpcClassifier::new())
        .ignore_rejections();
    let breaker_handle = breaker.handle();
    let retry = RetryLayer::builder()
        .max_attempts(3)
        .backoff(
            Backoff::builder()
                .delays(Delays::Constant(Duration::from_millis(10)))
                .jitter(Jitter::Full)
                .build()?,
        )
        .layer()?
        .classifier(GrpcClassifier::new())
        // Health checks only read: they may be sent again without a key.
        .protocol(GrpcProtocol::default().idempotent("/grpc.health.v1.Health/*"))
        .replay(HttpReplay);
    let svc = ServiceBuilder::new()
        .rejections_as_status()
        .layer(BufferBodyLayer::default())
        .retries(retry)
        .circuit_breaker(breaker)
        .bulkhead(
            BulkheadLayer::builder()
                .name("health-backend")
                .max_concurrent(8)
                .layer()?,
        )
        // The channel takes tonic's own body type.
        .map_request(|req: http::Request<_>| req.map(tonic::body::Body::new))
        .service(channel);
    let mut client = HealthClient::new(svc);

    println!("tonic client with retry, breaker and bulkhead on a Channel to http://{addr}\n");
    let mut call = async |label: &str| {
        let before = flaky.calls.load(Ordering::SeqCst);
        let result = client.check(HealthCheckRequest::default()).await;
        let attempts = flaky.calls.load(Ordering::SeqCst) - before;
        match result {
            Ok(res) => println!(
                "  {label}: {:?} after {attempts} attempt(s)",
                res.into_inner().status()
            ),
            Err(status) => println!(
                "  {label}: {:?} \"{}\" after {attempts} attempt(s) reached the server",
                status.code(),
                status.message()
            ),
        }
    };
    for i in 1..=4 {
        call(&format!("call {i}")).await;
    }
    println!("\n  the server goes down");
    flaky.down.store(true, Ordering::SeqCst);
    for i in 5..=8 {
        call(&format!("call {i}")).await;
    }
    println!("  breaker: {}", breaker_handle.state());
    println!("\n  the server is back, and steady");
    flaky.flaky.store(false, Ordering::SeqCst);
    flaky.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(350)).await;
    for i in 9..=11 {
        call(&format!("call {i}")).await;
    }
    println!("  breaker: {}", breaker_handle.state());
    Ok(())
}
