//! Unit tests of the policy core, driven by hand with a [`ManualClock`]: no runtime, no sleeps.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use rampart_core::{classify::Outcome, clock::ManualClock};

use super::{Core, Mode, Permit, PermitKind};
use crate::{
    config::{CircuitBreakerConfig, CircuitBreakerConfigBuilder, ClosePolicy, OpenDuration},
    error::{CircuitOpen, RejectedBy},
    events::{Reason, State, Transition},
};

const OK: Outcome = Outcome::Success;
const FAIL: Outcome = Outcome::TRANSIENT;
const IGNORED: Outcome = Outcome::Ignored;

/// A breaker on a manual clock, plus the transitions it reported.
struct Harness {
    core: Arc<Core>,
    clock: ManualClock,
    seen: Arc<Mutex<Vec<Transition>>>,
}

impl Harness {
    fn new(builder: CircuitBreakerConfigBuilder) -> Self {
        let clock = ManualClock::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let cfg = builder
            .clock(clock.shared())
            .on_transition(move |t| s.lock().unwrap().push(t.clone()))
            .build()
            .expect("valid test config");
        Self {
            core: Core::unkeyed(cfg.clone(), Arc::from(cfg.name())),
            clock,
            seen,
        }
    }

    fn admit(&self) -> Result<Permit, CircuitOpen> {
        self.core.acquire(0)
    }

    fn finish(&self, permit: Permit, outcome: Outcome) {
        self.core.complete(0, &permit, outcome);
    }

    /// One call that completes at once.
    fn call(&self, outcome: Outcome) -> Result<(), CircuitOpen> {
        let p = self.admit()?;
        self.finish(p, outcome);
        Ok(())
    }

    /// A call that takes `took` on the clock.
    fn call_taking(&self, took: Duration, outcome: Outcome) -> Result<(), CircuitOpen> {
        let p = self.admit()?;
        self.clock.advance(took);
        self.finish(p, outcome);
        Ok(())
    }

    fn calls(&self, n: usize, outcome: Outcome) {
        for _ in 0..n {
            self.call(outcome).expect("admitted");
        }
    }

    fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    fn state(&self) -> State {
        self.core.state()
    }

