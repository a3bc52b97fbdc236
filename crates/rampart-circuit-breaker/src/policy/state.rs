//! The state word (state, mode and generation packed in one atomic, read on every call) and
//! the state machine behind its lock: transitions, and the handle's operations on them.

use super::*;

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
    pub(super) const fn to_bits(self) -> u64 {
        match self {
            Mode::Normal => 0,
            Mode::ForcedOpen => 1,
            Mode::ForcedClosed => 2,
            Mode::Disabled => 3,
            Mode::MetricsOnly => 4,
        }
    }

    pub(super) const fn from_bits(b: u64) -> Mode {
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

pub(super) const fn state_bits(s: State) -> u64 {
    match s {
        State::Closed => 0,
        State::Open => 1,
        State::HalfOpen => 2,
    }
}

pub(super) const fn pack(state: State, mode: Mode, generation: u64) -> u64 {
    (generation << 8) | (mode.to_bits() << 2) | state_bits(state)
}

pub(super) const fn unpack(word: u64) -> (State, Mode, u64) {
    let state = match word & 0b11 {
        1 => State::Open,
        2 => State::HalfOpen,
        _ => State::Closed,
    };
    (state, Mode::from_bits((word >> 2) & 0b111), word >> 8)
}

#[derive(Debug)]
pub(super) struct Machine {
    pub(super) state: State,
    pub(super) mode: Mode,
    pub(super) generation: u64,
    pub(super) entered: Instant,
    pub(super) reopens: u32,
    pub(super) probes_in_flight: u32,
    pub(super) probes_admitted: u32,
    pub(super) probe_ok: u32,
    pub(super) probe_bad: u32,
    /// Probes of this half-open period whose outcome was ignored (they judge nothing).
    pub(super) probe_ignored: u32,
    /// Why the machine entered its state (published to peers: an open judged here, or
    /// followed from them).
    pub(super) reason: Reason,
}

impl Core {
    /// Moves the machine to `to`. Called with the machine lock held; returns the event to emit
    /// once the lock is released.
    pub(super) fn transition(
        &self,
        m: &mut Machine,
        to: State,
        reason: Reason,
        now: Instant,
    ) -> Transition {
        self.transition_for(m, to, reason, now, None)
    }

    /// As [`transition`](Self::transition); a move to open stays open for `open_for` if given
    /// (a time peers reported), else for the configured open time.
    pub(super) fn transition_for(
        &self,
        m: &mut Machine,
        to: State,
        reason: Reason,
        now: Instant,
        open_for: Option<Duration>,
    ) -> Transition {
        let from = m.state;
        m.generation += 1;
        m.reason = reason;
        m.state = to;
        m.entered = now;
        m.probes_in_flight = 0;
        m.probes_admitted = 0;
        m.probe_ok = 0;
        m.probe_bad = 0;
        m.probe_ignored = 0;
        let given = open_for;
        let mut open_for = None;
        if to == State::Open {
            if from == State::HalfOpen {
                m.reopens = m.reopens.saturating_add(1);
            } else {
                m.reopens = 0;
            }
            let d = given.unwrap_or_else(|| {
                self.cfg
                    .open_duration
                    .with_jitter(m.reopens, fastrand::f64())
            });
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
            self.mode_changed.notify_waiters();
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
}
