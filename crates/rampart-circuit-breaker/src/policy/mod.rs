//! The breaker's decisions: plain synchronous code over atomics and short locks, with an
//! injected [`Clock`](rampart_core::clock::Clock). No tower types live here.
//!
//! # Cost model
//!
//! - **Admission** in the closed state is one atomic load of the packed state word.
//! - **Recording** goes to the calling thread's *shard* (one cache line per CPU): lifetime
//!   counters are relaxed atomic adds, and a time-window bucket update holds the shard's own lock
//!   for a few instructions. Nothing on the success path writes memory that another CPU's shard
//!   writes, so threads don't contend.
//! - Only a **failure or slow call** reads the whole window (summing the shards) to judge the
//!   rates, and only a **trip** takes the state-machine lock.
//! - The count window is one exact ring behind a lock shared by all threads: exact, but
//!   contended under many threads (see [`SlidingWindow::Count`]).
//! - Half-open admission and probe completion take the state-machine lock: probes are few, and
//!   the lock is what makes the probe limit strict.
//!
//! # Generations
//!
//! Every transition bumps a generation. A call remembers the generation it was admitted in;
//! an outcome from an older generation (a call admitted while closed that finishes after the
//! breaker opened) is not recorded into the new state's window, and a stale probe can't free a
//! slot of a newer half-open period.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

use rampart_core::sync::lock;
use rampart_core::{
    classify::{Outcome, Record},
    clock::{Alarm, Instant, SharedClock},
};
use tokio::sync::broadcast;

use crate::{
    config::{CircuitBreakerConfig, ClosePolicy, SlidingWindow},
    error::{CircuitOpen, RejectedBy},
    events::{Reason, State, Transition},
};

mod guard;
mod observe;
mod peers;
mod state;
mod timer;
mod window;

use self::{observe::*, state::*, timer::*, window::*};

pub(crate) use self::peers::{GATE_LOCAL, GATE_OWNER, GATE_PEER, LocalView, PeerLink};
pub use self::{guard::CallGuard, observe::Stats, state::Mode};
pub(crate) use self::{
    guard::{Lane, Lanes, lanes},
    observe::MetricLabels,
    window::{Padded, current_shard},
};

/// What kind of admission a call got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PermitKind {
    /// A normal call: recorded and judged.
    Counted,
    /// A half-open probe: holds a probe slot until it completes or is dropped.
    Probe,
    /// Forced closed: let through, only lifetime stats.
    Uncounted,
    /// Metrics-only mode, a call the breaker would have rejected.
    Shadow,
}

/// The ticket of an admitted call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Permit {
    generation: u64,
    /// When the call started, in nanoseconds since the breaker's epoch, plus one; 0 when slow
    /// calls are not judged. (A plain `u64` keeps the permit, which every call future carries,
    /// small.)
    start: u64,
    pub(crate) kind: PermitKind,
}

