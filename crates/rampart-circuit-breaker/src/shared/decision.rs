//! [`Decision`]: how a closed breaker judges what its peers report.

use std::time::Duration;

use rampart_core::error::ConfigError;

use super::snapshot::Snapshot;
use crate::{events::State, policy::LocalView, policy::Mode};

/// How a closed breaker judges its live peers' snapshots. It is only ever a reason to *open*
/// early: the local breaker still trips on its own evidence, and peers never keep a breaker
/// closed.
///
/// | decision | opens when |
/// |---|---|
/// | [`Follow`](Self::Follow) | any live peer opened on its own evidence |
/// | [`Quorum`](Self::Quorum) (default: 2 replicas or half) | at least `replicas` live peers, or at least `share` of all live replicas (this one included), opened on their own evidence |
/// | [`Pooled`](Self::Pooled) | the windows of every live replica, summed, trip this breaker's own thresholds (`minimum_calls`, failure and slow-call rates), with at least `min_contributors` replicas having calls in their windows |
///
/// "On its own evidence" leaves out replicas that opened because they followed others
/// ([`Reason::Peers`](crate::Reason::Peers)), by hand, or are forced: otherwise an open
/// would echo between replicas after the dependency recovered. A breaker opened by `Follow`
/// or `Quorum` stays open for the longest time left among the peers it followed (capped at
/// its own longest open time); by `Pooled`, for its own open time.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Decision {
    /// Open as soon as any live peer opened on its own evidence: the fastest, and the most
    /// trusting (one replica with a bad network path opens every replica).
    Follow,
    /// Open when enough replicas agree.
    Quorum {
        /// Live peers that opened on evidence, at least (≥ 1).
        replicas: u32,
        /// Or this share of all live replicas, this one included (in `(0, 1]`).
        share: f64,
    },
    /// Judge the rates on the windows of every live replica, summed.
    Pooled {
        /// Replicas (this one included) with calls in their window, at least (≥ 1).
        min_contributors: u32,
    },
}

impl Default for Decision {
    fn default() -> Self {
        Decision::Quorum {
            replicas: 2,
            share: 0.5,
        }
    }
}

impl Decision {
    /// [`Quorum`](Self::Quorum) of `replicas` peers, or half of all replicas.
    pub fn quorum(replicas: u32) -> Self {
        Decision::Quorum {
            replicas,
            share: 0.5,
        }
    }

