use std::{error::Error, fmt, sync::Arc, time::Duration};

use super::*;
use crate::error::{BoxError, PolicyError, find, find_in};

#[derive(Debug)]
struct Wrapper(BoxError);
impl fmt::Display for Wrapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("wrapper")
    }
}
impl Error for Wrapper {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.0)
    }
}

fn open(ms: u64) -> CircuitOpen {
    CircuitOpen::new(RejectedBy::Open, Some(Duration::from_millis(ms)))
}

#[test]
fn finds_a_rejection_through_layers_of_wrapping() {
    let bare: BoxError = Box::new(open(1500));
    let via_policy_error: BoxError =
        Box::new(PolicyError::<_, std::io::Error>::Rejected(open(1500)));
    let wrapped: BoxError = Box::new(Wrapper(Box::new(Wrapper(via_policy_error))));
    for err in [bare, wrapped] {
        let r = Rejected::find(&*err).expect("found");
        assert_eq!(r.kind(), RejectionKind::CircuitOpen);
        assert_eq!(r.retry_after(), Some(Duration::from_millis(1500)));
        assert_eq!(r.retry_after_secs(), Some(2));
        assert!(find::<CircuitOpen>(&*err).is_some());
    }
}

#[test]
fn inner_failures_are_not_rejections() {
    let err: BoxError = Box::new(PolicyError::<CircuitOpen, _>::Inner(std::io::Error::other(
        "reset",
    )));
    assert_eq!(Rejected::find(&*err), None);
    // `of` looks at the error itself only.
    let wrapped = Wrapper(Box::new(open(1)));
    assert_eq!(Rejected::of(&wrapped), None);
    assert!(Rejected::find(&wrapped).is_some());
}

#[test]
fn retry_after_rounding() {
    let r = |ms| Rejected::find(&open(ms)).expect("found");
    assert_eq!(r(0).retry_after_secs(), Some(1));
    assert_eq!(r(1000).retry_after_secs(), Some(1));
    assert_eq!(r(1001).retry_after_secs(), Some(2));
    assert_eq!(r(0).retry_after_millis(), Some(0));
    assert_eq!(r(250).retry_after_millis(), Some(250));
    let sub_ms = CircuitOpen::new(RejectedBy::Open, Some(Duration::from_micros(1500)));
    assert_eq!(
        Rejected::find(&sub_ms).and_then(|r| r.retry_after_millis()),
        Some(2)
    );
    // gRPC reads the pushback as an i32: never more.
    let long = CircuitOpen::new(RejectedBy::Open, Some(Duration::from_secs(u64::MAX / 4)));
    assert_eq!(
        Rejected::find(&long).and_then(|r| r.retry_after_millis()),
        Some(i32::MAX as u64)
    );
    assert_eq!(open(1001).retry_after_secs(), Some(2));
}

#[test]
fn unknown_retry_after_stays_unknown() {
    let forced = CircuitOpen::new(RejectedBy::ForcedOpen, None);
    let r = Rejected::find(&forced).expect("found");
    assert_eq!(r.retry_after_secs(), None);
    assert_eq!(r.retry_after_millis(), None);
    assert_eq!(r.message(), "circuit breaker is forced open");
    assert_eq!(r.to_string(), "circuit breaker is forced open");
    assert_eq!(forced.to_string(), r.to_string());
}

#[tokio::test(start_paused = true)]
async fn an_open_until_rejection_counts_down_as_time_passes() {
    let until = crate::clock::Instant::now() + Duration::from_secs(10);
    let open = CircuitOpen::until(RejectedBy::Open, until);
    assert_eq!(open.retry_after(), Some(Duration::from_secs(10)));
    tokio::time::advance(Duration::from_secs(4)).await;
    assert_eq!(open.retry_after(), Some(Duration::from_secs(6)));
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(open.retry_after(), Some(Duration::ZERO));
    assert_eq!(open.retry_after_secs(), Some(1), "never 0 in a header");
}

