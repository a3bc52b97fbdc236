//! Status changes as `tracing` events and `metrics` gauges. On its own in this test binary:
//! `tracing` caches each call site's interest per process, and a test running beside it with no
//! subscriber would race with the scoped one here.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use rampart_core::testing::{LogBuffer, MetricsRecorder};
use rampart_health::{HealthRegistry, Status};

#[tokio::test]
async fn status_changes_are_events_and_gauges() {
    let buffer = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let b = buffer.clone();
            move || b.clone()
        })
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _tracing = tracing::subscriber::set_default(subscriber);
    let recorder = MetricsRecorder::default();
    let _metrics = metrics::set_default_local_recorder(&recorder);

    let up = Arc::new(AtomicBool::new(true));
    let health = HealthRegistry::builder()
        .name("shop")
        .cache_for(Duration::ZERO)
        .build();
    health.probe("db", Duration::from_secs(1), {
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

    health.check().await;
    assert_eq!(recorder.get("rampart_health_status{name=shop}"), 0);
    assert!(
        buffer.contents().is_empty(),
        "a first healthy check is not news"
    );

    up.store(false, Ordering::SeqCst);
    health.check().await;
    health.check().await; // no change, no event
    assert_eq!(recorder.get("rampart_health_status{name=shop}"), 2);
    assert_eq!(
        recorder.get("rampart_health_component_status{component=db,name=shop}"),
        2
    );

    up.store(true, Ordering::SeqCst);
    assert_eq!(health.check().await.status, Status::Healthy);
    assert_eq!(recorder.get("rampart_health_status{name=shop}"), 0);

    let out = buffer.contents();
    let lines: Vec<_> = out.lines().collect();
    let component_down = lines.iter().filter(|l| {
        l.contains("WARN")
            && l.contains("health component status changed")
            && l.contains("component=\"db\"")
            && l.contains("to=\"unhealthy\"")
            && l.contains("connection refused")
    });
    assert_eq!(component_down.count(), 1, "{out}");
    assert!(
        lines.iter().any(|l| l.contains("WARN")
            && l.contains("health status changed")
            && l.contains("registry=\"shop\"")
            && l.contains("from=\"healthy\"")
            && l.contains("to=\"unhealthy\"")
            && l.contains("db (unhealthy)")),
        "{out}"
    );
    assert!(
        lines.iter().any(|l| l.contains("INFO")
            && l.contains("health status changed")
            && l.contains("from=\"unhealthy\"")
            && l.contains("to=\"healthy\"")),
        "{out}"
    );
}