    /// [`Pooled`](Self::Pooled) with at least `min_contributors` replicas contributing.
    pub fn pooled(min_contributors: u32) -> Self {
        Decision::Pooled { min_contributors }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        const WHO: &str = "shared breakers";
        match *self {
            Decision::Follow => Ok(()),
            Decision::Quorum { replicas, share } => {
                if replicas == 0 {
                    return Err(ConfigError::new(
                        WHO,
                        "decision.replicas",
                        "must be at least 1, got 0",
                    ));
                }
                if !(share > 0.0 && share <= 1.0) {
                    return Err(ConfigError::new(
                        WHO,
                        "decision.share",
                        format!("must be in (0, 1], got {share}"),
                    ));
                }
                Ok(())
            }
            Decision::Pooled { min_contributors } => {
                if min_contributors == 0 {
                    Err(ConfigError::new(
                        WHO,
                        "decision.min_contributors",
                        "must be at least 1, got 0",
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// What a breaker in `local`'s state should do about `peers` (every live peer's latest
    /// snapshot): open (for a given time, or its own), or nothing. `trips` judges summed
    /// window counts by the breaker's thresholds; `max_open` caps a followed open time.
    pub(crate) fn decide(
        &self,
        local: &LocalView,
        peers: &[Snapshot],
        trips: impl Fn(u64, u64, u64) -> bool,
        max_open: Duration,
    ) -> Option<OpenFor> {
        if local.state != State::Closed || !matches!(local.mode, Mode::Normal | Mode::MetricsOnly) {
            return None;
        }
        let evidence = || peers.iter().filter(|p| p.opened_on_evidence());
        let followed = || {
            evidence()
                .filter_map(|p| p.open_left)
                .max()
                .map_or(OpenFor::Own, |d| OpenFor::Peers(d.min(max_open)))
        };
        match *self {
            Decision::Follow => evidence().next().map(|_| followed()),
            Decision::Quorum { replicas, share } => {
                let open = evidence().count();
                let live = peers.len() + 1;
                let enough = open >= replicas as usize || open as f64 >= share * live as f64;
                (open > 0 && enough).then(followed)
            }
            Decision::Pooled { min_contributors } => {
                let pooled = || peers.iter().filter(|p| p.counts_pooled());
                let contributors =
                    usize::from(local.calls > 0) + pooled().filter(|p| p.calls > 0).count();
                if contributors < min_contributors as usize {
                    return None;
                }
                let (calls, failures, slow) =
                    pooled().fold((local.calls, local.failures, local.slow), |(c, f, s), p| {
                        (
                            c.saturating_add(p.calls),
                            f.saturating_add(p.failures),
                            s.saturating_add(p.slow),
                        )
                    });
                trips(calls, failures, slow).then_some(OpenFor::Own)
            }
        }
    }
}

/// How long a breaker that peers open stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenFor {
    /// The peers' time left.
    Peers(Duration),
    /// Its own open time.
    Own,
}

impl OpenFor {
    pub(crate) fn duration(self) -> Option<Duration> {
        match self {
            OpenFor::Peers(d) => Some(d),
            OpenFor::Own => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Reason;

    const MAX: Duration = Duration::from_secs(60);

    fn closed() -> LocalView {
        LocalView {
            state: State::Closed,
            mode: Mode::Normal,
            reason: Reason::Manual,
            generation: 0,
            calls: 0,
            failures: 0,
            slow: 0,
            open_left: None,
        }
    }

    fn peer(state: State, reason: Reason, left_s: u64) -> Snapshot {
        Snapshot {
            state,
            mode: Mode::Normal,
            reason,
            calls: 0,
            failures: 0,
            slow: 0,
            open_left: (state == State::Open).then(|| Duration::from_secs(left_s)),
            generation: 1,
        }
    }

    fn open(left_s: u64) -> Snapshot {
        peer(State::Open, Reason::FailureRate, left_s)
    }

    fn ok() -> Snapshot {
        peer(State::Closed, Reason::ProbesSucceeded, 0)
    }

    fn never(_: u64, _: u64, _: u64) -> bool {
        false
    }

    #[test]
    fn follow_opens_on_any_evidence_for_the_longest_time_left() {
        let d = Decision::Follow;
        assert_eq!(d.decide(&closed(), &[ok(), ok()], never, MAX), None);
        assert_eq!(
            d.decide(&closed(), &[ok(), open(10), open(25)], never, MAX),
            Some(OpenFor::Peers(Duration::from_secs(25)))
        );
        // Capped at the breaker's own longest open time.
        assert_eq!(
            d.decide(&closed(), &[open(3600)], never, MAX),
            Some(OpenFor::Peers(MAX))
        );
        // A peer that followed others, or was forced, is no evidence.
        let followed = peer(State::Open, Reason::Peers, 20);
        let mut forced = open(20);
        forced.mode = Mode::ForcedOpen;
        assert_eq!(d.decide(&closed(), &[followed, forced], never, MAX), None);
        // Only a closed breaker is opened by peers.
        let mut half = closed();
        half.state = State::HalfOpen;
        assert_eq!(d.decide(&half, &[open(10)], never, MAX), None);
        let mut forced_closed = closed();
        forced_closed.mode = Mode::ForcedClosed;
        assert_eq!(d.decide(&forced_closed, &[open(10)], never, MAX), None);
    }

    #[test]
    fn quorum_needs_enough_replicas_or_a_share_of_them() {
        let d = Decision::Quorum {
            replicas: 3,
            share: 0.5,
        };
        // 10 replicas (9 peers): 2 open is neither 3 nor half.
        let mut peers = vec![ok(); 7];
        peers.extend([open(5), open(6)]);
        assert_eq!(d.decide(&closed(), &peers, never, MAX), None);
        peers[0] = open(7);
        assert_eq!(
            d.decide(&closed(), &peers, never, MAX),
            Some(OpenFor::Peers(Duration::from_secs(7)))
        );
        // 3 replicas (2 peers): 1 open is not half of 3; 2 are.
        assert_eq!(d.decide(&closed(), &[ok(), open(5)], never, MAX), None);
        assert!(
            d.decide(&closed(), &[open(5), open(5)], never, MAX)
                .is_some()
        );
        // Alone, with no peers alive: nothing to follow.
        assert_eq!(d.decide(&closed(), &[], never, MAX), None);
    }

    #[test]
    fn pooled_judges_the_summed_windows_with_enough_contributors() {
        let d = Decision::pooled(3);
        let mut local = closed();
        local.calls = 10;
        local.failures = 3;
        let with = |calls, failures| Snapshot {
            calls,
            failures,
            ..ok()
        };
        let half = |c: u64, f: u64, _s: u64| c >= 20 && f * 2 >= c;
        // Each replica alone is under 50 %; together they are over it.
        let peers = [with(10, 4), with(10, 9)];
        assert_eq!(d.decide(&local, &peers, half, MAX), Some(OpenFor::Own));
        // Two contributors are not enough.
        assert_eq!(
            d.decide(&local, &[with(10, 9), with(0, 0)], half, MAX),
            None
        );
        // A forced peer's window is not counted.
        let mut forced = with(10, 9);
        forced.mode = Mode::ForcedClosed;
        assert_eq!(d.decide(&local, &[with(10, 4), forced], half, MAX), None);
    }

    #[test]
    fn a_bad_decision_is_an_error_naming_its_field() {
        let e = Decision::quorum(0).validate().unwrap_err();
        assert!(e.to_string().contains("decision.replicas"), "{e}");
        let e = Decision::Quorum {
            replicas: 2,
            share: 1.5,
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("decision.share"), "{e}");
        let e = Decision::pooled(0).validate().unwrap_err();
        assert!(e.to_string().contains("decision.min_contributors"), "{e}");
        assert!(Decision::default().validate().is_ok());
    }
}
