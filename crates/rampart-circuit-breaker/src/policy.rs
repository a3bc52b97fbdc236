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
        Arc, Mutex, MutexGuard, OnceLock,
        atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

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

/// How the breaker is being operated, set through its handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The state machine decides.
    Normal,
    /// Every call is rejected.
    ForcedOpen,
    /// Every call is let through and nothing is recorded.
    ForcedClosed,
    /// Every call is let through; outcomes are still counted (stats, window) but never trip.
    Disabled,
    /// Shadow mode: the state machine runs (transitions, events, metrics) but never rejects;
    /// calls it would have rejected are counted as rejections and let through.
    MetricsOnly,
}

impl Mode {
    const fn to_bits(self) -> u64 {
        match self {
            Mode::Normal => 0,
            Mode::ForcedOpen => 1,
            Mode::ForcedClosed => 2,
            Mode::Disabled => 3,
            Mode::MetricsOnly => 4,
        }
    }

    const fn from_bits(b: u64) -> Mode {
        match b {
            1 => Mode::ForcedOpen,
            2 => Mode::ForcedClosed,
            3 => Mode::Disabled,
            4 => Mode::MetricsOnly,
            _ => Mode::Normal,
        }
    }

    /// A lowercase name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Normal => "normal",
            Mode::ForcedOpen => "forced_open",
            Mode::ForcedClosed => "forced_closed",
            Mode::Disabled => "disabled",
            Mode::MetricsOnly => "metrics_only",
        }
    }
}

const fn state_bits(s: State) -> u64 {
    match s {
        State::Closed => 0,
        State::Open => 1,
        State::HalfOpen => 2,
    }
}

const fn pack(state: State, mode: Mode, generation: u64) -> u64 {
    (generation << 8) | (mode.to_bits() << 2) | state_bits(state)
}

const fn unpack(word: u64) -> (State, Mode, u64) {
    let state = match word & 0b11 {
        1 => State::Open,
        2 => State::HalfOpen,
        _ => State::Closed,
    };
    (state, Mode::from_bits((word >> 2) & 0b111), word >> 8)
}

/// Pads and aligns to two cache lines, so neighbouring shards never share one (adjacent-line
/// prefetching pulls pairs of lines on x86).
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_SLOT: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

/// The number of shards per breaker: the CPU count rounded up to a power of two, at most 64.
pub(crate) fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 64)
            .next_power_of_two()
    })
}

/// The calling thread's shard.
#[inline]
pub(crate) fn current_shard() -> usize {
    THREAD_SLOT.with(|s| *s) & (shard_count() - 1)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) total: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

impl Counts {
    fn add(&mut self, failure: bool, slow: bool) {
        self.total += 1;
        self.failures += u64::from(failure);
        self.slow += u64::from(slow);
    }
}

/// The counts of one time bucket, written lock-free. Cache-line aligned, so that the buckets of
/// neighbouring shards (separate allocations) never share a line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Bucket {
    total: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

impl Bucket {
    /// What the bucket holds. The failures and slow calls are read first, with `Acquire`
    /// (they are counted with `Release` after the call's total): every one seen has its call in
    /// the total read after it. A concurrent `take` can still leave a moment's excess, so the
    /// parts are capped by the total.
    fn load(&self) -> Counts {
        let failures = self.failures.load(Ordering::Acquire);
        let slow = self.slow.load(Ordering::Acquire);
        let total = self.total.load(Ordering::Relaxed);
        Counts {
            total,
            failures: failures.min(total),
            slow: slow.min(total),
        }
    }

    /// Empties the bucket, returning what it held (nothing recorded meanwhile is lost).
    fn take(&self) -> Counts {
        Counts {
            total: self.total.swap(0, Ordering::AcqRel),
            failures: self.failures.swap(0, Ordering::AcqRel),
            slow: self.slow.swap(0, Ordering::AcqRel),
        }
    }
}

/// The exact count window: a ring of the last `size` outcomes.
#[derive(Debug)]
struct CountRing {
    /// bit 0: failure, bit 1: slow.
    slots: Vec<u8>,
    next: usize,
    len: usize,
    counts: Counts,
}

