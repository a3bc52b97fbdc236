//! The bulkhead's `tracing` events: rejections and resizes. On its own in this test binary:
//! `tracing` caches each call site's interest per process, and a test running beside it with no
//! subscriber would race with the scoped one here.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use rampart_bulkhead::BulkheadLayer;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn rejections_and_resizes_are_tracing_events() {
    let buffer = Buffer::default();
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
    let _busy = tower::ServiceExt::oneshot(svc.clone(), ());
    let mut busy = Box::pin(_busy);
    assert!(futures_poll_once(&mut busy));
    assert!(tower::ServiceExt::oneshot(svc, ()).await.is_err());
    handle.set_capacity(4).unwrap();
    let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
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

/// Polls once; `true` if still pending (the call holds its permit).
fn futures_poll_once<F: std::future::Future + Unpin>(f: &mut F) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(f).poll(&mut cx).is_pending()
}