/// The shared state of one breaker.
pub(crate) struct Core {
    pub(crate) name: Arc<str>,
    cfg: CircuitBreakerConfig,
    clock: SharedClock,
    epoch: Instant,
    bucket_nanos: u64,
    state: AtomicU64,
    open_until: AtomicU64,
    /// The clock is tokio's: timers keep time with it, so hot paths can rely on them.
    timed: bool,
    /// The current time-window bucket, valid until `tick_alarm` goes off: see [`TickWord`].
    tick: AtomicU64,
    tick_alarm: Alarm,
    /// The generation (of an open state) whose end `open_alarm` will report in `elapsed_gen`.
    armed_gen: AtomicU64,
    elapsed_gen: AtomicU64,
    open_alarm: Alarm,
    /// Held while `armed_gen` and `open_alarm` are set together; holds the newest generation
    /// armed, so that an older transition's arming, late, never replaces a newer one's.
    arming: Mutex<Option<u64>>,
    consecutive: AtomicU32,
    shards: Box<[Padded<Shard>]>,
    ring: Option<Mutex<CountRing>>,
    machine: Mutex<Machine>,
    events: broadcast::Sender<Transition>,
    /// Woken by every mode change (which has no [`Transition`]).
    mode_changed: Arc<tokio::sync::Notify>,
    metrics: Metrics,
    labels: MetricLabels,
    /// Set once the breaker joins a `SharedBreakers`.
    peers: std::sync::OnceLock<Arc<PeerLink>>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name)
            .field("state", &unpack(self.state.load(Ordering::Relaxed)).0)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// A breaker that is not one of many per key: `name` in logs, events and metrics.
    pub(crate) fn unkeyed(cfg: CircuitBreakerConfig, name: Arc<str>) -> Arc<Self> {
        let labels = MetricLabels {
            breaker: name.clone(),
            key: None,
        };
        Self::new(cfg, name, labels)
    }

    /// A breaker called `name` in logs and events, whose metric series carry `labels`.
    pub(crate) fn new(
        cfg: CircuitBreakerConfig,
        name: Arc<str>,
        labels: MetricLabels,
    ) -> Arc<Self> {
        let clock = cfg.clock.clone();
        let now = clock.now();
        let (bucket_nanos, ring, buckets) = match cfg.window {
            SlidingWindow::Count { size } => (
                0,
                Some(Mutex::new(CountRing {
                    slots: vec![0; size as usize],
                    next: 0,
                    len: 0,
                    counts: Counts::default(),
                })),
                0,
            ),
            SlidingWindow::Time { duration, buckets } => {
                let per = (duration.as_nanos() / u128::from(buckets)).max(1);
                (
                    u64::try_from(per).unwrap_or(u64::MAX),
                    None,
                    buckets as usize,
                )
            }
        };
        let shards = (0..shard_count())
            .map(|_| {
                Padded(Shard {
                    epochs: (0..buckets).map(|_| AtomicU64::new(u64::MAX)).collect(),
                    buckets: (0..buckets).map(|_| Bucket::default()).collect(),
                    cursor: AtomicU64::new(u64::MAX),
                    ..Shard::default()
                })
            })
            .collect();
        let metrics = Metrics::new(&labels);
        metrics.state.set(State::Closed.as_gauge());
        let (events, _) = broadcast::channel(64);
        Arc::new(Self {
            name,
            clock,
            epoch: now,
            bucket_nanos,
            state: AtomicU64::new(pack(State::Closed, Mode::Normal, 0)),
            open_until: AtomicU64::new(0),
            timed: cfg.clock.is_tokio_time(),
            tick: AtomicU64::new(0),
            tick_alarm: Alarm::new(),
            armed_gen: AtomicU64::new(u64::MAX),
            elapsed_gen: AtomicU64::new(u64::MAX),
            open_alarm: Alarm::new(),
            arming: Mutex::new(None),
            consecutive: AtomicU32::new(0),
            shards,
            ring,
            machine: Mutex::new(Machine {
                state: State::Closed,
                mode: Mode::Normal,
                generation: 0,
                entered: now,
                reopens: 0,
                probes_in_flight: 0,
                probes_admitted: 0,
                probe_ok: 0,
                probe_bad: 0,
                probe_ignored: 0,
                reason: Reason::Manual,
            }),
            events,
            mode_changed: Arc::default(),
            metrics,
            labels,
            peers: std::sync::OnceLock::new(),
            cfg,
        })
    }

    #[inline]
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    #[inline]
    fn start(&self) -> u64 {
        match self.cfg.slow_call_threshold {
            Some(_) => self.nanos(self.clock.now()).saturating_add(1),
            None => 0,
        }
    }

    /// Decides whether a call may go ahead.
    #[inline]
    pub(crate) fn acquire(self: &Arc<Self>, shard: usize) -> Result<Permit, CircuitOpen> {
        let (state, mode, generation) = unpack(self.state.load(Ordering::Acquire));
        match mode {
            Mode::ForcedOpen => {
                return self.reject(
                    shard,
                    Mode::Normal,
                    CircuitOpen::new(RejectedBy::ForcedOpen, None),
                );
            }
            Mode::ForcedClosed => {
                return Ok(Permit {
                    generation,
                    kind: PermitKind::Uncounted,
                    start: 0,
                });
            }
            Mode::Disabled => {
                return Ok(Permit {
                    generation,
                    kind: PermitKind::Counted,
                    start: self.start(),
                });
            }
            Mode::Normal | Mode::MetricsOnly => {}
        }
        match state {
            State::Closed => Ok(Permit {
                generation,
                kind: PermitKind::Counted,
                start: self.start(),
            }),
            State::Open => {
                // A timer reports the end of the open time: no clock read to reject. It is
                // never trusted for long: one rejection in 256 on a shard reads the clock.
                if self.armed_gen.load(Ordering::Acquire) == generation
                    && self.shard(shard).rejected.load(Ordering::Relaxed) & 0xff != 0xff
                {
                    if self.elapsed_gen.load(Ordering::Acquire) != generation {
                        let until = self.epoch
                            + Duration::from_nanos(self.open_until.load(Ordering::Acquire));
                        return self.reject(
                            shard,
                            mode,
                            CircuitOpen::until(RejectedBy::Open, until),
                        );
                    }
                    return self.probe_unless_held(shard, mode);
                }
                let now = self.clock.now();
                let n = self.nanos(now);
                let until = self.open_until.load(Ordering::Acquire);
                if n >= until {
                    self.probe_unless_held(shard, mode)
                } else {
                    let left = Duration::from_nanos(until - n);
                    self.reject(shard, mode, CircuitOpen::new(RejectedBy::Open, Some(left)))
                }
            }
            State::HalfOpen => self.probe(self.clock.now(), shard),
        }
    }

    #[cold]
    fn reject(
        &self,
        shard: usize,
        mode: Mode,
        rejection: CircuitOpen,
    ) -> Result<Permit, CircuitOpen> {
        self.shard(shard).rejected.fetch_add(1, Ordering::Relaxed);
        self.metrics.rejected.increment(1);
        if mode == Mode::MetricsOnly {
            return Ok(Permit {
                generation: 0,
                kind: PermitKind::Shadow,
                start: 0,
            });
        }
        tracing::trace!(target: "rampart::circuit_breaker", breaker = %self.name, by = ?rejection.rejected_by(), "call rejected");
        Err(rejection)
    }

    /// Half-open admission (and the lazy open → half-open move), under the machine lock.
    pub(super) fn probe(
        self: &Arc<Self>,
        now: Instant,
        shard: usize,
    ) -> Result<Permit, CircuitOpen> {
        let mut events = Vec::new();
        let result = {
            let mut m = lock(&self.machine);
            if m.state == State::Open {
                let until = self.open_until.load(Ordering::Acquire);
                let n = self.nanos(now);
                if n < until {
                    let mode = m.mode;
                    drop(m);
                    let left = Duration::from_nanos(until - n);
                    return self.reject(
                        shard,
                        mode,
                        CircuitOpen::new(RejectedBy::Open, Some(left)),
                    );
                }
                // Another replica probes for the cluster: stay open until it reports.
                if let Some(recheck) = self.probe_held_elsewhere() {
                    let mode = m.mode;
                    drop(m);
                    return self.reject(
                        shard,
                        mode,
                        CircuitOpen::new(RejectedBy::Open, Some(recheck)),
                    );
                }
                events.push(self.transition(&mut m, State::HalfOpen, Reason::OpenTimeElapsed, now));
            }
            match m.state {
                State::Closed => Ok(Permit {
                    generation: m.generation,
                    kind: PermitKind::Counted,
                    start: self.start(),
                }),
                State::Open => Err(None),
                State::HalfOpen => {
                    let expired = self
                        .cfg
                        .half_open_max_wait
                        .is_some_and(|max| now.saturating_duration_since(m.entered) >= max);
                    if !expired {
                        self.admit_probe(&mut m)
                    } else if m.probe_ok == 0 && m.probe_bad == 0 && m.probe_ignored > 0 {
                        // Every probe of the period was ignored (rejected below, cancelled):
                        // nothing says the dependency is down, and staying would cap it at
                        // the probe limit for good. Close, and let the window judge.
                        let t =
                            self.transition(&mut m, State::Closed, Reason::HalfOpenNoVerdict, now);
                        events.push(t);
                        Ok(Permit {
                            generation: m.generation,
                            kind: PermitKind::Counted,
                            start: self.start(),
                        })
                    } else {
                        let t = self.transition(&mut m, State::Open, Reason::HalfOpenTimeout, now);
                        let wait = t.open_for;
                        events.push(t);
                        Err(wait)
                    }
                }
            }
        };
        for t in events {
            self.emit(t);
        }
        match result {
            Ok(p) => Ok(p),
            Err(Some(wait)) => {
                let mode = unpack(self.state.load(Ordering::Acquire)).1;
                self.reject(shard, mode, CircuitOpen::new(RejectedBy::Open, Some(wait)))
            }
            Err(None) => {
                let mode = unpack(self.state.load(Ordering::Acquire)).1;
                self.reject(
                    shard,
                    mode,
                    CircuitOpen::new(RejectedBy::HalfOpenFull, None),
                )
            }
        }
    }

    fn admit_probe(&self, m: &mut Machine) -> Result<Permit, Option<Duration>> {
        let budget_left = match self.cfg.close_policy {
            ClosePolicy::SuccessRate { probes, .. } => m.probes_admitted < probes,
            ClosePolicy::Successes(_) => true,
        };
        if m.probes_in_flight < self.cfg.half_open_max_probes && budget_left {
            m.probes_in_flight += 1;
            m.probes_admitted += 1;
            Ok(Permit {
                generation: m.generation,
                kind: PermitKind::Probe,
                start: self.start(),
            })
        } else {
            Err(None)
        }
    }

    /// Records the outcome of an admitted call.
    #[inline]
    pub(crate) fn complete(self: &Arc<Self>, shard: usize, permit: &Permit, outcome: Outcome) {
        let now = if permit.start != 0 || permit.kind == PermitKind::Probe {
            Some(self.clock.now())
        } else {
            None
        };
        let slow = match (permit.start, self.cfg.slow_call_threshold, now) {
            (start, Some(threshold), Some(now)) if start != 0 => {
                let took = self.nanos(now).saturating_sub(start - 1);
                u128::from(took) > threshold.as_nanos()
            }
            _ => false,
        };
        match outcome {
            Outcome::Success => self.metrics.success.increment(1),
            Outcome::Failure(_) => self.metrics.failure.increment(1),
            Outcome::Ignored => self.metrics.ignored.increment(1),
        }
        if slow {
            self.metrics.slow.increment(1);
        }
        let current = unpack(self.state.load(Ordering::Acquire)).2 == permit.generation;
        let bucketed = permit.kind == PermitKind::Counted
            && outcome != Outcome::Ignored
            && self.ring.is_none()
            && current;
        if !bucketed {
            // Lifetime stats of a call that the time buckets won't count.
            let s = self.shard(shard);
            match outcome {
                Outcome::Success => s.successes.fetch_add(1, Ordering::Relaxed),
                Outcome::Failure(_) => s.failures.fetch_add(1, Ordering::Relaxed),
                Outcome::Ignored => s.ignored.fetch_add(1, Ordering::Relaxed),
            };
            if slow {
                s.slow.fetch_add(1, Ordering::Relaxed);
            }
        }
        match permit.kind {
            PermitKind::Uncounted | PermitKind::Shadow => return,
            PermitKind::Probe => {
                let now = now.unwrap_or_else(|| self.clock.now());
                return self.complete_probe(*permit, outcome, slow, now);
            }
            PermitKind::Counted => {}
        }
        if outcome == Outcome::Ignored {
            return;
        }
        if !current {
            // Admitted before the last transition: it says nothing about the current period.
            return;
        }
        let failure = outcome.is_failure();
        let mut trip = None;
        if let Some(limit) = self.cfg.consecutive_failures {
            if failure {
                let n = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
                if n >= limit {
                    trip = Some(Reason::ConsecutiveFailures);
                }
            } else if self.consecutive.load(Ordering::Relaxed) != 0 {
                // Only written after a failure, so a healthy breaker never writes this line.
                self.consecutive.store(0, Ordering::Relaxed);
            }
        }
        if !self.record_window(shard, permit.generation, failure, slow, now) {
            return;
        }
        if trip.is_none() && (failure || slow) {
            trip = self.judge(now);
        }
        if let Some(reason) = trip {
            let (state, mode, generation) = unpack(self.state.load(Ordering::Acquire));
            if state == State::Closed && generation == permit.generation && mode != Mode::Disabled {
                self.trip(
                    permit.generation,
                    reason,
                    now.unwrap_or_else(|| self.clock.now()),
                );
            }
        }
    }

    #[cold]
    fn trip(self: &Arc<Self>, generation: u64, reason: Reason, now: Instant) {
        let t = {
            let mut m = lock(&self.machine);
            if m.generation != generation || m.state != State::Closed || m.mode == Mode::Disabled {
                return;
            }
            self.transition(&mut m, State::Open, reason, now)
        };
        self.emit(t);
    }

    fn complete_probe(
        self: &Arc<Self>,
        permit: Permit,
        outcome: Outcome,
        slow: bool,
        now: Instant,
    ) {
        let t = {
            let mut m = lock(&self.machine);
            if m.generation != permit.generation || m.state != State::HalfOpen {
                return;
            }
            m.probes_in_flight = m.probes_in_flight.saturating_sub(1);
            if outcome == Outcome::Ignored {
                m.probes_admitted = m.probes_admitted.saturating_sub(1);
                m.probe_ignored = m.probe_ignored.saturating_add(1);
                return;
            }
            let good = outcome.is_success() && !slow;
            if good {
                m.probe_ok += 1;
            } else {
                m.probe_bad += 1;
            }
            let to = match self.cfg.close_policy {
                ClosePolicy::Successes(n) => {
                    if !good {
                        Some((State::Open, Reason::ProbeFailed))
                    } else if m.probe_ok >= n {
                        Some((State::Closed, Reason::ProbesSucceeded))
                    } else {
                        None
                    }
                }
                ClosePolicy::SuccessRate { probes, .. } => {
                    let done = m.probe_ok + m.probe_bad;
                    if done >= probes {
                        let ppm = self.close_rate_ppm();
                        if u64::from(m.probe_ok) * 1_000_000 >= ppm * u64::from(done) {
                            Some((State::Closed, Reason::ProbesSucceeded))
                        } else {
                            Some((State::Open, Reason::ProbeFailed))
                        }
                    } else {
                        None
                    }
                }
            };
            match to {
                Some((to, reason)) => self.transition(&mut m, to, reason, now),
                None => return,
            }
        };
        self.emit(t);
    }

    fn close_rate_ppm(&self) -> u64 {
        match self.cfg.close_policy {
            ClosePolicy::SuccessRate {
                min_success_rate, ..
            } => (min_success_rate * 10_000.0).round() as u64,
            ClosePolicy::Successes(_) => 1_000_000,
        }
    }
}

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;
