//! Stress test of the limits: many tasks on a multi-threaded runtime, three classes, waits,
//! timeouts and random cancellation (of running and of waiting calls). At no moment may more
//! calls be inside the inner service than the limits allow, in total or per class, and when
//! the dust settles no permit and no place in a queue may have leaked.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use http::Request;
use rampart_bulkhead::{BulkheadLayer, ByExtension, FullReason, Priority};
use tower::{Layer, ServiceExt, service_fn};

const CLASSES: [&str; 3] = ["critical", "normal", "bulk"];
const TASKS: usize = 24;
const CALLS_PER_TASK: usize = 400;

struct Gauges {
    total: AtomicUsize,
    max_total: AtomicUsize,
    class: [AtomicUsize; 3],
    max_class: [AtomicUsize; 3],
}

/// Leaves the gauges when the inner call ends, completed or dropped.
struct Inside(Arc<Gauges>, usize);

impl Drop for Inside {
    fn drop(&mut self) {
        self.0.total.fetch_sub(1, Ordering::SeqCst);
        self.0.class[self.1].fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_hold_under_contention_and_cancellation() {
    // critical 3 (borrows), normal 2, bulk 1 (borrows), 2 shared: capacity 8.
    let layer = BulkheadLayer::builder()
        .borrowing_class("critical", 3)
        .class("normal", 2)
        .borrowing_class("bulk", 1)
        .capacity(8)
        .max_wait(Duration::from_millis(5))
        .max_queued(16)
        .layer()
        .unwrap()
        .prioritize(ByExtension);
    let handle = layer.handle();
    let gauges = Arc::new(Gauges {
        total: AtomicUsize::new(0),
        max_total: AtomicUsize::new(0),
        class: Default::default(),
        max_class: Default::default(),
    });
    let svc = layer.layer({
        let gauges = gauges.clone();
        service_fn(move |req: Request<usize>| {
            let class = *req.body() % 3;
            let now = gauges.total.fetch_add(1, Ordering::SeqCst) + 1;
            gauges.max_total.fetch_max(now, Ordering::SeqCst);
            let c = gauges.class[class].fetch_add(1, Ordering::SeqCst) + 1;
            gauges.max_class[class].fetch_max(c, Ordering::SeqCst);
            let inside = Inside(gauges.clone(), class);
            async move {
                for _ in 0..(1 + class) {
                    tokio::task::yield_now().await;
                }
                drop(inside);
                Ok::<_, std::io::Error>(())
            }
        })
    });

    let rejected = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let svc = svc.clone();
            let rejected = rejected.clone();
            tokio::spawn(async move {
                for i in 0..CALLS_PER_TASK {
                    let n = t * 7 + i;
                    let mut req = Request::new(n);
                    req.extensions_mut().insert(Priority::new(CLASSES[n % 3]));
                    let fut = svc.clone().oneshot(req);
                    let result = match n % 7 {
                        // Give up at once: cancels a running call or a waiting one.
                        0 => match tokio::time::timeout(Duration::ZERO, fut).await {
                            Ok(r) => r,
                            Err(_) => continue,
                        },
                        _ => fut.await,
                    };
                    if let Err(e) = result {
                        let full = e.rejection().expect("only rejections fail");
                        assert!(matches!(
                            full.reason(),
                            FullReason::QueueFull | FullReason::WaitElapsed
                        ));
                        rejected.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }

    let max_total = gauges.max_total.load(Ordering::SeqCst);
    let max_class: Vec<_> = gauges
        .max_class
        .iter()
        .map(|m| m.load(Ordering::SeqCst))
        .collect();
    assert!(max_total <= 8, "{max_total} calls in flight, capacity 8");
    assert!(
        max_class[1] <= 2,
        "normal may not borrow: {} > 2",
        max_class[1]
    );
    assert!(
        max_class[2] <= 3,
        "bulk may borrow only the pool and its own: {} > 3",
        max_class[2]
    );
    assert_eq!(
        max_total, 8,
        "the bulkhead was filled: the test exercised the limit"
    );
    assert!(rejected.load(Ordering::Relaxed) > 0, "and overflowed");
    let s = handle.stats();
    assert_eq!(
        (s.active, s.queued),
        (0, 0),
        "no permit or queue place leaked"
    );
    assert_eq!(gauges.total.load(Ordering::SeqCst), 0);
}