    fn reasons(&self) -> Vec<(State, State, Reason)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|t| (t.from, t.to, t.reason))
            .collect()
    }

    /// Trips a closed breaker, or re-opens a half-open one with a failed probe.
    fn trip_or_reopen(&self) {
        if self.state() == State::HalfOpen {
            self.call(FAIL).expect("a probe");
            assert_eq!(self.state(), State::Open);
        } else {
            self.trip();
        }
    }

    /// Trips the breaker with consecutive failures (the config must allow it).
    fn trip(&self) {
        while self.state() == State::Closed {
            self.call(FAIL).expect("closed admits");
        }
        assert_eq!(self.state(), State::Open);
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn count(size: u32, min: u32) -> CircuitBreakerConfigBuilder {
    CircuitBreakerConfig::builder()
        .count_window(size)
        .minimum_calls(min)
        .failure_rate_threshold(50.0)
        .open_duration(secs(30))
}

#[test]
fn failure_rate_trips_only_once_the_minimum_calls_are_in_the_window() {
    let h = Harness::new(count(20, 10));
    h.calls(9, FAIL);
    assert_eq!(h.state(), State::Closed, "9 calls < minimum 10: no verdict");
    h.call(FAIL).unwrap();
    assert_eq!(h.state(), State::Open);
    assert_eq!(
        h.reasons(),
        [(State::Closed, State::Open, Reason::FailureRate)]
    );
}

#[test]
fn failure_rate_below_threshold_keeps_the_breaker_closed() {
    let h = Harness::new(count(10, 10));
    for _ in 0..20 {
        // 40 % failures, forever.
        h.calls(3, OK);
        h.calls(2, FAIL);
    }
    assert_eq!(h.state(), State::Closed);
    let s = h.core.stats();
    assert_eq!(
        s.window_calls, 10,
        "the count window holds the last 10 calls"
    );
    assert!((s.failure_rate - 40.0).abs() < 1e-9, "{}", s.failure_rate);
    assert_eq!((s.successes, s.failures), (60, 40));
}

#[test]
fn count_window_forgets_calls_older_than_its_size() {
    let h = Harness::new(count(10, 10));
    h.calls(4, FAIL); // these fall out of the window …
    h.calls(10, OK); // … once 10 newer calls arrive
    h.calls(4, FAIL);
    assert_eq!(h.state(), State::Closed, "4 of the last 10 failed: 40 %");
    h.call(FAIL).unwrap();
    assert_eq!(h.state(), State::Open, "5 of the last 10 failed: 50 %");
}

#[test]
fn time_window_drops_buckets_as_time_moves_on() {
    let h = Harness::new(
        CircuitBreakerConfig::builder()
            .time_window(secs(10), 10)
            .minimum_calls(10)
            .failure_rate_threshold(50.0),
    );
    h.calls(9, FAIL);
    h.advance(secs(11)); // all nine are out of the window now
    h.calls(9, OK);
    h.call(FAIL).unwrap();
    assert_eq!(h.state(), State::Closed, "1 failure in 10 calls");
    assert_eq!(h.core.stats().window_calls, 10);

    // Half the window later, add failures: the successes are still in the window.
    h.advance(secs(5));
    h.calls(7, FAIL);
    assert_eq!(h.state(), State::Closed, "8 of 17 calls: under 50 %");
    h.call(FAIL).unwrap();
    assert_eq!(h.state(), State::Open, "9 of 18 calls: 50 %");
}

#[test]
fn time_window_rolls_bucket_by_bucket() {
    let h = Harness::new(
        CircuitBreakerConfig::builder()
            .time_window(secs(10), 10)
            .minimum_calls(1),
    );
    h.calls(5, OK); // bucket 0
    h.advance(secs(5));
    h.calls(5, OK); // bucket 5
    assert_eq!(h.core.stats().window_calls, 10);
    h.advance(ms(5_500)); // t = 10.5 s: bucket 0 has expired, bucket 5 has not
    assert_eq!(h.core.stats().window_calls, 5);
    h.advance(secs(5)); // t = 15.5 s: everything has expired
    assert_eq!(h.core.stats().window_calls, 0);
}

#[test]
fn slow_call_rate_trips_even_when_every_call_succeeds() {
    let h = Harness::new(count(10, 4).no_failure_rate().slow_calls(ms(100), 50.0));
    h.call_taking(ms(10), OK).unwrap();
    h.call_taking(ms(10), OK).unwrap();
    h.call_taking(ms(500), OK).unwrap();
    assert_eq!(h.state(), State::Closed, "below the minimum of 4 calls");
    h.call_taking(ms(101), OK).unwrap();
    assert_eq!(h.state(), State::Open, "2 slow of 4");
    assert_eq!(h.reasons()[0].2, Reason::SlowCallRate);
    assert_eq!(h.core.stats().slow_calls, 2);
}

#[test]
fn a_call_at_the_slow_threshold_is_not_slow() {
    let h = Harness::new(count(10, 1).no_failure_rate().slow_calls(ms(100), 50.0));
    h.call_taking(ms(100), OK).unwrap();
    assert_eq!(h.core.stats().slow_calls, 0);
    assert_eq!(h.state(), State::Closed);
}

#[test]
fn consecutive_failures_trip_before_the_minimum_calls() {
    let h = Harness::new(count(100, 100).consecutive_failures(3));
    h.calls(2, FAIL);
    h.call(OK).unwrap(); // a success resets the streak
    h.calls(2, FAIL);
    h.call(IGNORED).unwrap(); // an ignored call neither resets nor extends it
    assert_eq!(h.state(), State::Closed);
    assert_eq!(h.core.stats().consecutive_failures, 2);
    h.call(FAIL).unwrap();
    assert_eq!(h.state(), State::Open);
    assert_eq!(h.reasons()[0].2, Reason::ConsecutiveFailures);
}

#[test]
fn policies_combine_whichever_fires_first_trips() {
    // A failure rate that would need 10 calls, and 3 failures in a row.
    let h = Harness::new(count(10, 10).consecutive_failures(3));
    h.calls(3, FAIL);
    assert_eq!(h.reasons()[0].2, Reason::ConsecutiveFailures);

    // Alternating failures never make 3 in a row, but reach 50 % over 10 calls.
    let h = Harness::new(count(10, 10).consecutive_failures(3));
    for _ in 0..5 {
        h.call(OK).unwrap();
        h.call(FAIL).unwrap();
    }
    assert_eq!(h.reasons()[0].2, Reason::FailureRate);
}

#[test]
fn ignored_outcomes_count_neither_way() {
    let h = Harness::new(count(10, 4));
    h.calls(100, IGNORED);
    h.calls(3, FAIL);
    assert_eq!(h.state(), State::Closed, "ignored calls fill no window");
    let s = h.core.stats();
    assert_eq!((s.ignored, s.window_calls, s.calls), (100, 3, 103));
}

#[test]
fn open_breaker_rejects_with_the_time_left_then_lets_a_probe_through() {
    let h = Harness::new(count(10, 1).failure_rate_threshold(100.0));
    h.trip();
    h.advance(secs(10));
    let r = h.call(OK).expect_err("open rejects");
    assert_eq!(r.rejected_by(), RejectedBy::Open);
    assert_eq!(r.retry_after(), Some(secs(20)));
    assert_eq!(h.core.stats().open_remaining, Some(secs(20)));
    assert_eq!(h.core.stats().rejections, 1);

    h.advance(secs(20));
    assert_eq!(h.state(), State::Open, "the move to half-open is lazy");
    let p = h.admit().expect("the open time is over: a probe");
    assert_eq!(p.kind, PermitKind::Probe);
    assert_eq!(h.state(), State::HalfOpen);
}

#[test]
fn half_open_admits_at_most_the_configured_probes() {
    let h = Harness::new(
        count(10, 1)
            .failure_rate_threshold(100.0)
            .half_open_max_probes(2)
            .close_policy(ClosePolicy::Successes(3)),
    );
    h.trip();
    h.advance(secs(30));
    let a = h.admit().unwrap();
    let b = h.admit().unwrap();
    let full = h.admit().expect_err("a third concurrent probe is refused");
    assert_eq!(full.rejected_by(), RejectedBy::HalfOpenFull);
    assert_eq!(full.retry_after(), None);
    assert_eq!(h.core.stats().probes_in_flight, 2);

    h.finish(a, OK); // completing a probe frees its slot
    let c = h.admit().expect("a slot is free again");
    h.core.cancel(0, b); // so does cancelling one (its future or body was dropped)
    let d = h.admit().expect("the cancelled probe's slot is free");
    assert!(h.admit().is_err());
    h.finish(c, OK);
    h.finish(d, OK);
    assert_eq!(h.state(), State::Closed, "3 successful probes close it");
}

#[test]
fn successful_probes_close_and_clear_the_window() {
    let h = Harness::new(count(10, 2).failure_rate_threshold(50.0));
    h.calls(2, FAIL);
    h.advance(secs(30));
    h.call(OK).unwrap();
    assert_eq!(h.state(), State::HalfOpen);
    h.call(OK).unwrap();
    assert_eq!(h.state(), State::Closed);
    assert_eq!(
        h.core.stats().window_calls,
        0,
        "a closed breaker starts afresh"
    );
    h.call(FAIL).unwrap();
    assert_eq!(
        h.state(),
        State::Closed,
        "the old failures are gone: 1 call is below the minimum of 2"
    );
}

#[test]
fn a_failed_probe_reopens_with_a_growing_open_time() {
    let h = Harness::new(
        count(10, 1)
            .failure_rate_threshold(100.0)
            .open_duration_policy(OpenDuration::Exponential {
                base: secs(1),
                multiplier: 2.0,
                max: secs(5),
                jitter: 0.0,
            }),
    );
    h.trip();
    let mut open_times = vec![h.core.stats().open_remaining.unwrap()];
    for _ in 0..4 {
        h.advance(open_times.last().copied().unwrap());
        h.call(FAIL).expect("a probe");
        assert_eq!(h.state(), State::Open);
        open_times.push(h.core.stats().open_remaining.unwrap());
    }
    assert_eq!(open_times, [secs(1), secs(2), secs(4), secs(5), secs(5)]);

    // Closing resets the growth: the next trip is back to the base.
    h.advance(secs(5));
    h.calls(2, OK);
    assert_eq!(h.state(), State::Closed);
    h.trip();
    assert_eq!(h.core.stats().open_remaining, Some(secs(1)));
}

#[test]
fn success_rate_close_policy_judges_a_fixed_number_of_probes() {
    let builder = || {
        count(10, 1)
            .failure_rate_threshold(100.0)
            .half_open_max_probes(5)
            .close_policy(ClosePolicy::SuccessRate {
                probes: 4,
                min_success_rate: 75.0,
            })
    };
    let h = Harness::new(builder());
    h.trip();
    h.advance(secs(30));
    let probes: Vec<_> = (0..4).map(|_| h.admit().unwrap()).collect();
    assert!(
        h.admit().is_err(),
        "only 4 probes per half-open period, though 5 may be concurrent"
    );
    let mut probes = probes.into_iter();
    h.finish(probes.next().unwrap(), FAIL);
    assert_eq!(h.state(), State::HalfOpen, "one failure is not the verdict");
    for p in probes {
        h.finish(p, OK);
    }
    assert_eq!(h.state(), State::Closed, "3 of 4 = 75 %");

    let h = Harness::new(builder());
    h.trip();
    h.advance(secs(30));
    h.calls(2, OK);
    h.calls(2, FAIL);
    assert_eq!(h.state(), State::Open, "2 of 4 = 50 % < 75 %");
    assert_eq!(h.reasons().last().unwrap().2, Reason::ProbeFailed);
}

#[test]
fn ignored_probes_give_their_place_back() {
    let h = Harness::new(count(10, 1).failure_rate_threshold(100.0).close_policy(
        ClosePolicy::SuccessRate {
            probes: 2,
            min_success_rate: 100.0,
        },
    ));
    h.trip();
    h.advance(secs(30));
    h.calls(5, IGNORED);
    assert_eq!(h.state(), State::HalfOpen, "ignored probes judge nothing");
    h.calls(2, OK);
    assert_eq!(h.state(), State::Closed);
}

#[test]
fn half_open_too_long_reopens() {
    let h = Harness::new(
        count(10, 1)
            .failure_rate_threshold(100.0)
            .half_open_max_wait(secs(5)),
    );
    h.trip();
    h.advance(secs(30));
    let stuck = h.admit().unwrap(); // a probe that never answers
    h.advance(secs(5));
    let r = h.admit().expect_err("half-open for 5 s: re-open");
    assert_eq!(r.rejected_by(), RejectedBy::Open);
    assert_eq!(r.retry_after(), Some(secs(30)));
    assert_eq!(h.state(), State::Open);
    assert_eq!(h.reasons().last().unwrap().2, Reason::HalfOpenTimeout);
    h.finish(stuck, OK); // the late answer belongs to an old period: no effect
    assert_eq!(h.state(), State::Open);
}

#[test]
fn a_probe_that_never_answers_frees_a_default_breaker_after_the_default_bound() {
    // Defaults but the trip policy: one probe, half_open_max_wait 60 s.
    let h = Harness::new(count(10, 1).failure_rate_threshold(100.0));
    h.trip();
    h.advance(secs(30));
    let _hung = h.admit().expect("the probe"); // never answers
    h.advance(secs(59));
    let r = h.admit().expect_err("its slot is taken");
    assert_eq!(r.rejected_by(), RejectedBy::HalfOpenFull);
    h.advance(secs(1));
    let r = h.admit().expect_err("half-open for 60 s: re-open");
    assert_eq!(r.rejected_by(), RejectedBy::Open);
    assert_eq!(h.reasons().last().unwrap().2, Reason::HalfOpenTimeout);
    // A new half-open period, with a fresh probe slot.
    h.advance(secs(30));
    h.call(OK).expect("a new probe is admitted");
    h.call(OK).expect("a second probe");
    assert_eq!(h.state(), State::Closed);
}

#[test]
fn an_unbounded_growing_open_time_with_jitter_trips_and_reopens_without_a_panic() {
    let h = Harness::new(
        count(10, 1)
            .failure_rate_threshold(100.0)
            .open_duration_policy(crate::OpenDuration::Exponential {
                base: Duration::MAX / 2,
                multiplier: 4.0,
                max: Duration::MAX,
                jitter: 0.5,
            }),
    );
    // Jitter is random: enough re-opens that both sides of the spread are drawn.
    for _ in 0..64 {
        h.trip_or_reopen();
        let r = h.admit().expect_err("open");
        assert_eq!(r.rejected_by(), RejectedBy::Open);
        h.core.transition_to(State::HalfOpen);
    }
    assert_eq!(h.state(), State::HalfOpen);
}

#[test]
fn a_half_open_period_of_ignored_probes_closes_instead_of_capping_calls_for_good() {
    let h = Harness::new(count(10, 1).failure_rate_threshold(100.0));
    h.trip();
    h.advance(secs(30));
    // Every probe is rejected below the breaker (say, by a bulkhead): ignored.
    for _ in 0..20 {
        h.call(IGNORED).expect("one probe at a time");
        h.advance(secs(3));
    }
    // The next call finds 60 s gone without a verdict.
    h.call(OK).expect("admitted");
    assert_eq!(h.state(), State::Closed, "60 s without a verdict");
    assert_eq!(h.reasons().last().unwrap().2, Reason::HalfOpenNoVerdict);
    // Closed: no probe limit any more.
    let a = h.admit().unwrap();
    let b = h.admit().unwrap();
    h.finish(a, OK);
    h.finish(b, OK);
}

#[test]
fn calls_admitted_before_a_transition_do_not_count_after_it() {
    let h = Harness::new(count(10, 2).consecutive_failures(2));
    let slow_ok = h.admit().unwrap();
    let slow_fail = h.admit().unwrap();
    h.calls(2, FAIL);
    assert_eq!(h.state(), State::Open);
    h.advance(secs(30));
    h.calls(2, OK); // probes close it
    assert_eq!(h.state(), State::Closed);
    // The two calls from the first closed period finish now.
    h.finish(slow_fail, FAIL);
    h.finish(slow_ok, OK);
    let s = h.core.stats();
    assert_eq!(s.window_calls, 0, "stale outcomes stay out of the window");
    assert_eq!(s.consecutive_failures, 0, "and out of the failure streak");
    assert_eq!(s.calls, 6, "but they are in the lifetime stats");
}

#[test]
fn forced_open_rejects_everything_until_resumed() {
    let h = Harness::new(count(10, 10));
    h.core.set_mode(Mode::ForcedOpen);
    let r = h.call(OK).expect_err("forced open");
    assert_eq!(r.rejected_by(), RejectedBy::ForcedOpen);
    assert_eq!(r.retry_after(), None);
    assert_eq!(h.state(), State::Closed, "the state machine is untouched");
    h.core.set_mode(Mode::Normal);
    h.call(OK).expect("normal again");
}

#[test]
fn forced_closed_lets_everything_through_and_judges_nothing() {
    let h = Harness::new(count(10, 1));
    h.trip();
    h.core.set_mode(Mode::ForcedClosed);
    h.calls(20, FAIL);
    let s = h.core.stats();
    assert_eq!(s.failures, 21, "lifetime stats still count");
    assert_eq!(s.rejections, 0);
    assert_eq!(h.reasons().len(), 1, "no transition while forced closed");
}

#[test]
fn disabled_counts_outcomes_but_never_trips() {
    let h = Harness::new(count(10, 1).consecutive_failures(1));
    h.core.set_mode(Mode::Disabled);
    h.calls(20, FAIL);
    assert_eq!(h.state(), State::Closed);
    let s = h.core.stats();
    assert_eq!((s.window_calls, s.failures), (10, 20));
    assert!((s.failure_rate - 100.0).abs() < 1e-9);
    h.core.set_mode(Mode::Normal);
    h.call(FAIL).unwrap();
    assert_eq!(h.state(), State::Open, "resumed: the next failure trips");
}

#[test]
fn metrics_only_runs_the_state_machine_but_never_rejects() {
    let h = Harness::new(count(10, 1).failure_rate_threshold(100.0));
    h.core.set_mode(Mode::MetricsOnly);
    h.call(FAIL).unwrap();
    assert_eq!(h.state(), State::Open, "it trips as usual");
    for _ in 0..5 {
        h.call(OK).expect("but lets calls through");
    }
    let s = h.core.stats();
    assert_eq!(s.rejections, 5, "counted as would-be rejections");
    assert_eq!(h.state(), State::Open, "shadowed calls don't probe");
    h.advance(secs(30));
    h.calls(2, OK);
    assert_eq!(
        h.state(),
        State::Closed,
        "and it probes and closes as usual"
    );
}

#[test]
fn reset_closes_clears_and_forgets_growth() {
    let h = Harness::new(
        count(10, 1)
            .failure_rate_threshold(100.0)
            .open_duration_policy(OpenDuration::Exponential {
                base: secs(1),
                multiplier: 10.0,
                max: secs(100),
                jitter: 0.0,
            }),
    );
    h.trip();
    h.advance(secs(1));
    h.call(FAIL).unwrap(); // failed probe: 10 s now
    h.core.set_mode(Mode::ForcedOpen);
    h.core.reset();
    assert_eq!((h.state(), h.core.mode()), (State::Closed, Mode::Normal));
    assert_eq!(h.core.stats().window_calls, 0);
    h.trip();
    assert_eq!(h.core.stats().open_remaining, Some(secs(1)));
    assert_eq!(
        h.reasons().iter().filter(|r| r.2 == Reason::Manual).count(),
        1
    );
}

#[test]
fn manual_transition_to_open_then_recovers_by_itself() {
    let h = Harness::new(count(10, 10));
    h.core.transition_to(State::Open);
    assert!(h.call(OK).is_err());
    h.advance(secs(30));
    h.calls(2, OK);
    assert_eq!(h.state(), State::Closed);
    assert_eq!(
        h.reasons(),
        [
            (State::Closed, State::Open, Reason::Manual),
            (State::Open, State::HalfOpen, Reason::OpenTimeElapsed),
            (State::HalfOpen, State::Closed, Reason::ProbesSucceeded),
        ]
    );
}

#[test]
fn stats_report_time_in_state_and_rates() {
    let h = Harness::new(count(10, 10));
    h.calls(3, OK);
    h.calls(1, FAIL);
    h.advance(secs(7));
    let s = h.core.stats();
    assert_eq!(s.state, State::Closed);
    assert_eq!(s.time_in_state, secs(7));
    assert!((s.failure_rate - 25.0).abs() < 1e-9);
    assert_eq!(s.open_remaining, None);
}

#[test]
fn subscribers_see_every_transition_in_order() {
    let h = Harness::new(count(10, 1).failure_rate_threshold(100.0));
    let mut rx = h.core.subscribe();
    h.trip();
    h.advance(secs(30));
    h.calls(2, OK);
    let got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|t| (t.from, t.to))
        .collect();
    assert_eq!(
        got,
        [
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_timer_moves_an_idle_breaker_to_half_open() {
    let cfg = CircuitBreakerConfig::builder()
        .count_window(10)
        .minimum_calls(1)
        .open_duration(secs(30))
        .half_open_on_timer(true)
        .build()
        .unwrap();
    let core = Core::unkeyed(cfg, Arc::from("timer"));
    let mut rx = core.subscribe();
    let p = core.acquire(0).unwrap();
    core.complete(0, &p, FAIL);
    assert_eq!(core.state(), State::Open);
    tokio::time::sleep(secs(29)).await;
    assert_eq!(core.state(), State::Open);
    tokio::time::sleep(secs(2)).await;
    assert_eq!(core.state(), State::HalfOpen, "no call was needed");
    assert_eq!(rx.recv().await.unwrap().to, State::Open);
    assert_eq!(rx.recv().await.unwrap().reason, Reason::OpenTimeElapsed);
}

#[test]
fn without_the_timer_an_idle_breaker_stays_open() {
    let h = Harness::new(count(10, 1));
    h.trip();
    h.advance(secs(300));
    assert_eq!(h.state(), State::Open);
    assert_eq!(h.core.stats().open_remaining, Some(Duration::ZERO));
}
