//! Two drain workers on one store.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
};

use bytes::Bytes;
use rampart_core::readiness::AlwaysReady;

use super::record;
use crate::{DeadLetter, DeadLetterStore, Drain, Redrive, State};

/// Two [`Drain`] workers, started together on one store holding 30 parked records, send each
/// record exactly once and leave every one `delivered` with one redrive counted: what lets a
/// service run a worker in each of its replicas. The store must start empty; it is left
/// holding the 30 delivered records.
pub async fn concurrent_drains(store: Arc<dyn DeadLetterStore>) {
    const N: u32 = 30;
    let name = store.describe();
    assert_eq!(
        store.stats().await.unwrap().total,
        0,
        "{name}: needs an empty store"
    );
    let records: Vec<DeadLetter> = (0..N).map(record).collect();
    store.append_batch(&records).await.unwrap();

    let sends: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let total = Arc::new(AtomicU32::new(0));
    let all_sent = Arc::new(tokio::sync::Notify::new());
    let all_sent_now = all_sent.notified();
    let upstream = {
        let (sends, total, all_sent) = (sends.clone(), total.clone(), all_sent.clone());
        tower::service_fn(move |req: http::Request<Bytes>| {
            let (sends, total, all_sent) = (sends.clone(), total.clone(), all_sent.clone());
            async move {
                *sends
                    .lock()
                    .unwrap()
                    .entry(req.uri().to_string())
                    .or_insert(0) += 1;
                // Let the other worker run in between.
                tokio::task::yield_now().await;
                if total.fetch_add(1, Ordering::AcqRel) + 1 == N {
                    all_sent.notify_waiters();
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
            }
        })
    };
    let worker = |name: &str| {
        let redrive = Redrive::builder(store.clone(), upstream.clone())
            .concurrency(4)
            .build()
            .unwrap();
        Drain::builder(redrive, AlwaysReady)
            .name(name)
            .build()
            .unwrap()
            .spawn()
    };
    let (a, b) = (worker("a"), worker("b"));
    tokio::time::timeout(std::time::Duration::from_secs(60), all_sent_now)
        .await
        .unwrap_or_else(|_| panic!("{name}: the workers sent {total:?} of {N} records"));
    // A stop lets the sends in flight finish and be recorded.
    a.stop();
    b.stop();
    a.stopped().await;
    b.stopped().await;

    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sa.errors + sb.errors, 0, "{name}: {sa:?} {sb:?}");
    assert_eq!(
        sa.delivered + sb.delivered,
        u64::from(N),
        "{name}: each record delivered by one of the two: {sa:?} {sb:?}"
    );
    let sends = sends.lock().unwrap().clone();
    assert_eq!(sends.len(), N as usize, "{name}: every record sent");
    assert!(
        sends.values().all(|&n| n == 1),
        "{name}: every record sent exactly once: {sends:?}"
    );
    for r in &records {
        let now = store.get(r.id).await.unwrap().unwrap();
        assert_eq!(
            (now.state, now.redrive_count),
            (State::Delivered, 1),
            "{name}: {}",
            r.id
        );
    }
}
