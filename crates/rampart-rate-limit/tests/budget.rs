//! Cost budgets under paused time: a day's budget that starts over at local midnight, an
//! estimate reserved and settled up or down, alerts once per period, and the refusals.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rampart_core::rejection::{LimitReason, LimitedBy, RateLimited};
use rampart_rate_limit::{
    RateLimitError,
    budget::{Budget, BudgetAlert, BudgetLayer, CostHeader, Period, settle_fn},
    cost_fn,
};
use tower::{Layer, Service, ServiceExt, service_fn};

/// 2026-12-03T23:59:00 in Paris (UTC+1): a minute before local midnight.
fn before_midnight() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_338_740)
}

fn paris_day() -> Period {
    Period::day().utc_offset(Duration::from_secs(3600), false)
}

/// A service whose answer is the actual cost of the call.
fn costs() -> impl Service<u64, Response = u64, Error = std::io::Error, Future: Send> + Clone {
    service_fn(|actual: u64| async move { Ok::<_, std::io::Error>(actual) })
}

fn refusal<E: std::fmt::Debug>(err: RateLimitError<E>) -> RateLimited {
    *err.rejection().expect("a refusal")
}

#[tokio::test(start_paused = true)]
async fn a_days_budget_is_spent_then_starts_over_at_local_midnight() {
    let layer =
        BudgetLayer::new(Budget::new(3, paris_day()).starting_at(before_midnight())).unwrap();
    let svc = layer.layer(costs());
    for _ in 0..3 {
        svc.clone().oneshot(1).await.unwrap();
    }
    let refused = refusal(svc.clone().oneshot(1).await.unwrap_err());
    assert_eq!(refused.limited_by(), LimitedBy::Budget);
    assert_eq!(refused.reason(), LimitReason::OverLimit);
    assert_eq!(
        refused.retry_after(),
        Some(Duration::from_secs(60)),
        "until midnight"
    );
    assert_eq!(refused.info().remaining, 0);
    assert_eq!(layer.handle().stats().rejected, 1);

    tokio::time::advance(Duration::from_secs(60)).await;
    svc.oneshot(1).await.unwrap();
    assert_eq!(layer.handle().stats().spent, 1, "a new day");
}

#[tokio::test(start_paused = true)]
async fn the_estimate_is_reserved_and_settled_to_the_actual_cost() {
    // Estimated at 10; the answer is the real cost.
    let layer = BudgetLayer::new(Budget::new(100, Period::hour()))
        .unwrap()
        .estimate(cost_fn(|_: &u64| 10))
        .settle(settle_fn(|res: Result<&u64, &std::io::Error>, est| {
            res.copied().unwrap_or(est)
        }));
    let handle = layer.handle();
    let svc = layer.layer(costs());
    svc.clone().oneshot(3).await.unwrap();
    assert_eq!(handle.stats().spent, 3, "7 given back");
    svc.clone().oneshot(95).await.unwrap();
    assert_eq!(handle.stats().spent, 98, "85 more spent: the work was done");
    let refused = refusal(svc.clone().oneshot(1).await.unwrap_err());
    assert_eq!(refused.reason(), LimitReason::OverLimit, "98 + 10 > 100");
}

#[tokio::test(start_paused = true)]
async fn a_call_in_flight_holds_its_estimate_and_a_dropped_one_keeps_it_spent() {
    let layer = BudgetLayer::new(Budget::new(10, Period::hour()))
        .unwrap()
        .estimate(cost_fn(|_: &()| 6));
    let handle = layer.handle();
    let svc = layer.layer(service_fn(|_: ()| {
        std::future::pending::<Result<(), std::io::Error>>()
    }));
    let held = svc.clone().oneshot(());
    let mut held = Box::pin(held);
    assert!(futures_poll(&mut held).is_none(), "in flight");
    assert_eq!(handle.stats().spent, 6);
    assert!(
        svc.clone().oneshot(()).await.is_err(),
        "6 + 6 > 10 while it runs"
    );
    drop(held);
    assert_eq!(
        handle.stats().spent,
        6,
        "dropped: the work may have been billed"
    );
}

/// Polls `fut` once.
fn futures_poll<F: std::future::Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::Pin::new(fut).poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

