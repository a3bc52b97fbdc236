//! A circuit breaker around a real tonic `Channel`, talking to a real tonic server over
//! loopback.
//!
//! The server is the gRPC health service with a hand-written implementation that answers
//! `UNAVAILABLE` while it is "down". Successful calls carry `grpc-status: 0` in the trailers
//! (recorded by `GrpcBody` at the end of the stream); errors come trailers-only, with the
//! status in the headers. Time is a `ManualClock` given to the breaker: no sleeps.

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
    circuit_breaker::{CircuitBreakerLayer, State},
    core::{classify::GrpcClassifier, clock::ManualClock},
};
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

const OPEN_FOR: Duration = Duration::from_secs(10);

/// A health service that fails with `UNAVAILABLE` while `down`, counting the calls it gets.
#[derive(Clone, Default)]
struct FlakyHealth {
    down: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl Health for FlakyHealth {
    async fn check(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            Err(Status::unavailable("backend is down"))
        } else {
            Ok(Response::new(HealthCheckResponse {
                status: ServingStatus::Serving.into(),
            }))
        }
    }

    type WatchStream = tokio_stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("not needed here"))
    }
}

async fn start_server(health: FlakyHealth) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        Server::builder()
            .add_service(HealthServer::new(health))
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .expect("tonic server");
    });
    addr
}

#[tokio::test]
async fn breaker_around_a_channel_trips_on_unavailable_and_recovers() {
    let health = FlakyHealth::default();
    let addr = start_server(health.clone()).await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");

    let clock = ManualClock::new();
    let breaker = CircuitBreakerLayer::builder()
        .name("tonic-e2e")
        .consecutive_failures(3)
        .open_duration(OPEN_FOR)
        .clock(clock.shared())
        .layer()
        .expect("valid config")
        .classifier(GrpcClassifier::new());
    let handle = breaker.handle();
    let svc = ServiceBuilder::new()
        .rejections_as_status()
        .circuit_breaker(breaker)
        .service(channel);
    let mut client = HealthClient::new(svc);
    let check = || Request::new(HealthCheckRequest::default());

    // A success: grpc-status 0 arrives in the trailers and is recorded at the end of the body.
    let res = client.check(check()).await.expect("healthy");
    assert_eq!(res.into_inner().status(), ServingStatus::Serving);
    assert_eq!(handle.stats().successes, 1);

    // UNAVAILABLE from the server (trailers-only) three times: the breaker trips.
    health.down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        let status = client.check(check()).await.expect_err("down");
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "backend is down");
    }
    assert_eq!(handle.state(), State::Open);
    assert_eq!(health.calls.load(Ordering::SeqCst), 4);

    // Open: the client gets UNAVAILABLE with a pushback, and the server is not called.
    for _ in 0..3 {
        let status = client.check(check()).await.expect_err("rejected");
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "circuit breaker is open");
        assert_eq!(
            status
                .metadata()
                .get(rampart::core::header::GRPC_RETRY_PUSHBACK_MS)
                .expect("pushback"),
            "10000"
        );
    }
    assert_eq!(health.calls.load(Ordering::SeqCst), 4, "server not reached");
    assert_eq!(handle.stats().rejections, 3);

    clock.advance(Duration::from_millis(7_500));
    let status = client.check(check()).await.expect_err("still open");
    assert_eq!(
        status
            .metadata()
            .get(rampart::core::header::GRPC_RETRY_PUSHBACK_MS)
            .expect("pushback"),
        "2500"
    );

    // Open time over, backend up: two successful probes close the breaker.
    health.down.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_millis(2_500));
    client.check(check()).await.expect("probe 1");
    assert_eq!(handle.state(), State::HalfOpen);
    client.check(check()).await.expect("probe 2");
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(health.calls.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn without_the_mapping_a_rejection_is_unknown() {
    // Why `rejections_as_status` exists: tonic maps an unrecognised error to UNKNOWN.
    let health = FlakyHealth::default();
    let addr = start_server(health.clone()).await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let breaker = CircuitBreakerLayer::builder()
        .name("tonic-e2e-unmapped")
        .layer()
        .expect("valid config")
        .classifier(GrpcClassifier::new());
    breaker.handle().force_open();
    let mut client = HealthClient::new(ServiceBuilder::new().layer(breaker).service(channel));

    let status = client
        .check(Request::new(HealthCheckRequest::default()))
        .await
        .expect_err("forced open");
    assert_eq!(status.code(), Code::Unknown);
    assert_eq!(health.calls.load(Ordering::SeqCst), 0);
}