impl CountRing {
    fn push(&mut self, failure: bool, slow: bool) {
        let size = self.slots.len();
        if self.len == size {
            let old = self.slots[self.next];
            self.counts.total -= 1;
            self.counts.failures -= u64::from(old & 1);
            self.counts.slow -= u64::from(old >> 1);
        } else {
            self.len += 1;
        }
        self.slots[self.next] = u8::from(failure) | (u8::from(slow) << 1);
        self.next = (self.next + 1) % size;
        self.counts.add(failure, slow);
    }

    fn clear(&mut self) {
        self.next = 0;
        self.len = 0;
        self.counts = Counts::default();
    }
}

/// One CPU's part of a breaker. Its time buckets are rolling: slot `b % n` holds bucket `b`,
/// tagged in `epochs`; a call records with one atomic add into its bucket, and only moving a
/// slot on to a new bucket takes the lock.
#[derive(Debug, Default)]
struct Shard {
    /// Counts of buckets that were rolled over or cleared (for lifetime stats); also
    /// serialises rolling over and reading the window.
    retired: Mutex<Counts>,
    epochs: Box<[AtomicU64]>,
    buckets: Box<[Bucket]>,
    /// The last bucket recorded into and its slot (`bucket << 16 | slot`), to skip a division.
    cursor: AtomicU64,
    /// Lifetime counts of the calls not recorded into `buckets`.
    successes: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
    ignored: AtomicU64,
    rejected: AtomicU64,
}

#[derive(Debug)]
struct Machine {
    state: State,
    mode: Mode,
    generation: u64,
    entered: Instant,
    reopens: u32,
    probes_in_flight: u32,
    probes_admitted: u32,
    probe_ok: u32,
    probe_bad: u32,
    /// Probes of this half-open period whose outcome was ignored (they judge nothing).
    probe_ignored: u32,
}

#[derive(Debug)]
struct Metrics {
    success: metrics::Counter,
    failure: metrics::Counter,
    ignored: metrics::Counter,
    rejected: metrics::Counter,
    slow: metrics::Counter,
    state: metrics::Gauge,
}

/// The labels of a breaker's series: `breaker` (the layer's name) and, for a per-key breaker,
/// `key` (its own, `_other` beyond the cap, `_none` for the breaker of keyless requests).
fn metric_labels(
    labels: &MetricLabels,
    extra: Option<(&'static str, &'static str)>,
) -> Vec<metrics::Label> {
    let mut out = vec![metrics::Label::new("breaker", labels.breaker.to_string())];
    if let Some(key) = &labels.key {
        out.push(metrics::Label::new("key", key.to_string()));
    }
    if let Some((k, v)) = extra {
        out.push(metrics::Label::new(k, v));
    }
    out
}

/// What a breaker's metric series are labelled with.
#[derive(Debug, Clone)]
pub(crate) struct MetricLabels {
    pub(crate) breaker: Arc<str>,
    pub(crate) key: Option<Arc<str>>,
}

impl Metrics {
    fn new(labels: &MetricLabels) -> Self {
        let calls = |outcome: &'static str| {
            metrics::counter!(
                "rampart_circuit_breaker_calls_total",
                metric_labels(labels, Some(("outcome", outcome)))
            )
        };
        Self {
            success: calls("success"),
            failure: calls("failure"),
            ignored: calls("ignored"),
            rejected: calls("rejected"),
            slow: metrics::counter!(
                "rampart_circuit_breaker_slow_calls_total",
                metric_labels(labels, None)
            ),
            state: metrics::gauge!("rampart_circuit_breaker_state", metric_labels(labels, None)),
        }
    }
}

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

