//! `report_to`: tonic-health's serving status follows the registry, as a gRPC client of the
//! `grpc.health.v1.Health` service sees it (`Check` and `Watch`, in process).

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report
#![cfg(all(feature = "grpc", feature = "circuit-breaker"))]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use rampart_circuit_breaker::CircuitBreakerLayer;
use rampart_health::{HealthRegistry, Status};
use tonic::codegen::tokio_stream::StreamExt;
use tonic_health::{
    pb::{HealthCheckRequest, health_check_response::ServingStatus, health_server::Health},
    server::HealthService,
};

const SERVICE: &str = "shop.v1.Orders";
const EVERY: Duration = Duration::from_secs(5);

async fn check(health: &HealthService) -> ServingStatus {
    let res = health
        .check(tonic::Request::new(HealthCheckRequest {
            service: SERVICE.into(),
        }))
        .await
        .unwrap();
    res.into_inner().status()
}

#[tokio::test(start_paused = true)]
async fn the_serving_status_follows_the_registry() {
    let up = Arc::new(AtomicBool::new(true));
    let payments = CircuitBreakerLayer::builder()
        .name("payments")
        .layer()
        .unwrap();
    let registry = HealthRegistry::builder().cache_for(Duration::ZERO).build();
    registry
        .breaker("payments", payments.handle())
        .probe("db", Duration::from_secs(1), {
            let up = up.clone();
            move || {
                let up = up.load(Ordering::SeqCst);
                async move {
                    if up {
                        Ok(())
                    } else {
                        Err("connection refused")
                    }
                }
            }
        });

    let (reporter, _server) = tonic_health::server::health_reporter();
    let health = HealthService::from_health_reporter(reporter.clone());
    assert!(
        health
            .check(tonic::Request::new(HealthCheckRequest {
                service: SERVICE.into()
            }))
            .await
            .is_err(),
        "not registered before the first report"
    );

    let task = registry.report_to(reporter, SERVICE, EVERY).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await; // the first check runs at once
    assert_eq!(check(&health).await, ServingStatus::Serving);

    let mut watch = health
        .watch(tonic::Request::new(HealthCheckRequest {
            service: SERVICE.into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.next().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );

    // Degraded still serves.
    payments.handle().force_open();
    tokio::time::sleep(EVERY).await;
    assert_eq!(registry.last_status(), Some(Status::Degraded));
    assert_eq!(check(&health).await, ServingStatus::Serving);
    assert!(
        tokio::time::timeout(Duration::from_millis(1), watch.next())
            .await
            .is_err(),
        "no message for a tick that changed nothing a gRPC client can see"
    );

    // Unhealthy does not.
    up.store(false, Ordering::SeqCst);
    tokio::time::sleep(EVERY).await;
    assert_eq!(check(&health).await, ServingStatus::NotServing);
    // Watchers get one message per change.
    assert_eq!(
        watch.next().await.unwrap().unwrap().status(),
        ServingStatus::NotServing
    );

    // Back up.
    up.store(true, Ordering::SeqCst);
    payments.handle().reset();
    tokio::time::sleep(EVERY).await;
    assert_eq!(check(&health).await, ServingStatus::Serving);
    assert_eq!(
        watch.next().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );
    assert_eq!(registry.last_status(), Some(Status::Healthy));

    task.abort();
}

#[tokio::test]
async fn a_zero_interval_is_a_config_error() {
    let (reporter, _server) = tonic_health::server::health_reporter();
    let err = HealthRegistry::new()
        .report_to(reporter, SERVICE, Duration::ZERO)
        .unwrap_err();
    assert_eq!(err.field(), "every");
}

#[test]
fn serving_status_mapping() {
    use tonic_health::ServingStatus as S;
    assert_eq!(Status::Healthy.serving_status(), S::Serving);
    assert_eq!(Status::Degraded.serving_status(), S::Serving);
    assert_eq!(Status::Unhealthy.serving_status(), S::NotServing);
}
