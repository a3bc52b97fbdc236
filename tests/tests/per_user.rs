//! Per-user isolation (one breaker per `x-user`) and a batch where bad items are parked, not
//! thrown: the reference pipelines of `rampart_examples::per_user`, against a real loopback
//! upstream.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::sync::Arc;

use rampart::circuit_breaker::State;
use rampart_dead_letter::{DeadLetterStore, SqliteStore, State as RecordState};
use rampart_examples::per_user;

#[tokio::test]
async fn one_users_failures_open_only_her_breaker() {
    let (addr, received) = per_user::upstream(&["mallory"], &[]).await.unwrap();
    let report = per_user::isolate(addr, &["alice", "bob", "mallory"], 20)
        .await
        .unwrap();
    for user in ["alice", "bob"] {
        let r = &report[user];
        assert_eq!((r.ok, r.failed, r.rejected), (20, 0, 0), "{user}: {r:?}");
        assert_eq!(r.breaker, Some(State::Closed), "{user}");
    }
    let m = &report["mallory"];
    assert_eq!((m.ok, m.failed, m.rejected), (0, 3, 17), "{m:?}");
    assert_eq!(m.breaker, Some(State::Open));
    let seen = received.lock().unwrap().clone();
    assert_eq!(seen["mallory"], 3, "her open breaker sent nothing more");
    assert_eq!((seen["alice"], seen["bob"]), (20, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_item_is_parked_and_the_batch_goes_on() {
    let (addr, received) = per_user::upstream(&[], &[7, 13]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn DeadLetterStore> =
        Arc::new(SqliteStore::open(dir.path().join("dlq.db")).unwrap());
    let report = per_user::batch(addr, store.clone(), 0..20).await.unwrap();
    assert_eq!(report.done.len(), 18);
    assert!(!report.done.contains(&7) && !report.done.contains(&13));
    assert_eq!(
        report.parked.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [7, 13]
    );
    assert!(report.failed.is_empty());
    for (n, id) in &report.parked {
        let r = store.get(*id).await.unwrap().unwrap();
        assert_eq!(r.state, RecordState::Pending);
        assert!(
            r.target.uri.ends_with(&format!("/items/{n}")),
            "{}",
            r.target.uri
        );
        assert_eq!(
            r.idempotency_key.as_deref(),
            Some(format!("batch-7/item-{n}").as_str())
        );
    }
    assert_eq!(received.lock().unwrap().len(), 20, "every item was tried");
}