/// A point-in-time view of one breaker.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// The breaker's state.
    pub state: State,
    /// The mode set through the handle.
    pub mode: Mode,
    /// Calls completed since the breaker was built: successes + failures + ignored.
    pub calls: u64,
    /// Successful calls.
    pub successes: u64,
    /// Failed calls.
    pub failures: u64,
    /// Calls slower than the slow-call threshold (successful or not).
    pub slow_calls: u64,
    /// Calls whose outcome was ignored, cancelled calls included.
    pub ignored: u64,
    /// Calls rejected (in metrics-only mode: that would have been rejected).
    pub rejections: u64,
    /// Calls in the current window.
    pub window_calls: u64,
    /// Failure rate over the current window, in percent (0 when the window is empty).
    pub failure_rate: f64,
    /// Slow-call rate over the current window, in percent.
    pub slow_call_rate: f64,
    /// Failures in a row right now.
    pub consecutive_failures: u32,
    /// How long the breaker has been in its state.
    pub time_in_state: Duration,
    /// While open: how long until probes are let through.
    pub open_remaining: Option<Duration>,
    /// While half-open: probes in flight.
    pub probes_in_flight: u32,
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
    metrics: Metrics,
    labels: MetricLabels,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name)
            .field("state", &unpack(self.state.load(Ordering::Relaxed)).0)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks can't leave the data inconsistent in a way
    // that matters more than stopping the breaker: keep going with the data as it is.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
            }),
            events,
            metrics,
            labels,
            cfg,
        })
    }

    #[inline]
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    #[inline]
    fn shard(&self, i: usize) -> &Shard {
        &self.shards[i & (self.shards.len() - 1)].0
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
                    return self.probe(self.clock.now(), shard);
                }
                let now = self.clock.now();
                let n = self.nanos(now);
                let until = self.open_until.load(Ordering::Acquire);
                if n >= until {
                    self.probe(now, shard)
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
    fn probe(self: &Arc<Self>, now: Instant, shard: usize) -> Result<Permit, CircuitOpen> {
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

    /// Records into the window; `false` if the call belongs to an older generation.
    #[inline]
    fn record_window(
        self: &Arc<Self>,
        shard: usize,
        generation: u64,
        failure: bool,
        slow: bool,
        now: Option<Instant>,
    ) -> bool {
        let current = |core: &Self| unpack(core.state.load(Ordering::Acquire)).2 == generation;
        if let Some(ring) = &self.ring {
            let mut ring = lock(ring);
            if !current(self) {
                return false;
            }
            ring.push(failure, slow);
            return true;
        }
        let tick = self.tick.load(Ordering::Acquire);
        let bucket = if TickWord::is_valid(tick) {
            TickWord::bucket(tick)
        } else {
            self.refresh_tick(tick, now)
        };
        let s = self.shard(shard);
        let cursor = s.cursor.load(Ordering::Relaxed);
        let slot = if cursor >> 16 == bucket {
            (cursor & 0xffff) as usize
        } else {
            let slot = (bucket % s.epochs.len() as u64) as usize;
            s.cursor
                .store((bucket << 16) | slot as u64, Ordering::Relaxed);
            slot
        };
        let epoch = s.epochs[slot].load(Ordering::Acquire);
        if epoch != bucket && (epoch == u64::MAX || epoch < bucket) {
            self.roll(s, slot, bucket);
        }
        // A call racing with a transition may land in the window it just left or entered: at
        // most the calls in flight at that moment, which the lock-free path accepts.
        let b = &s.buckets[slot];
        b.total.fetch_add(1, Ordering::Relaxed);
        if failure {
            b.failures.fetch_add(1, Ordering::Release);
        }
        if slow {
            b.slow.fetch_add(1, Ordering::Release);
        }
        true
    }

    /// Moves `slot` on to `bucket`, retiring what it held.
    #[cold]
    fn roll(&self, s: &Shard, slot: usize, bucket: u64) {
        let mut retired = lock(&s.retired);
        let epoch = s.epochs[slot].load(Ordering::Acquire);
        if epoch == u64::MAX || epoch < bucket {
            let old = s.buckets[slot].take();
            retired.total += old.total;
            retired.failures += old.failures;
            retired.slow += old.slow;
            s.epochs[slot].store(bucket, Ordering::Release);
        }
    }

    /// The counts in the current window.
    pub(crate) fn window_counts(&self, now: Option<Instant>) -> Counts {
        if let Some(ring) = &self.ring {
            return lock(ring).counts;
        }
        let now = now.unwrap_or_else(|| self.clock.now());
        let current = self.nanos(now) / self.bucket_nanos;
        let mut sum = Counts::default();
        for shard in self.shards.iter() {
            let s = &shard.0;
            let _rolling = lock(&s.retired);
            let n = s.epochs.len() as u64;
            for (epoch, b) in s.epochs.iter().zip(s.buckets.iter()) {
                let epoch = epoch.load(Ordering::Acquire);
                if epoch != u64::MAX && epoch <= current && current - epoch < n {
                    let c = b.load();
                    sum.total += c.total;
                    sum.failures += c.failures;
                    sum.slow += c.slow;
                }
            }
        }
        sum
    }

    fn judge(&self, now: Option<Instant>) -> Option<Reason> {
        let c = self.window_counts(now);
        if c.total < u64::from(self.cfg.minimum_calls) {
            return None;
        }
        if let Some(ppm) = self.cfg.failure_rate_ppm
            && c.failures * 1_000_000 >= ppm * c.total
        {
            return Some(Reason::FailureRate);
        }
        if self.cfg.slow_call_threshold.is_some()
            && c.slow * 1_000_000 >= self.cfg.slow_call_rate_ppm * c.total
        {
            return Some(Reason::SlowCallRate);
        }
        None
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

    /// A call's future or response body was dropped before it completed.
    pub(crate) fn cancel(&self, shard: usize, permit: Permit) {
        self.shard(shard).ignored.fetch_add(1, Ordering::Relaxed);
        self.metrics.ignored.increment(1);
        if permit.kind == PermitKind::Probe {
            let mut m = lock(&self.machine);
            if m.generation == permit.generation && m.state == State::HalfOpen {
                m.probes_in_flight = m.probes_in_flight.saturating_sub(1);
                m.probes_admitted = m.probes_admitted.saturating_sub(1);
            }
        }
    }

    /// Moves the machine to `to`. Called with the machine lock held; returns the event to emit
    /// once the lock is released.
    fn transition(&self, m: &mut Machine, to: State, reason: Reason, now: Instant) -> Transition {
        let from = m.state;
        m.generation += 1;
        m.state = to;
        m.entered = now;
        m.probes_in_flight = 0;
        m.probes_admitted = 0;
        m.probe_ok = 0;
        m.probe_bad = 0;
        m.probe_ignored = 0;
        let mut open_for = None;
        if to == State::Open {
            if from == State::HalfOpen {
                m.reopens = m.reopens.saturating_add(1);
            } else {
                m.reopens = 0;
            }
            let d = self
                .cfg
                .open_duration
                .with_jitter(m.reopens, fastrand::f64());
            self.open_until.store(
                self.nanos(now)
                    .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
                Ordering::Release,
            );
            open_for = Some(d);
        }
        if to == State::Closed {
            m.reopens = 0;
        }
        self.consecutive.store(0, Ordering::Relaxed);
        self.state
            .store(pack(to, m.mode, m.generation), Ordering::Release);
        if to == State::Closed {
            self.clear_window();
        }
        Transition {
            breaker: self.name.clone(),
            from,
            to,
            reason,
            at: now,
            open_for,
            generation: m.generation,
        }
    }

    /// Empties the window. The generation was bumped before, so a record racing with this
    /// either lands before the clear (and is cleared) or sees the new generation (and is dropped).
    fn clear_window(&self) {
        if let Some(ring) = &self.ring {
            lock(ring).clear();
        }
        for shard in self.shards.iter() {
            let s = &shard.0;
            let mut retired = lock(&s.retired);
            for (epoch, b) in s.epochs.iter().zip(s.buckets.iter()) {
                let old = b.take();
                retired.total += old.total;
                retired.failures += old.failures;
                retired.slow += old.slow;
                epoch.store(u64::MAX, Ordering::Release);
            }
        }
    }

    fn emit(self: &Arc<Self>, t: Transition) {
        if t.to == State::Open {
            tracing::warn!(
                target: "rampart::circuit_breaker",
                breaker = %t.breaker, from = t.from.as_str(), to = t.to.as_str(), reason = t.reason.as_str(),
                open_for = ?t.open_for, "circuit breaker opened"
            );
        } else {
            tracing::info!(
                target: "rampart::circuit_breaker",
                breaker = %t.breaker, from = t.from.as_str(), to = t.to.as_str(), reason = t.reason.as_str(),
                "circuit breaker state changed"
            );
        }
        let mut labels = metric_labels(&self.labels, Some(("from", t.from.as_str())));
        labels.push(metrics::Label::new("to", t.to.as_str()));
        metrics::counter!("rampart_circuit_breaker_transitions_total", labels).increment(1);
        self.metrics.state.set(t.to.as_gauge());
        for cb in &self.cfg.on_transition {
            cb(&t);
        }
        if let (State::Open, Some(d)) = (t.to, t.open_for) {
            self.arm_open_timer(t.generation, d);
        }
        let _ = self.events.send(t);
    }

    /// Arms the alarms for the end of the open state `generation`: with tokio's clock, an
    /// alarm a little before the end sets `elapsed_gen`, so rejections need no clock read (calls
    /// after it check the clock exactly); with `half_open_on_timer`, a task makes the move.
    fn arm_open_timer(self: &Arc<Self>, generation: u64, d: Duration) {
        if self.timed {
            // Transitions are emitted outside the machine lock, so two of them may arm at once,
            // out of order: the lock keeps the newest.
            let mut arming = lock(&self.arming);
            let newer_armed = arming.is_some_and(|newest| newest > generation);
            if !newer_armed {
                *arming = Some(generation);
                let early = self
                    .clock
                    .now()
                    .checked_add(d.saturating_sub(TIMER_LEAD.min(d / 2)));
                let weak = Arc::downgrade(self);
                // Not trusted until armed: a rejection meanwhile reads the clock.
                self.armed_gen.store(u64::MAX, Ordering::Release);
                let armed = early.is_some_and(|early| {
                    self.open_alarm.arm(early, move || {
                        if let Some(core) = weak.upgrade() {
                            core.elapsed_gen.store(generation, Ordering::Release);
                        }
                    })
                });
                if armed {
                    self.armed_gen.store(generation, Ordering::Release);
                }
            }
        }
        if self.cfg.half_open_on_timer {
            let Ok(rt) = tokio::runtime::Handle::try_current() else {
                return;
            };
            let weak = Arc::downgrade(self);
            rt.spawn(async move {
                tokio::time::sleep(d).await;
                if let Some(core) = weak.upgrade() {
                    core.timer_fired(generation);
                }
            });
        }
    }

    /// The current bucket from the clock; with tokio's clock also arms `tick_alarm` for a
    /// little before the bucket ends and marks the bucket valid until then, so the calls in
    /// between read no clock.
    #[cold]
    fn refresh_tick(self: &Arc<Self>, seen: u64, now: Option<Instant>) -> u64 {
        let now = now.unwrap_or_else(|| self.clock.now());
        let n = self.nanos(now);
        let bucket = n / self.bucket_nanos;
        if !self.timed {
            return bucket;
        }
        let lead = u64::try_from(TIMER_LEAD.as_nanos())
            .unwrap_or(u64::MAX)
            .min(self.bucket_nanos / 2);
        let end = (bucket + 1)
            .saturating_mul(self.bucket_nanos)
            .saturating_sub(lead);
        if end <= n {
            // In the last moments of the bucket: keep reading the clock until it is over.
            return bucket;
        }
        let weak = Arc::downgrade(self);
        let armed = self
            .tick_alarm
            .arm(self.epoch + Duration::from_nanos(end), move || {
                if let Some(core) = weak.upgrade() {
                    TickWord::invalidate(&core.tick);
                }
            });
        if armed {
            // Only if no alarm went off since `seen`: otherwise the next call tries again.
            let _ = self.tick.compare_exchange(
                seen,
                TickWord::valid(seen, bucket),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        bucket
    }

    fn timer_fired(self: &Arc<Self>, generation: u64) {
        let t = {
            let mut m = lock(&self.machine);
            if m.generation != generation || m.state != State::Open {
                return;
            }
            let now = self.clock.now();
            self.transition(&mut m, State::HalfOpen, Reason::OpenTimeElapsed, now)
        };
        self.emit(t);
    }

    // ---- handle operations ----

    pub(crate) fn state(&self) -> State {
        unpack(self.state.load(Ordering::Acquire)).0
    }

    pub(crate) fn mode(&self) -> Mode {
        unpack(self.state.load(Ordering::Acquire)).1
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        let mut m = lock(&self.machine);
        let old = m.mode;
        m.mode = mode;
        self.state
            .store(pack(m.state, mode, m.generation), Ordering::Release);
        drop(m);
        if old != mode {
            tracing::info!(target: "rampart::circuit_breaker", breaker = %self.name, from = old.as_str(), to = mode.as_str(), "circuit breaker mode changed");
        }
    }

    pub(crate) fn reset(self: &Arc<Self>) {
        let now = self.clock.now();
        let t = {
            let mut m = lock(&self.machine);
            m.mode = Mode::Normal;
            let t = self.transition(&mut m, State::Closed, Reason::Manual, now);
            m.reopens = 0;
            t
        };
        self.emit(t);
    }

    /// Moves to `to` by hand (used by tests and operators: e.g. open a breaker ahead of a
    /// planned outage while keeping normal mode, so it probes and closes by itself).
    pub(crate) fn transition_to(self: &Arc<Self>, to: State) {
        let now = self.clock.now();
        let t = {
            let mut m = lock(&self.machine);
            if m.state == to {
                return;
            }
            self.transition(&mut m, to, Reason::Manual, now)
        };
        self.emit(t);
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.events.subscribe()
    }

    pub(crate) fn stats(&self) -> Stats {
        let now = self.clock.now();
        let (state, mode, entered, probes_in_flight) = {
            let m = lock(&self.machine);
            (m.state, m.mode, m.entered, m.probes_in_flight)
        };
        let sum = |f: fn(&Shard) -> &AtomicU64| {
            self.shards
                .iter()
                .map(|s| f(&s.0).load(Ordering::Relaxed))
                .sum::<u64>()
        };
        // Lifetime: what the buckets never saw, plus what they retired, plus what they hold.
        let mut bucketed = Counts::default();
        for shard in self.shards.iter() {
            let s = &shard.0;
            let retired = lock(&s.retired);
            bucketed.total += retired.total;
            bucketed.failures += retired.failures;
            bucketed.slow += retired.slow;
            for b in s.buckets.iter() {
                let c = b.load();
                bucketed.total += c.total;
                bucketed.failures += c.failures;
                bucketed.slow += c.slow;
            }
        }
        let successes = sum(|s| &s.successes) + bucketed.total.saturating_sub(bucketed.failures);
        let failures = sum(|s| &s.failures) + bucketed.failures;
        let ignored = sum(|s| &s.ignored);
        let w = self.window_counts(Some(now));
        let rate = |n: u64| {
            if w.total == 0 {
                0.0
            } else {
                n as f64 * 100.0 / w.total as f64
            }
        };
        let open_remaining = (state == State::Open).then(|| {
            let until = self.open_until.load(Ordering::Acquire);
            Duration::from_nanos(until.saturating_sub(self.nanos(now)))
        });
        Stats {
            state,
            mode,
            calls: successes + failures + ignored,
            successes,
            failures,
            slow_calls: sum(|s| &s.slow) + bucketed.slow,
            ignored,
            rejections: sum(|s| &s.rejected),
            window_calls: w.total,
            failure_rate: rate(w.failures),
            slow_call_rate: rate(w.slow),
            consecutive_failures: self.consecutive.load(Ordering::Relaxed),
            time_in_state: now.saturating_duration_since(entered),
            open_remaining,
            probes_in_flight,
        }
    }
}

/// One shard's entry point into a breaker: what a call clones (a thread-local reference count)
/// instead of the breaker's shared `Arc`, plus the classifier the adapter judges responses with.
#[derive(Debug)]
pub(crate) struct Lane<C> {
    pub(crate) core: Arc<Core>,
    pub(crate) shard: usize,
    pub(crate) classifier: C,
}

/// The lanes of one breaker, one per shard.
pub(crate) type Lanes<C> = Arc<[Arc<Padded<Lane<C>>>]>;

pub(crate) fn lanes<C: Clone>(core: &Arc<Core>, classifier: &C) -> Lanes<C> {
    (0..shard_count())
        .map(|shard| {
            Arc::new(Padded(Lane {
                core: core.clone(),
                shard,
                classifier: classifier.clone(),
            }))
        })
        .collect()
}

/// Holds an admitted call's place in the breaker until its outcome is known.
///
/// It is the [`Record`]er handed to the classifier: recording the outcome completes the call;
/// dropping it unrecorded (the response future or the response body was dropped) counts the
/// call as ignored and frees its half-open probe slot.
pub struct CallGuard<C> {
    lane: Arc<Padded<Lane<C>>>,
    permit: Permit,
    armed: bool,
}

impl<C> std::fmt::Debug for CallGuard<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallGuard")
            .field("breaker", &self.lane.0.core.name)
            .field("kind", &self.permit.kind)
            .finish()
    }
}

impl<C> CallGuard<C> {
    /// Tries to admit a call through `lane`.
    #[inline]
    pub(crate) fn acquire(lane: &Arc<Padded<Lane<C>>>) -> Result<Self, CircuitOpen> {
        let permit = lane.0.core.acquire(lane.0.shard)?;
        Ok(Self {
            lane: lane.clone(),
            permit,
            armed: true,
        })
    }

    /// Like [`acquire`](Self::acquire), keeping the given reference.
    #[inline]
    pub(crate) fn acquire_owned(lane: Arc<Padded<Lane<C>>>) -> Result<Self, CircuitOpen> {
        let permit = lane.0.core.acquire(lane.0.shard)?;
        Ok(Self {
            lane,
            permit,
            armed: true,
        })
    }

    /// The lane (for its classifier).
    pub(crate) fn lane(&self) -> &Arc<Padded<Lane<C>>> {
        &self.lane
    }

    /// The classifier of the breaker that admitted the call: what an adapter judges the call's
    /// result with before it [records](Record::record) the outcome.
    #[inline]
    pub fn classifier(&self) -> &C {
        &self.lane.0.classifier
    }
}

impl<C> CallGuard<C> {
    /// Records the outcome in place; the guard is spent (dropping it then records nothing).
    #[inline]
    pub(crate) fn finish(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.armed, false) {
            let lane = &self.lane.0;
            lane.core.complete(lane.shard, &self.permit, outcome);
        }
    }
}

impl<C: Send + Sync + 'static> Record for CallGuard<C> {
    #[inline]
    fn record(mut self, outcome: Outcome) {
        self.finish(outcome);
    }
}

