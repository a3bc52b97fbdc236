//! Budgets kept in a store across restarts (paused time; a "restart" is a new layer on the
//! same store, its wall clock where the old one's had got to).

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rampart_core::{BoxFuture, rejection::LimitReason};
use rampart_rate_limit::budget::{
    Budget, BudgetLayer, BudgetSnapshot, BudgetStore, BudgetStoreError, BudgetStoreErrorKind,
    MemoryBudgetStore, Period,
};
use tower::{Layer, Service, ServiceExt, service_fn};

/// 2026-12-04T10:00:00Z.
fn ten_am() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_378_400)
}

/// Where the paused clock has got to since `t0` (the wall clock of a budget made at `wall`).
fn now_from(wall: SystemTime, t0: tokio::time::Instant) -> SystemTime {
    wall + t0.elapsed()
}

fn calls() -> impl Service<u64, Response = (), Error = std::io::Error, Future: Send> + Clone {
    service_fn(|_: u64| async { Ok::<_, std::io::Error>(()) })
}

async fn spend<S>(svc: &S, n: u64)
where
    S: Service<u64, Response = ()> + Clone,
    S::Error: std::fmt::Debug,
{
    for _ in 0..n {
        svc.clone().oneshot(1).await.unwrap();
    }
}

fn cost(n: u64) -> rampart_rate_limit::CostFn<impl Fn(&u64) -> u64 + Clone> {
    rampart_rate_limit::cost_fn(move |_: &u64| n)
}

#[tokio::test(start_paused = true)]
async fn a_restarted_budget_takes_up_what_was_spent_today() {
    let store = MemoryBudgetStore::new();
    let t0 = tokio::time::Instant::now();
    let budget = |at| {
        Budget::new(10, Period::day())
            .name("llm")
            .store(store.clone())
            .starting_at(at)
    };

    let first = BudgetLayer::connect(budget(ten_am())).await.unwrap();
    spend(&first.layer(calls()), 7).await;
    // Saved by the background task within `save_every` (1 s), with no flush.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    drop(first);

    let second = BudgetLayer::connect(budget(now_from(ten_am(), t0)))
        .await
        .unwrap();
    assert_eq!(
        second.handle().stats().spent,
        7,
        "the first life's spending"
    );
    let svc = second.layer(calls());
    spend(&svc, 3).await;
    let refused = svc.clone().oneshot(1).await.unwrap_err();
    assert_eq!(
        refused.rejection().unwrap().reason(),
        LimitReason::OverLimit,
        "10 spent over both lives"
    );
}

#[tokio::test(start_paused = true)]
async fn flush_saves_the_last_interval_and_a_new_day_starts_fresh() {
    let store = MemoryBudgetStore::new();
    let budget = |at| {
        Budget::new(10, Period::day())
            .name("llm")
            .store(store.clone())
            .starting_at(at)
    };
    let first = BudgetLayer::connect(budget(ten_am())).await.unwrap();
    spend(&first.layer(calls()), 4).await;
    first.handle().flush().await.unwrap();
    assert_eq!(store.load("llm").await.unwrap().unwrap().spent, 4);

    let same_day = BudgetLayer::connect(budget(ten_am() + Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(same_day.handle().stats().spent, 4);
    let next_day = BudgetLayer::connect(budget(ten_am() + Duration::from_secs(86_400)))
        .await
        .unwrap();
    assert_eq!(
        next_day.handle().stats().spent,
        0,
        "yesterday's spending stays behind"
    );

    // Another period configuration (hourly) does not take up the daily snapshot.
    let hourly = BudgetLayer::connect(
        Budget::new(10, Period::hour())
            .name("llm")
            .store(store.clone())
            .starting_at(ten_am()),
    )
    .await
    .unwrap();
    assert_eq!(hourly.handle().stats().spent, 0);
}

#[tokio::test(start_paused = true)]
async fn a_rolling_window_keeps_only_the_slots_still_in_it() {
    let store = MemoryBudgetStore::new();
    // An hour, sliding by the minute.
    let budget = |at| {
        Budget::new(100, Period::rolling(Duration::from_secs(3600)))
            .name("rolling")
            .store(store.clone())
            .starting_at(at)
    };
    let t0 = tokio::time::Instant::now();
    let first = BudgetLayer::connect(budget(ten_am())).await.unwrap();
    let svc = first.layer(calls());
    svc.clone().oneshot(1).await.unwrap(); // at 10:00
    tokio::time::advance(Duration::from_secs(30 * 60)).await;
    first
        .clone()
        .estimate(cost(5))
        .layer(calls())
        .oneshot(1)
        .await
        .unwrap(); // at 10:30
    first.handle().flush().await.unwrap();
    drop((svc, first));

    // Restarted at 10:45: both still in the window.
    tokio::time::advance(Duration::from_secs(15 * 60)).await;
    let again = BudgetLayer::connect(budget(now_from(ten_am(), t0)))
        .await
        .unwrap();
    assert_eq!(again.handle().stats().spent, 6);
    // Restarted at 11:15: the 10:00 unit has left the window, the 10:30 ones have not.
    let later = BudgetLayer::connect(budget(
        now_from(ten_am(), t0) + Duration::from_secs(30 * 60),
    ))
    .await
    .unwrap();
    assert_eq!(later.handle().stats().spent, 5);
}

/// A store that fails while `down` is set.
#[derive(Debug, Clone, Default)]
struct Flaky {
    inner: MemoryBudgetStore,
    down: Arc<AtomicBool>,
}

impl Flaky {
    fn check(&self) -> Result<(), BudgetStoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(
                BudgetStoreError::new("flaky", BudgetStoreErrorKind::Unavailable)
                    .with_source("connection refused"),
            )
        } else {
            Ok(())
        }
    }
}

