//! Circuit breakers as components: [`BreakerCheck`], [`KeyedBreakerCheck`] and
//! [`SharedBreakersCheck`].

use std::{fmt, hash::Hash};

use rampart_circuit_breaker::{
    CircuitBreakerHandle, KeyedCircuitBreakerHandle, Mode, State, Stats, shared::SharedBreakers,
};

use crate::{
    component::{BoxFuture, Component},
    status::ComponentHealth,
};

/// At most this many open keys are listed in a keyed breaker's details.
const MAX_LISTED_KEYS: usize = 20;

/// One circuit breaker's health, from its [`CircuitBreakerHandle`]:
///
/// | breaker | status | reason |
/// |---|---|---|
/// | closed | healthy | |
/// | open | degraded | `circuit open` |
/// | half-open | degraded | `circuit half-open: probing whether the dependency recovered` |
/// | forced open (mode) | degraded | `circuit forced open` |
/// | forced closed (mode) | healthy, whatever the state | |
///
/// An open breaker is *degraded*, never unhealthy: it is doing its job, keeping this service
/// up while a dependency is down. Taking the instance out of rotation would not bring the
/// dependency back, and every instance shares it, so all of them would go at once.
///
/// Details: `state`, `mode`, `failure_rate` (percent, over the window), `window_calls`,
/// `consecutive_failures`, `rejections`, `time_in_state_ms`, and `open_remaining_ms` while open.
#[derive(Debug, Clone)]
pub struct BreakerCheck {
    handle: CircuitBreakerHandle,
}

impl BreakerCheck {
    /// A check of the breaker behind `handle`.
    pub fn new(handle: CircuitBreakerHandle) -> Self {
        Self { handle }
    }
}

/// The verdict on one breaker's state and mode: `None` when healthy, else the reason.
fn judge(state: State, mode: Mode) -> Option<&'static str> {
    match (mode, state) {
        (Mode::ForcedOpen, _) => Some("circuit forced open"),
        (Mode::ForcedClosed, _) | (_, State::Closed) => None,
        (_, State::Open) => Some("circuit open"),
        (_, State::HalfOpen) => Some("circuit half-open: probing whether the dependency recovered"),
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn health_of(stats: &Stats) -> ComponentHealth {
    let health = match judge(stats.state, stats.mode) {
        None => ComponentHealth::healthy(),
        Some(reason) => ComponentHealth::degraded(reason),
    };
    let mut health = health
        .detail("state", stats.state.as_str())
        .detail("mode", stats.mode.as_str())
        .detail("failure_rate", stats.failure_rate)
        .detail("window_calls", stats.window_calls)
        .detail("consecutive_failures", stats.consecutive_failures)
        .detail("rejections", stats.rejections)
        .detail("time_in_state_ms", ms(stats.time_in_state));
    if let Some(left) = stats.open_remaining {
        health = health.detail("open_remaining_ms", ms(left));
    }
    health
}

impl Component for BreakerCheck {
    fn kind(&self) -> &'static str {
        "circuit_breaker"
    }

    fn check(&self) -> BoxFuture<'_, ComponentHealth> {
        let health = health_of(&self.handle.stats());
        Box::pin(std::future::ready(health))
    }
}

/// A per-key breaker registry's health, from its [`KeyedCircuitBreakerHandle`]: degraded
/// while any key's breaker (or the breaker for requests without a key) is open, half-open or
/// forced open, by the same rules as [`BreakerCheck`]; healthy otherwise.
///
/// Details: `breakers` (how many exist), `open` and `half_open` (how many), and `not_closed`:
/// the first 20 such keys (`Debug`-formatted) with their state.
pub struct KeyedBreakerCheck<K, C> {
    handle: KeyedCircuitBreakerHandle<K, C>,
}

impl<K, C> KeyedBreakerCheck<K, C> {
    /// A check of every breaker behind `handle`.
    pub fn new(handle: KeyedCircuitBreakerHandle<K, C>) -> Self {
        Self { handle }
    }
}

impl<K: fmt::Debug, C> fmt::Debug for KeyedBreakerCheck<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBreakerCheck")
            .field("handle", &self.handle)
            .finish()
    }
}

