//! Property test: the breaker against a plain, obviously-correct reference model.
//!
//! Random configurations and random sequences of calls (completing at once, held open and
//! completed later, cancelled) and clock moves are run through both; after every step the
//! admission decision, the state, the failure streak, the window and the probes in flight must
//! agree.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use proptest::prelude::*;
use rampart_core::{classify::Outcome, clock::ManualClock};

use super::{Core, Permit, PermitKind};
use crate::{
    config::{CircuitBreakerConfig, ClosePolicy},
    error::RejectedBy,
    events::State,
};

#[derive(Debug, Clone, Copy)]
struct Cfg {
    window: u32,
    minimum: u32,
    rate: u32,
    consecutive: Option<u32>,
    open_ms: u64,
    probes: u32,
    successes: u32,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Call(Outcome),
    Hold,
    Finish(usize, Outcome),
    Cancel(usize),
    Advance(u64),
}

/// What the model says an admission gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    Counted,
    Probe,
    Rejected(RejectedBy, Option<Duration>),
}

struct Model {
    cfg: Cfg,
    now: u64,
    state: State,
    generation: u64,
    window: VecDeque<bool>,
    consecutive: u32,
    open_until: u64,
    in_flight: u32,
    probe_ok: u32,
}

impl Model {
    fn new(cfg: Cfg) -> Self {
        Self {
            cfg,
            now: 0,
            state: State::Closed,
            generation: 0,
            window: VecDeque::new(),
            consecutive: 0,
            open_until: 0,
            in_flight: 0,
            probe_ok: 0,
        }
    }

    fn go(&mut self, to: State) {
        self.state = to;
        self.generation += 1;
        self.consecutive = 0;
        self.in_flight = 0;
        self.probe_ok = 0;
        match to {
            State::Open => self.open_until = self.now + self.cfg.open_ms,
            State::Closed => self.window.clear(),
            State::HalfOpen => {}
        }
    }

    fn admit(&mut self) -> (Admit, u64) {
        if self.state == State::Open {
            if self.now < self.open_until {
                let left = Duration::from_millis(self.open_until - self.now);
                return (Admit::Rejected(RejectedBy::Open, Some(left)), 0);
            }
            self.go(State::HalfOpen);
        }
        match self.state {
            State::Closed => (Admit::Counted, self.generation),
            State::HalfOpen if self.in_flight < self.cfg.probes => {
                self.in_flight += 1;
                (Admit::Probe, self.generation)
            }
            _ => (Admit::Rejected(RejectedBy::HalfOpenFull, None), 0),
        }
    }

    fn finish(&mut self, kind: Admit, generation: u64, outcome: Outcome) {
        if generation != self.generation || outcome == Outcome::Ignored {
            if kind == Admit::Probe && generation == self.generation {
                self.in_flight -= 1;
            }
            return;
        }
        let failure = outcome.is_failure();
        match kind {
            Admit::Probe => {
                self.in_flight -= 1;
                if failure {
                    self.go(State::Open);
                } else {
                    self.probe_ok += 1;
                    if self.probe_ok >= self.cfg.successes {
                        self.go(State::Closed);
                    }
                }
            }
            Admit::Counted => {
                let mut trip = false;
                if let Some(limit) = self.cfg.consecutive {
                    if failure {
                        self.consecutive += 1;
                        trip = self.consecutive >= limit;
                    } else {
                        self.consecutive = 0;
                    }
                }
                if self.window.len() == self.cfg.window as usize {
                    self.window.pop_front();
                }
                self.window.push_back(failure);
                if !trip && failure {
                    let total = self.window.len() as u64;
                    let failures = self.window.iter().filter(|f| **f).count() as u64;
                    trip = total >= u64::from(self.cfg.minimum)
                        && failures * 100 >= u64::from(self.cfg.rate) * total;
                }
                if trip {
                    self.go(State::Open);
                }
            }
            Admit::Rejected(..) => unreachable!("a rejected call is never finished"),
        }
    }