impl BudgetStore for Flaky {
    fn load<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<BudgetSnapshot>, BudgetStoreError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.load(name).await
        })
    }

    fn save<'a>(
        &'a self,
        name: &'a str,
        snapshot: &'a BudgetSnapshot,
    ) -> BoxFuture<'a, Result<(), BudgetStoreError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.save(name, snapshot).await
        })
    }

    fn describe(&self) -> String {
        "flaky".into()
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_that_fails_is_an_error_at_connect_and_a_retried_save_after() {
    let store = Flaky::default();
    let budget = || {
        Budget::new(10, Period::day())
            .name("b")
            .store(store.clone())
            .starting_at(ten_am())
    };

    store.down.store(true, Ordering::SeqCst);
    let err = BudgetLayer::connect(budget()).await.unwrap_err();
    assert_eq!(err.kind(), BudgetStoreErrorKind::Unavailable);
    assert!(
        err.to_string().contains("budget store flaky: unavailable"),
        "{err}"
    );

    store.down.store(false, Ordering::SeqCst);
    let layer = BudgetLayer::connect(budget()).await.unwrap();
    store.down.store(true, Ordering::SeqCst);
    spend(&layer.layer(calls()), 3).await;
    assert!(layer.handle().flush().await.is_err());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        layer.handle().stats().spent,
        3,
        "deciding in memory meanwhile"
    );
    assert_eq!(store.inner.load("b").await.unwrap(), None);

    // Back: the next round saves what the failed ones could not.
    store.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(store.inner.load("b").await.unwrap().unwrap().spent, 3);
}

#[tokio::test]
async fn a_corrupt_snapshot_and_a_store_given_to_new_are_errors_naming_them() {
    let store = MemoryBudgetStore::new();
    let err = BudgetLayer::new(Budget::new(10, Period::day()).store(store.clone())).unwrap_err();
    assert_eq!(err.field(), "store");

    let err = BudgetLayer::connect(Budget::new(0, Period::day()).store(store.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), BudgetStoreErrorKind::Config);
    assert!(err.to_string().contains("total"), "{err}");

    let err = BudgetLayer::connect(
        Budget::new(10, Period::day())
            .store(store)
            .save_every(Duration::ZERO),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("save_every"), "{err}");
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_sqlite_file_keeps_the_spending_across_processes() {
    use rampart_rate_limit::budget::SqliteBudgetStore;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("budgets.db");
    let at = SystemTime::now();
    let budget = |store| {
        Budget::new(10, Period::day())
            .name("llm")
            .store(store)
            .starting_at(at)
    };
    {
        let first = BudgetLayer::connect(budget(SqliteBudgetStore::open(&path).unwrap()))
            .await
            .unwrap();
        spend(&first.layer(calls()), 6).await;
        first.handle().flush().await.unwrap();
    }
    // A new store on the same file: what a restarted process opens.
    let second = BudgetLayer::connect(budget(SqliteBudgetStore::open(&path).unwrap()))
        .await
        .unwrap();
    assert_eq!(second.handle().stats().spent, 6);

    // What is in the file and is not a snapshot is refused, naming the file.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE rampart_budgets SET snapshot = 'garbage'", [])
        .unwrap();
    let err = BudgetLayer::connect(budget(SqliteBudgetStore::open(&path).unwrap()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), BudgetStoreErrorKind::Corrupt);
    assert!(err.to_string().contains("budgets.db"), "{err}");
}
