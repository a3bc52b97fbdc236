//! What the observability tests share.

use std::time::Duration;

use rampart_circuit_breaker::CircuitBreakerLayer;
use rampart_core::clock::ManualClock;

/// A breaker named `obs` on `clock` that trips when half of 2 calls fail, open for 5 s.
pub(crate) fn breaker(clock: &ManualClock) -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder()
        .name("obs")
        .clock(clock.shared())
        .count_window(2)
        .minimum_calls(2)
        .open_duration(Duration::from_secs(5))
        .layer()
        .expect("a valid configuration")
}
