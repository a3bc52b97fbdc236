//! The `RetryLayer` over services that fail on demand, under paused time: the waits are
//! checked to the millisecond, not slept.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use rampart_core::classify::{Outcome, classify_fn};
use rampart_retry::{
    RetryLayer,
    backoff::{Backoff, Jitter},
    budget::RetryBudget,
    policy::GiveUp,
};
use tokio::time::Instant;
use tower::{Layer, ServiceExt, service_fn};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn no_jitter() -> Backoff {
    Backoff::builder().jitter(Jitter::None).build().unwrap()
}

/// A service failing its first `fails` calls, recording when each call came.
fn flaky(
    fails: u32,
) -> (
    impl tower::Service<u32, Response = u32, Error = std::io::Error, Future: Send> + Clone,
    Arc<Mutex<Vec<Instant>>>,
) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let n = Arc::new(AtomicU32::new(0));
    let svc = service_fn({
        let calls = calls.clone();
        move |req: u32| {
            calls.lock().unwrap().push(Instant::now());
            let i = n.fetch_add(1, Ordering::SeqCst);
            async move {
                if i < fails {
                    Err(std::io::Error::other(format!("failure {i}")))
                } else {
                    Ok(req * 2)
                }
            }
        }
    });
    (svc, calls)
}

fn gaps(calls: &Mutex<Vec<Instant>>) -> Vec<Duration> {
    let calls = calls.lock().unwrap();
    calls.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_after_the_backoff() {
    let layer = RetryLayer::builder()
        .max_attempts(4)
        .backoff(no_jitter())
        .layer()
        .unwrap();
    let (svc, calls) = flaky(2);
    let started = Instant::now();
    let out = layer.layer(svc).oneshot(21).await.unwrap();
    assert_eq!(out, 42);
    assert_eq!(gaps(&calls), [secs(1), secs(2)], "waited 1 s, then 2 s");
    assert_eq!(started.elapsed(), secs(3));
}

#[tokio::test(start_paused = true)]
async fn giving_up_reports_the_attempts_the_reason_and_the_last_error() {
    let layer = RetryLayer::builder()
        .max_attempts(3)
        .backoff(no_jitter())
        .layer()
        .unwrap();
    let (svc, calls) = flaky(u32::MAX);
    let err = layer.layer(svc).oneshot(1).await.unwrap_err();
    assert_eq!(err.attempts(), 3);
    assert_eq!(err.reason(), GiveUp::AttemptsExhausted);
    assert_eq!(err.last().to_string(), "failure 2");
    assert_eq!(
        err.to_string(),
        "gave up after 3 attempts (every allowed attempt was made): failure 2"
    );
    assert_eq!(calls.lock().unwrap().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn fatal_failures_are_not_retried() {
    let layer = RetryLayer::builder()
        .backoff(no_jitter())
        .layer()
        .unwrap()
        .classifier(classify_fn(|r: Result<&u32, &std::io::Error>| match r {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::FATAL,
        }));
    let (svc, calls) = flaky(1);
    let err = layer.layer(svc).oneshot(1).await.unwrap_err();
    assert_eq!((err.attempts(), err.reason()), (1, GiveUp::Fatal));
    assert_eq!(calls.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn no_retry_waits_past_the_deadline() {
    let layer = RetryLayer::builder()
        .max_attempts(10)
        .backoff(no_jitter())
        .deadline(Duration::from_millis(2500))
        .layer()
        .unwrap();
    let (svc, calls) = flaky(u32::MAX);
    let started = Instant::now();
    let err = layer.layer(svc).oneshot(1).await.unwrap_err();
    assert_eq!(
        (err.attempts(), err.reason()),
        (2, GiveUp::DeadlineWouldPass)
    );
    assert_eq!(
        started.elapsed(),
        secs(1),
        "gave up at once instead of waiting 2 s more"
    );
    assert_eq!(calls.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_stops_retries_across_clones() {
    let budget = RetryBudget::builder()
        .ratio(0.5)
        .min_per_sec(0)
        .build()
        .unwrap();
    let layer = RetryLayer::builder()
        .max_attempts(5)
        .backoff(no_jitter())
        .budget(budget.clone())
        .layer()
        .unwrap();
    let (svc, calls) = flaky(u32::MAX);
    let svc = layer.layer(svc);
    // Each request deposits half a retry. The first finds half a retry: none.
    let err = svc.clone().oneshot(1).await.unwrap_err();
    assert_eq!((err.attempts(), err.reason()), (1, GiveUp::BudgetExhausted));
    // The second brings it to one: one retry, then the budget is spent.
    let err = svc.clone().oneshot(2).await.unwrap_err();
    assert_eq!((err.attempts(), err.reason()), (2, GiveUp::BudgetExhausted));
    assert_eq!(calls.lock().unwrap().len(), 3);
    assert_eq!(budget.available(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_hook_changes_each_attempt_from_the_original_request() {
    let layer = RetryLayer::builder()
        .max_attempts(3)
        .backoff(no_jitter())
        .layer()
        .unwrap()
        .on_attempt(rampart_retry::hook::on_attempt(|req: &mut u32, n: u32| {
            *req += 1000 * n;
        }));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let svc = layer.layer(service_fn({
        let seen = seen.clone();
        move |req: u32| {
            seen.lock().unwrap().push(req);
            async { Err::<u32, _>(std::io::Error::other("down")) }
        }
    }));
    let _ = svc.oneshot(7).await;
    assert_eq!(
        *seen.lock().unwrap(),
        [1007, 2007, 3007],
        "no change piles up"
    );
}

#[test]
fn metrics_count_retries_and_give_ups_by_reason() {
    let store = rampart_core::testing::MetricsRecorder::capture(async {
        let layer = RetryLayer::builder()
            .name("inventory")
            .max_attempts(3)
            .backoff(no_jitter())
            .layer()
            .unwrap();
        let (svc, _) = flaky(u32::MAX);
        let _ = layer.layer(svc).oneshot(1).await;
        // An unnamed layer is `default`.
        let (svc, _) = flaky(u32::MAX);
        let unnamed = RetryLayer::builder()
            .max_attempts(2)
            .backoff(no_jitter())
            .layer()
            .unwrap();
        let _ = unnamed.layer(svc).oneshot(1).await;
    });
    assert_eq!(store.get("rampart_retry_retries_total{name=inventory}"), 2);
    assert_eq!(
        store.get("rampart_retry_give_ups_total{name=inventory,reason=attempts_exhausted}"),
        1
    );
    assert_eq!(store.get("rampart_retry_retries_total{name=default}"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_attempt_is_cancelled_at_its_timeout_and_retried() {
    let layer = RetryLayer::builder()
        .max_attempts(3)
        .backoff(no_jitter())
        .attempt_timeout(Duration::from_millis(500))
        .layer()
        .unwrap();
    let n = Arc::new(AtomicU32::new(0));
    let svc = layer.layer(service_fn({
        let n = n.clone();
        move |req: u32| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            async move {
                if i == 0 {
                    std::future::pending::<()>().await; // hangs
                }
                Ok::<_, std::io::Error>(req)
            }
        }
    }));
    let started = Instant::now();
    assert_eq!(svc.oneshot(5).await.unwrap(), 5);
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(1500),
        "0.5 s, then the 1 s backoff"
    );
    assert_eq!(n.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn giving_up_after_timeouts_says_so() {
    let layer = RetryLayer::builder()
        .max_attempts(2)
        .backoff(no_jitter())
        .attempt_timeout(Duration::from_millis(200))
        .layer()
        .unwrap();
    let svc = layer.layer(service_fn(|_: u32| async {
        std::future::pending::<Result<u32, std::io::Error>>().await
    }));
    let err = svc.oneshot(1).await.unwrap_err();
    assert_eq!(
        (err.attempts(), err.reason()),
        (2, GiveUp::AttemptsExhausted)
    );
    assert!(matches!(
        err.last(),
        rampart_retry::LastError::TimedOut(d) if *d == Duration::from_millis(200)
    ));
    assert_eq!(
        err.to_string(),
        "gave up after 2 attempts (every allowed attempt was made): the attempt timed out after 200ms"
    );
}
