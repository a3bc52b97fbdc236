//! [`CircuitBreakerHandle`]: state, stats and manual control of one breaker.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::{
    events::{State, Transition},
    policy::{Core, Mode, Stats},
};

/// A handle on one circuit breaker: read its state and stats, subscribe to its transitions,
/// and operate it by hand. Cheap to clone; every clone controls the same breaker.
///
/// ```
/// use rampart_circuit_breaker::{CircuitBreakerLayer, Mode, State};
///
/// let layer = CircuitBreakerLayer::builder().name("payments").layer().unwrap();
/// let handle = layer.handle();
/// assert_eq!(handle.state(), State::Closed);
///
/// handle.force_open(); // e.g. during a planned outage of the dependency
/// assert_eq!(handle.mode(), Mode::ForcedOpen);
/// handle.reset(); // back to normal, closed, with an empty window
/// assert_eq!((handle.mode(), handle.state()), (Mode::Normal, State::Closed));
/// ```
#[derive(Clone)]
pub struct CircuitBreakerHandle {
    pub(crate) core: Arc<Core>,
}

impl std::fmt::Debug for CircuitBreakerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreakerHandle")
            .field("name", &self.core.name)
            .field("state", &self.core.state())
            .field("mode", &self.core.mode())
            .finish()
    }
}

impl CircuitBreakerHandle {
    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The current state. An open breaker whose open time is over still reads `Open` until the
    /// next call (or the timer, if enabled) moves it to half-open.
    pub fn state(&self) -> State {
        self.core.state()
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.core.mode()
    }

    /// A snapshot of counters, rates and timings.
    pub fn stats(&self) -> Stats {
        self.core.stats()
    }

    /// Rejects every call until the mode is changed.
    pub fn force_open(&self) {
        self.core.set_mode(Mode::ForcedOpen);
    }

    /// Lets every call through, recording nothing, until the mode is changed.
    pub fn force_closed(&self) {
        self.core.set_mode(Mode::ForcedClosed);
    }

    /// Lets every call through while still counting outcomes (stats, window); never trips.
    pub fn disable(&self) {
        self.core.set_mode(Mode::Disabled);
    }

    /// Shadow mode: the state machine runs, emits events and metrics, but never rejects.
    pub fn metrics_only(&self) {
        self.core.set_mode(Mode::MetricsOnly);
    }

    /// Back to normal operation, keeping the current state and window.
    pub fn resume(&self) {
        self.core.set_mode(Mode::Normal);
    }

    /// Sets the mode.
    pub fn set_mode(&self, mode: Mode) {
        self.core.set_mode(mode);
    }

    /// Normal mode, closed, with an empty window and the open-time growth reset.
    pub fn reset(&self) {
        self.core.reset();
    }

    /// Moves the state machine to `state` by hand, staying in the current mode; an opened
    /// breaker then probes and closes by itself as usual.
    pub fn transition_to(&self, state: State) {
        self.core.transition_to(state);
    }

    /// Receives every transition from now on. A receiver that falls more than 64 events behind
    /// skips the oldest (see `tokio::sync::broadcast`).
    pub fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.core.subscribe()
    }
}