impl<K, C> Component for KeyedBreakerCheck<K, C>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    C: Clone + Send + Sync + 'static,
{
    fn kind(&self) -> &'static str {
        "keyed_circuit_breaker"
    }

    fn check(&self) -> BoxFuture<'_, ComponentHealth> {
        let fallback = self.handle.fallback();
        let keyed = self.handle.breakers();
        let all = std::iter::once(("(no key)".to_owned(), fallback))
            .chain(keyed.into_iter().map(|(k, h)| (format!("{k:?}"), h)));
        let (mut total, mut open, mut half_open) = (0u64, 0u64, 0u64);
        let mut listed = serde_json::Map::new();
        for (key, handle) in all {
            total += 1;
            let (state, mode) = (handle.state(), handle.mode());
            if judge(state, mode).is_none() {
                continue;
            }
            match (mode, state) {
                (Mode::ForcedOpen, _) | (_, State::Open) => open += 1,
                _ => half_open += 1,
            }
            if listed.len() < MAX_LISTED_KEYS {
                let shown = if mode == Mode::ForcedOpen {
                    "forced_open"
                } else {
                    state.as_str()
                };
                listed.insert(key, shown.into());
            }
        }
        let health = if open + half_open == 0 {
            ComponentHealth::healthy()
        } else {
            ComponentHealth::degraded(format!(
                "{open} circuit(s) open, {half_open} half-open, of {total}"
            ))
        };
        let health = health
            .detail("breakers", total)
            .detail("open", open)
            .detail("half_open", half_open)
            .detail("not_closed", listed);
        Box::pin(std::future::ready(health))
    }
}

/// Breakers' shared state ([`SharedBreakers`]): healthy while the store answers, *degraded*
/// while it does not (every breaker decides alone then: nothing fails, but replicas no longer
/// learn together), with the last failure as the reason.
///
/// Details: `replica`, `backend`, `breakers`, `probes_owned`, `probes_deferred`, `errors`,
/// `bad_snapshots`, `opened_by_peers`, `closed_by_peers`, and `degraded_for_ms` while degraded.
#[derive(Debug, Clone)]
pub struct SharedBreakersCheck {
    shared: SharedBreakers,
}

impl SharedBreakersCheck {
    /// A check of `shared`.
    pub fn new(shared: SharedBreakers) -> Self {
        Self { shared }
    }
}

impl Component for SharedBreakersCheck {
    fn kind(&self) -> &'static str {
        "shared_breakers"
    }

    fn check(&self) -> BoxFuture<'_, ComponentHealth> {
        let s = self.shared.status();
        let mut health = match &s.degraded {
            None => ComponentHealth::healthy(),
            Some((reason, since)) => {
                let ms = since.elapsed().map_or(0.0, |d| d.as_secs_f64() * 1000.0);
                ComponentHealth::degraded(format!(
                    "shared breaker state unreachable, each breaker decides alone: {reason}"
                ))
                .detail("degraded_for_ms", ms)
            }
        };
        health = health
            .detail("replica", s.replica)
            .detail("backend", s.backend)
            .detail("breakers", s.breakers)
            .detail("probes_owned", s.probes_owned)
            .detail("probes_deferred", s.probes_deferred)
            .detail("errors", s.errors)
            .detail("bad_snapshots", s.bad_snapshots)
            .detail("opened_by_peers", s.opened_by_peers)
            .detail("closed_by_peers", s.closed_by_peers);
        Box::pin(std::future::ready(health))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        use Mode::*;
        use State::*;
        for mode in [Normal, Disabled, MetricsOnly] {
            assert_eq!(judge(Closed, mode), None);
            assert_eq!(judge(Open, mode), Some("circuit open"));
            assert!(judge(HalfOpen, mode).is_some_and(|r| r.contains("half-open")));
        }
        for state in [Closed, Open, HalfOpen] {
            assert_eq!(judge(state, ForcedOpen), Some("circuit forced open"));
            assert_eq!(judge(state, ForcedClosed), None);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shared_breakers_are_degraded_while_their_store_is_unreachable() {
        use rampart_circuit_breaker::shared::MemoryBackend;
        let backend = MemoryBackend::new();
        let shared = SharedBreakers::builder(backend.clone())
            .replica("a")
            .spawn()
            .unwrap();
        let breaker = rampart_circuit_breaker::CircuitBreakerLayer::builder()
            .name("payments")
            .layer()
            .unwrap();
        assert!(shared.join(&breaker.handle()));
        let check = SharedBreakersCheck::new(shared);
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let health = check.check().await;
        assert_eq!(health.status, crate::Status::Healthy);
        backend.set_unavailable(true);
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let health = check.check().await;
        assert_eq!(health.status, crate::Status::Degraded);
        let reason = health.reason.unwrap_or_default();
        assert!(reason.contains("decides alone"), "{reason}");
    }
}