#[tokio::test(start_paused = true)]
async fn thresholds_alert_once_per_period() {
    let alerts = Arc::new(Mutex::new(Vec::<BudgetAlert>::new()));
    let seen = alerts.clone();
    let layer = BudgetLayer::new(
        Budget::new(10, paris_day())
            .starting_at(before_midnight())
            .on_alert(move |a| seen.lock().unwrap().push(*a)),
    )
    .unwrap()
    .estimate(cost_fn(|n: &u64| *n));
    let svc = layer.layer(costs());
    for cost in [5, 3, 1, 1] {
        svc.clone().oneshot(cost).await.unwrap();
    }
    let percents: Vec<u8> = alerts.lock().unwrap().iter().map(|a| a.percent).collect();
    assert_eq!(percents, [80, 100], "80 % at 8, 100 % at 10, each once");
    assert!(svc.clone().oneshot(1).await.is_err());
    assert_eq!(
        alerts.lock().unwrap().len(),
        2,
        "a refusal fires nothing more"
    );

    tokio::time::advance(Duration::from_secs(60)).await;
    svc.oneshot(9).await.unwrap();
    let last = *alerts.lock().unwrap().last().unwrap();
    assert_eq!(
        (last.percent, last.spent),
        (80, 9),
        "a new day, a new alert"
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_over_the_whole_budget_is_refused_for_good() {
    let layer = BudgetLayer::new(Budget::new(10, Period::day()))
        .unwrap()
        .estimate(cost_fn(|n: &u64| *n));
    let refused = refusal(layer.layer(costs()).oneshot(11).await.unwrap_err());
    assert_eq!(refused.reason(), LimitReason::CostTooHigh);
    assert_eq!(refused.retry_after(), None);
}

#[tokio::test(start_paused = true)]
async fn the_actual_cost_can_come_from_a_response_header() {
    let layer = BudgetLayer::new(Budget::new(500, Period::day()))
        .unwrap()
        .estimate(cost_fn(|_: &http::Request<()>| 10))
        .settle(CostHeader::new(http::HeaderName::from_static(
            "x-credits-used",
        )));
    let handle = layer.handle();
    let svc = layer.layer(service_fn(|_req: http::Request<()>| async {
        Ok::<_, std::io::Error>(
            http::Response::builder()
                .header("x-credits-used", "42")
                .body(())
                .unwrap(),
        )
    }));
    svc.oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(handle.stats().spent, 42);
}

#[test]
fn a_bad_budget_names_its_field() {
    let field = |b: Budget| BudgetLayer::new(b).unwrap_err().field();
    assert_eq!(field(Budget::new(0, Period::day())), "total");
    assert_eq!(
        field(Budget::new(5, Period::every(Duration::ZERO))),
        "period"
    );
    assert_eq!(
        field(Budget::new(5, Period::day()).thresholds([0])),
        "thresholds"
    );
    assert_eq!(
        field(Budget::new(5, Period::day()).thresholds([101])),
        "thresholds"
    );
}

#[tokio::test(start_paused = true)]
async fn a_rolling_window_frees_what_was_spent_as_it_ages() {
    let alerts = Arc::new(Mutex::new(Vec::<u8>::new()));
    let seen = alerts.clone();
    // 10 units in any 60 s, sliding in 1 s steps.
    let layer = BudgetLayer::new(
        Budget::new(10, Period::rolling(Duration::from_secs(60)))
            .starting_at(before_midnight())
            .thresholds([80])
            .on_alert(move |a| seen.lock().unwrap().push(a.percent)),
    )
    .unwrap()
    .estimate(cost_fn(|n: &u64| *n));
    let handle = layer.handle();
    let svc = layer.layer(costs());
    svc.clone().oneshot(5).await.unwrap();
    tokio::time::advance(Duration::from_secs(30)).await;
    svc.clone().oneshot(5).await.unwrap();
    assert_eq!(*alerts.lock().unwrap(), [80]);

    // No boundary to wait for: the first 5 leave 60 s after they were spent.
    tokio::time::advance(Duration::from_secs(10)).await;
    let refused = refusal(svc.clone().oneshot(3).await.unwrap_err());
    assert_eq!(refused.retry_after(), Some(Duration::from_secs(20)));
    assert_eq!(
        refused.info().reset,
        Duration::from_secs(50),
        "all back when the last 5 leave"
    );

    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(handle.stats().spent, 5);
    svc.clone().oneshot(3).await.unwrap();
    // Fell under 80 % and rose back: the alert fires again.
    assert_eq!(*alerts.lock().unwrap(), [80, 80]);
    assert!(svc.oneshot(3).await.is_err(), "8 + 3 > 10");
}

#[test]
fn a_rolling_window_under_a_minute_is_refused() {
    let err =
        BudgetLayer::new(Budget::new(5, Period::rolling(Duration::from_secs(30)))).unwrap_err();
    assert_eq!(err.field(), "period");
}
