//! Gateway aggregation against loopback downstreams: one request fanned out to four parts,
//! answered within the overall deadline with what answered and the failed parts marked; a
//! part that keeps failing has its own breaker opened and is then refused without a call.
//!
//! Real time: the slow downstreams sleep for seconds; the deadline (800 ms) cuts them.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use rampart::circuit_breaker::State;
use rampart_examples::gateway::{Gateway, PartConfig, PartFailure};

async fn downstreams() -> (SocketAddr, Arc<AtomicUsize>) {
    rampart_examples::gateway::downstreams().await.unwrap()
}

fn part(name: &'static str, addr: SocketAddr, timeout: Duration) -> PartConfig {
    PartConfig {
        name,
        url: format!("http://{addr}/{name}"),
        timeout,
        max_concurrent: 10,
    }
}

const DEADLINE: Duration = Duration::from_millis(800);

#[tokio::test]
async fn every_part_is_answered_or_marked_within_the_deadline() {
    let (addr, _) = downstreams().await;
    let gateway = Gateway::new(
        vec![
            part("profile", addr, Duration::from_millis(500)),
            part("orders", addr, Duration::from_millis(500)),
            // Its own timeout cuts it first.
            part("stock", addr, Duration::from_millis(200)),
            // Its timeout is longer than the caller's deadline: the deadline cuts it.
            part("recommendations", addr, Duration::from_secs(10)),
        ],
        DEADLINE,
    )
    .unwrap();
    let started = Instant::now();
    let answer = gateway.fetch().await;
    let took = started.elapsed();
    assert_eq!(
        answer.parts["profile"],
        Ok(Bytes::from_static(br#"{"name":"ada"}"#))
    );
    assert_eq!(answer.parts["orders"], Err(PartFailure::Status(500)));
    assert_eq!(answer.parts["stock"], Err(PartFailure::TimedOut));
    assert_eq!(answer.parts["recommendations"], Err(PartFailure::Deadline));
    assert!(answer.is_partial());
    assert!(took >= DEADLINE, "waited for the deadline: {took:?}");
    assert!(
        took < Duration::from_secs(2),
        "answered at the deadline, not when the slow parts finished: {took:?}"
    );

    // Two more answers: the part that timed out three times in a row has its breaker open
    // (a timeout counts); the one the caller's deadline cut counts for nothing.
    for _ in 0..2 {
        gateway.fetch().await;
    }
    assert_eq!(gateway.breaker("stock").unwrap().state(), State::Open);
    assert_eq!(
        gateway.breaker("recommendations").unwrap().state(),
        State::Closed
    );
    let answer = gateway.fetch().await;
    assert_eq!(answer.parts["stock"], Err(PartFailure::CircuitOpen));
}

#[tokio::test]
async fn a_failing_part_opens_its_own_breaker_and_is_refused_without_a_call() {
    let (addr, orders) = downstreams().await;
    let gateway = Gateway::new(
        vec![
            part("profile", addr, Duration::from_millis(500)),
            part("orders", addr, Duration::from_millis(500)),
        ],
        DEADLINE,
    )
    .unwrap();
    for _ in 0..3 {
        let answer = gateway.fetch().await;
        assert_eq!(answer.parts["orders"], Err(PartFailure::Status(500)));
    }
    assert_eq!(gateway.breaker("orders").unwrap().state(), State::Open);
    assert_eq!(gateway.breaker("profile").unwrap().state(), State::Closed);

    let answer = gateway.fetch().await;
    assert_eq!(answer.parts["orders"], Err(PartFailure::CircuitOpen));
    assert!(answer.parts["profile"].is_ok(), "the other part goes on");
    assert_eq!(orders.load(Ordering::SeqCst), 3, "refused without a call");
}

#[tokio::test]
async fn the_http_answer_marks_the_failed_parts_and_is_503_when_nothing_answered() {
    let (addr, _) = downstreams().await;
    let gateway = Gateway::new(
        vec![
            part("profile", addr, Duration::from_millis(500)),
            part("orders", addr, Duration::from_millis(500)),
        ],
        DEADLINE,
    )
    .unwrap();
    let res = gateway.answer().await;
    assert_eq!(res.status(), 200);
    let json: serde_json::Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(json["partial"], true);
    assert_eq!(json["parts"]["profile"]["ok"]["name"], "ada");
    assert_eq!(json["parts"]["orders"]["failed"], "status");
    assert_eq!(json["parts"]["orders"]["detail"], "answered 500");

    let down = Gateway::new(
        vec![part("orders", addr, Duration::from_millis(500))],
        DEADLINE,
    )
    .unwrap();
    assert_eq!(down.answer().await.status(), 503);
}
