//! The bulkhead's `tracing` events: rejections and resizes. On its own in this test binary:
//! `tracing` caches each call site's interest per process, and a test running beside it with no
//! subscriber would race with the scoped one here.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use rampart_bulkhead::BulkheadLayer;

#[tokio::test]
async fn rejections_and_resizes_are_tracing_events() {
    let buffer = rampart_core::testing::LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let b = buffer.clone();
            move || b.clone()
        })
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let layer = BulkheadLayer::builder()
        .name("db")
        .max_concurrent(1)
        .layer()
        .unwrap();
    let handle = layer.handle();
    let svc = tower::Layer::layer(
        &layer,
        tower::service_fn(|_: ()| std::future::pending::<Result<(), std::io::Error>>()),
    );
    let mut busy = Box::pin(tower::ServiceExt::oneshot(svc.clone(), ()));
    assert!(
        rampart_core::testing::ready(busy.as_mut()).is_none(),
        "holds the permit"
    );
    assert!(tower::ServiceExt::oneshot(svc, ()).await.is_err());
    handle.set_capacity(4).unwrap();
    let out = buffer.contents();
    assert!(
        out.lines().any(|l| l.contains("DEBUG")
            && l.contains("call rejected")
            && l.contains("bulkhead=db")
            && l.contains("reason=\"no_capacity\"")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("INFO") && l.contains("resized") && l.contains("reserved=4")),
        "{out}"
    );
}