#[test]
fn a_full_bulkhead_is_recognised_for_every_reason_without_retry_after() {
    for (reason, message) in [
        (FullReason::NoCapacity, "bulkhead is full"),
        (
            FullReason::QueueFull,
            "bulkhead is full and its wait queue is full",
        ),
        (
            FullReason::WaitElapsed,
            "bulkhead is full: no permit within the wait time",
        ),
    ] {
        let full = BulkheadFull::new(reason, Arc::from("bulk"), Duration::from_millis(5));
        let err: BoxError = Box::new(Wrapper(Box::new(
            PolicyError::<_, std::io::Error>::Rejected(full),
        )));
        let r = Rejected::find(&*err).expect("a rejection");
        assert_eq!(r.kind(), RejectionKind::BulkheadFull);
        assert_eq!(r.kind().to_string(), "bulkhead_full");
        assert_eq!(r.message(), message);
        assert_eq!(r.retry_after(), None);
        assert_eq!((r.retry_after_secs(), r.retry_after_millis()), (None, None));
        assert_eq!(r.to_string(), message);
    }
}

#[test]
fn a_bulkhead_rejection_names_its_class_and_is_found_through_a_box() {
    let e = BulkheadFull::new(FullReason::QueueFull, Arc::from("bulk"), Duration::ZERO);
    assert_eq!(
        e.to_string(),
        "bulkhead full for class `bulk` and its wait queue is full"
    );
    let waited = BulkheadFull::new(
        FullReason::WaitElapsed,
        Arc::from("batch"),
        Duration::from_millis(20),
    );
    assert_eq!(
        waited.to_string(),
        "bulkhead full for class `batch`: no permit after waiting 20ms"
    );
    let boxed: BoxError = Box::new(PolicyError::<_, std::io::Error>::Rejected(e));
    let found = find_in::<BulkheadFull>(&*boxed).expect("in the chain");
    assert_eq!(
        (found.reason(), found.class()),
        (FullReason::QueueFull, "bulk")
    );
}

#[test]
fn a_deadline_is_a_timeout_rejection() {
    let err: BoxError = Box::new(Wrapper(Box::new(Elapsed::new())));
    let r = Rejected::find(&*err).expect("a rejection");
    assert_eq!(r.kind(), RejectionKind::Timeout);
    assert_eq!(r.kind().as_str(), "timeout");
    assert_eq!(r.retry_after(), None);
}

#[test]
fn a_rate_limit_or_budget_refusal_is_found_with_its_limit() {
    let info = LimitInfo {
        quota: 100,
        window: Duration::from_secs(60),
        remaining: 0,
        reset: Duration::from_secs(30),
    };
    let limited = RateLimited::new(
        LimitedBy::Rate,
        LimitReason::OverLimit,
        3,
        Some(Duration::from_millis(1800)),
        info,
    );
    let err: BoxError = Box::new(Wrapper(Box::new(
        PolicyError::<_, std::io::Error>::Rejected(limited),
    )));
    let r = Rejected::find(&*err).expect("found");
    assert_eq!(r.kind(), RejectionKind::RateLimited);
    assert_eq!(r.retry_after_secs(), Some(2));
    assert_eq!(r.limit(), Some(info));
    assert_eq!(r.message(), "rate limit exceeded");
    assert_eq!(
        limited.to_string(),
        "rate limit exceeded (cost 3, limit 100 per 60s); retry after 1.8s"
    );

    let never = RateLimited::new(LimitedBy::Budget, LimitReason::CostTooHigh, 900, None, info);
    let r = Rejected::of(&never).unwrap();
    assert_eq!(r.kind(), RejectionKind::BudgetExhausted);
    assert_eq!(r.retry_after(), None, "it never fits: no retry-after");
    assert_eq!(never.message(), "request costs more than the whole budget");
}
