//! Transition events: what callbacks and [`subscribe`](crate::CircuitBreakerHandle::subscribe)rs receive.

use std::{sync::Arc, time::Duration};

use rampart_core::clock::Instant;

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls flow; outcomes are recorded and judged.
    Closed,
    /// Calls are rejected until the open time is over.
    Open,
    /// A limited number of probes are let through to judge whether the dependency recovered.
    HalfOpen,
}

impl State {
    /// The value of the `rampart_circuit_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    pub const fn as_gauge(self) -> f64 {
        match self {
            State::Closed => 0.0,
            State::HalfOpen => 1.0,
            State::Open => 2.0,
        }
    }

    /// A lowercase name: `closed`, `open`, `half_open`.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the breaker changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The failure rate in the window reached the threshold.
    FailureRate,
    /// The slow-call rate in the window reached the threshold.
    SlowCallRate,
    /// Too many failures in a row.
    ConsecutiveFailures,
    /// The open time was over.
    OpenTimeElapsed,
    /// A probe failed (or was slow) while half-open.
    ProbeFailed,
    /// Probes succeeded often enough.
    ProbesSucceeded,
    /// The half-open state lasted longer than its maximum wait.
    HalfOpenTimeout,
    /// The half-open state lasted its maximum wait with every probe's outcome ignored (none
    /// succeeded, none failed): it closes rather than cap calls at the probe limit for good.
    HalfOpenNoVerdict,
    /// Changed through the handle (force open / closed, reset, …).
    Manual,
    /// Opened on what other replicas reported, by the breaker's
    /// [`Decision`](crate::shared::Decision) (see [`shared`](crate::shared)).
    Peers,
    /// Closed because the replica that owned the cluster's probe found the dependency
    /// recovered (see [`shared`](crate::shared)).
    PeersRecovered,
}

impl Reason {
    /// A lowercase name, as used in tracing events.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::FailureRate => "failure_rate",
            Reason::SlowCallRate => "slow_call_rate",
            Reason::ConsecutiveFailures => "consecutive_failures",
            Reason::OpenTimeElapsed => "open_time_elapsed",
            Reason::ProbeFailed => "probe_failed",
            Reason::ProbesSucceeded => "probes_succeeded",
            Reason::HalfOpenTimeout => "half_open_timeout",
            Reason::HalfOpenNoVerdict => "half_open_no_verdict",
            Reason::Manual => "manual",
            Reason::Peers => "peers",
            Reason::PeersRecovered => "peers_recovered",
        }
    }

    /// The reason named `name` (as [`as_str`](Self::as_str) writes it).
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        const ALL: [Reason; 11] = [
            Reason::FailureRate,
            Reason::SlowCallRate,
            Reason::ConsecutiveFailures,
            Reason::OpenTimeElapsed,
            Reason::ProbeFailed,
            Reason::ProbesSucceeded,
            Reason::HalfOpenTimeout,
            Reason::HalfOpenNoVerdict,
            Reason::Manual,
            Reason::Peers,
            Reason::PeersRecovered,
        ];
        ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// One state transition.
#[derive(Debug, Clone)]
pub struct Transition {
    /// The breaker's name (for a per-key breaker: `name/key`).
    pub breaker: Arc<str>,
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
    /// Why.
    pub reason: Reason,
    /// When, on the breaker's clock.
    pub at: Instant,
    /// For a move to [`State::Open`]: how long it will stay open.
    pub open_for: Option<Duration>,
    /// The generation the transition started (internal: timers armed for it).
    pub(crate) generation: u64,
}
