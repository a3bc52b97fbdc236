//! A breaker as a [`Readiness`]: ready unless it rejects calls, so that work held back while
//! the dependency was failing (the dead-letter drain worker's) resumes when it recovers.

use std::{
    future::{Future as _, poll_fn},
    pin::pin,
    task::Poll,
    time::Duration,
};

use rampart_core::{BoxFuture, readiness::Readiness};

use crate::{CircuitBreakerHandle, Mode, State};

/// Ready while the breaker lets calls through: closed, half-open (the next calls are its
/// probes), open with its open time over (the next call probes), or in a mode that lets every
/// call through. Not ready while it is open and waiting, or [forced open](Mode::ForcedOpen).
///
/// [`changed_soon`](Readiness::changed_soon) completes at the breaker's next transition or
/// mode change, or when the open time ends (an open breaker moves to half-open lazily, on the
/// next call, so that moment has no transition of its own).
///
/// Trade-off: readiness says "the breaker would let a call through", not "the dependency is
/// healthy". A drain that starts on a half-open breaker sends its first requests as the
/// probes; with the breaker's probe limit, the rest are rejected (and a drain worker releases
/// them untouched, then waits for the breaker to close).
///
/// ```
/// use rampart_circuit_breaker::CircuitBreakerLayer;
/// use rampart_core::readiness::Readiness;
///
/// let breaker = CircuitBreakerLayer::builder().layer().unwrap();
/// let handle = breaker.handle();
/// assert!(handle.is_ready());
/// handle.force_open();
/// assert!(!handle.is_ready());
/// ```
impl Readiness for CircuitBreakerHandle {
    fn is_ready(&self) -> bool {
        match (self.mode(), self.state()) {
            (Mode::ForcedOpen, _) => false,
            (Mode::Normal, State::Open) => self
                .core
                .open_remaining()
                .is_some_and(|left| left.is_zero()),
            _ => true,
        }
    }

    fn changed_soon(&self) -> BoxFuture<'static, ()> {
        let mut events = self.subscribe();
        let mode_changed = self.core.mode_changed();
        let open_left = match self.mode() {
            Mode::Normal => self.core.open_remaining().filter(|d| !d.is_zero()),
            _ => None,
        };
        Box::pin(async move {
            let transition = pin!(events.recv());
            let mode_changed = pin!(mode_changed);
            // A millisecond past the end, so that the breaker reads it as over.
            let open_end =
                pin!(open_left.map(|left| tokio::time::sleep(left + Duration::from_millis(1))));
            let (mut transition, mut mode_changed, mut open_end) =
                (transition, mode_changed, open_end);
            poll_fn(|cx| {
                let ended = open_end
                    .as_mut()
                    .as_pin_mut()
                    .is_some_and(|sleep| sleep.poll(cx).is_ready());
                if ended
                    || transition.as_mut().poll(cx).is_ready()
                    || mode_changed.as_mut().poll(cx).is_ready()
                {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rampart_core::readiness::Readiness;

    use crate::CircuitBreakerLayer;

    #[tokio::test(start_paused = true)]
    async fn ready_again_when_the_open_time_ends_and_woken_then() {
        let breaker = CircuitBreakerLayer::builder()
            .consecutive_failures(1)
            .open_duration(Duration::from_secs(10))
            .layer()
            .unwrap();
        let handle = breaker.handle();
        let changed = handle.changed_soon();
        let guard = breaker.try_acquire().unwrap();
        rampart_core::classify::Record::record(guard, rampart_core::classify::Outcome::TRANSIENT);
        changed.await; // the trip
        assert!(!handle.is_ready(), "open, waiting");
        let start = tokio::time::Instant::now();
        handle.changed_soon().await; // the end of the open time
        assert!(start.elapsed() >= Duration::from_secs(10));
        assert!(handle.is_ready(), "the next call would probe");
    }

    #[tokio::test(start_paused = true)]
    async fn forcing_open_is_not_ready_and_wakes_a_waiter() {
        let breaker = CircuitBreakerLayer::builder().layer().unwrap();
        let handle = breaker.handle();
        let changed = handle.changed_soon();
        handle.force_open();
        tokio::time::timeout(Duration::from_secs(1), changed)
            .await
            .expect("a mode change wakes the waiter");
        assert!(!handle.is_ready());
        handle.resume();
        assert!(handle.is_ready());
    }
}