impl<C> Drop for CallGuard<C> {
    fn drop(&mut self) {
        if self.armed {
            let lane = &self.lane.0;
            lane.core.cancel(lane.shard, self.permit);
        }
    }
}

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;

/// How much earlier than the exact moment the alarms go off: more than tokio's millisecond of
/// rounding. Calls in that last stretch read the clock, so nothing is decided early.
const TIMER_LEAD: Duration = Duration::from_millis(5);

/// The packing of [`Core::tick`]: bit 63 says the bucket is valid, bits 48..63 count the
/// alarms that went off (so an arming that raced with one is not trusted), bits 0..48 hold the
/// bucket number.
struct TickWord;

impl TickWord {
    const VALID: u64 = 1 << 63;
    const SEQ_SHIFT: u32 = 48;
    const BUCKET: u64 = (1 << 48) - 1;

    #[inline]
    const fn is_valid(word: u64) -> bool {
        word & Self::VALID != 0
    }

    #[inline]
    const fn bucket(word: u64) -> u64 {
        word & Self::BUCKET
    }

    const fn valid(seen: u64, bucket: u64) -> u64 {
        Self::VALID | (seen & !Self::VALID & !Self::BUCKET) | (bucket & Self::BUCKET)
    }

    fn invalidate(tick: &AtomicU64) {
        let _ = tick.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
            let seq = ((w >> Self::SEQ_SHIFT) + 1) & 0x7fff;
            Some((seq << Self::SEQ_SHIFT) | (w & Self::BUCKET))
        });
    }
}