    fn cancel(&mut self, kind: Admit, generation: u64) {
        if kind == Admit::Probe && generation == self.generation && self.state == State::HalfOpen {
            self.in_flight -= 1;
        }
    }
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        3 => Just(Outcome::Success),
        3 => Just(Outcome::TRANSIENT),
        1 => Just(Outcome::Ignored),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => outcome().prop_map(Op::Call),
        2 => Just(Op::Hold),
        2 => (any::<usize>(), outcome()).prop_map(|(i, o)| Op::Finish(i, o)),
        1 => any::<usize>().prop_map(Op::Cancel),
        2 => (0u64..400).prop_map(Op::Advance),
    ]
}

fn cfg() -> impl Strategy<Value = Cfg> {
    (
        1u32..20,
        0u32..20,
        prop::sample::select(vec![25u32, 50, 75, 100]),
    )
        .prop_flat_map(|(window, minimum, rate)| {
            (
                Just(window),
                Just(minimum % window + 1),
                Just(rate),
                prop::option::of(1u32..5),
                1u64..1000,
                1u32..4,
                1u32..4,
            )
        })
        .prop_map(
            |(window, minimum, rate, consecutive, open_ms, probes, successes)| Cfg {
                window,
                minimum,
                rate,
                consecutive,
                open_ms,
                probes,
                successes,
            },
        )
}

fn kind_of(p: &Permit) -> Admit {
    match p.kind {
        PermitKind::Counted => Admit::Counted,
        PermitKind::Probe => Admit::Probe,
        other => panic!("normal mode never gives a {other:?} permit"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_breaker_behaves_like_the_reference_model(cfg in cfg(), ops in prop::collection::vec(op(), 1..150)) {
        let clock = ManualClock::new();
        let mut builder = CircuitBreakerConfig::builder()
            .clock(clock.shared())
            .count_window(cfg.window)
            .minimum_calls(cfg.minimum)
            .failure_rate_threshold(f64::from(cfg.rate))
            .open_duration(Duration::from_millis(cfg.open_ms))
            .half_open_max_probes(cfg.probes)
            .close_policy(ClosePolicy::Successes(cfg.successes));
        if let Some(n) = cfg.consecutive {
            builder = builder.consecutive_failures(n);
        }
        let core = Core::unkeyed(builder.build().unwrap(), Arc::from("model"));
        let mut model = Model::new(cfg);
        let mut held: Vec<(Permit, Admit, u64)> = Vec::new();

        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Call(_) | Op::Hold => {
                    let real = core.acquire(0);
                    let (want, generation) = model.admit();
                    let got = match &real {
                        Ok(p) => kind_of(p),
                        Err(r) => Admit::Rejected(r.rejected_by(), r.retry_after()),
                    };
                    prop_assert_eq!(got, want, "admission at step {} ({:?})", step, op);
                    if let Ok(p) = real {
                        if let Op::Call(o) = op {
                            core.complete(0, &p, o);
                            model.finish(want, generation, o);
                        } else {
                            held.push((p, want, generation));
                        }
                    }
                }
                Op::Finish(i, o) if !held.is_empty() => {
                    let (p, kind, generation) = held.swap_remove(i % held.len());
                    core.complete(0, &p, o);
                    model.finish(kind, generation, o);
                }
                Op::Cancel(i) if !held.is_empty() => {
                    let (p, kind, generation) = held.swap_remove(i % held.len());
                    core.cancel(0, p);
                    model.cancel(kind, generation);
                }
                Op::Finish(..) | Op::Cancel(_) => {}
                Op::Advance(ms) => {
                    clock.advance(Duration::from_millis(ms));
                    model.now += ms;
                }
            }
            let s = core.stats();
            prop_assert_eq!(s.state, model.state, "state after step {} ({:?})", step, op);
            prop_assert_eq!(s.consecutive_failures, model.consecutive, "streak after step {}", step);
            prop_assert_eq!(s.window_calls, model.window.len() as u64, "window after step {}", step);
            prop_assert_eq!(s.probes_in_flight, model.in_flight, "probes after step {}", step);
        }
    }
}
