//! The background task of a [`SharedBreakers`](super::SharedBreakers): publishes each joined
//! breaker's snapshot, reads its peers', applies the [`Decision`](super::Decision) and keeps
//! the probe lease. Requests never wait on it.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Weak, atomic::Ordering},
    task::{Context, Poll},
    time::Duration,
};

use rampart_core::BoxFuture;

use super::{
    Inner,
    snapshot::{MAX_OPEN_LEFT, Snapshot},
};
use crate::{
    config::OpenDuration,
    events::{Reason, State},
    policy::{Core, GATE_LOCAL, GATE_OWNER, GATE_PEER, Mode},
};

/// At most this many peers' snapshots are read per breaker; more are ignored (and counted as
/// bad), so a flood of replica names cannot make a round unbounded. A backend may return
/// fewer.
pub const MAX_PEERS: usize = 256;

/// The driver of a [`SharedBreakers`](super::SharedBreakers), from
/// [`SharedBreakersBuilder::build`](super::SharedBreakersBuilder::build): spawn it on a tokio
/// runtime (as `tower::buffer::Buffer::pair` hands back its worker). It runs while a clone of
/// its `SharedBreakers` or a breaker that joined it lives, and ends after both are gone.
#[must_use = "the driver does nothing unless spawned or awaited"]
pub struct Driver {
    fut: BoxFuture<'static, ()>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.fut.as_mut().poll(cx)
    }
}

impl Driver {
    pub(super) fn new(inner: Weak<Inner>, every: Duration) -> Self {
        Self {
            fut: Box::pin(run(inner, every)),
        }
    }
}

/// What the driver remembers of one breaker between rounds.
#[derive(Default)]
struct Tracked {
    /// Each peer's last `(state, generation)`, to see a recovery as it happens.
    seen: HashMap<String, (State, u64)>,
    /// The generation whose probe lease was last asked for.
    asked: Option<u64>,
}

async fn run(inner: Weak<Inner>, every: Duration) {
    let mut tracked: HashMap<Arc<str>, Tracked> = HashMap::new();
    // The first round is a full one, at once.
    let mut next = tokio::time::Instant::now();
    loop {
        let wake = match inner.upgrade() {
            Some(inner) => inner.wake.clone(),
            None => return,
        };
        // A transition wakes the driver early (publish only); the period's end makes a full
        // round.
        let full = tokio::time::timeout_at(next, wake.notified())
            .await
            .is_err();
        if full {
            next = rampart_core::clock::saturating_add(tokio::time::Instant::now(), every);
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let cores = inner.members();
        tracked.retain(|name, _| cores.iter().any(|c| c.name == *name));
        let mut failed = None;
        for core in &cores {
            let t = tracked.entry(core.name.clone()).or_default();
            if let Err(e) = inner.round(core, t, full).await {
                failed = Some(e);
                break;
            }
        }
        match failed {
            Some(e) => inner.degrade(&cores, &e),
            None if full => inner.recover(),
            None => {}
        }
    }
}

impl Inner {
    /// One breaker's part of a round: publish if it changed (or on every tick), read and judge
    /// its peers on a tick, then keep its probe lease. An error stops the round.
    async fn round(&self, core: &Arc<Core>, t: &mut Tracked, full: bool) -> Result<(), String> {
        let Some(link) = core.peer_link() else {
            return Ok(());
        };
        let dirty = link.dirty.swap(false, Ordering::AcqRel);
        let mut view = core.local_view();
        // A fresh open asks for the probe lease before peers can see it open, so that the
        // replica that opened first (not one that followed it) usually gets it.
        if view.state == State::Open && t.asked != Some(view.generation) {
            self.keep_lease(core, t, &view, false).await?;
        }
        if dirty || full {
            let snapshot = Snapshot::of(&view).encode();
            let published = self
                .op(
                    "publish",
                    self.backend
                        .publish(&core.name, &self.replica, snapshot.as_bytes(), self.ttl),
                )
                .await;
            if let Err(e) = published {
                link.dirty.store(true, Ordering::Release);
                return Err(e);
            }
        }
        if full {
            let peers = self
                .op("read peers", self.backend.peers(&core.name))
                .await?;
            let peers = self.decode(peers);
            let recovered = peers.iter().any(|(who, s)| {
                t.seen.get(who).is_some_and(|(state, generation)| {
                    *state != State::Closed
                        && s.state == State::Closed
                        && s.reason == Reason::ProbesSucceeded
                        && s.generation != *generation
                })
            });
            t.seen = peers
                .iter()
                .map(|(who, s)| (who.clone(), (s.state, s.generation)))
                .collect();
            let deferred = link.gate.load(Ordering::Acquire) == GATE_PEER;
            let followed = view.state == State::Open && view.reason == Reason::Peers;
            if recovered && view.state != State::Closed && (deferred || followed) {
                if core.close_by_peers() {
                    self.counters.closed.fetch_add(1, Ordering::Relaxed);
                    self.metric_decision("close");
                }
            } else {
                let snaps: Vec<Snapshot> = peers.into_iter().map(|(_, s)| s).collect();
                let max_open = longest_open(&core.config().open_duration);
                let verdict = self.decision.decide(
                    &view,
                    &snaps,
                    |c, f, s| core.would_trip(c, f, s),
                    max_open,
                );
                if let Some(open_for) = verdict
                    && core.open_by_peers(open_for.duration())
                {
                    self.counters.opened.fetch_add(1, Ordering::Relaxed);
                    self.metric_decision("open");
                }
            }
            view = core.local_view();
        }
        self.keep_lease(core, t, &view, full).await
    }

    /// The probe lease: asked for when the breaker opens (and on every tick while open, so
    /// that a lease whose owner vanished is taken over), renewed by its owner, given up when
    /// the breaker closes.
    async fn keep_lease(
        &self,
        core: &Arc<Core>,
        t: &mut Tracked,
        view: &crate::policy::LocalView,
        full: bool,
    ) -> Result<(), String> {
        let Some(link) = core.peer_link() else {
            return Ok(());
        };
        let gate = link.gate.load(Ordering::Acquire);
        let normal = matches!(view.mode, Mode::Normal | Mode::MetricsOnly);
        if view.state == State::Closed || !normal {
            if gate == GATE_OWNER {
                self.op(
                    "release the probe lease",
                    self.backend.release_probe(&core.name, &self.replica),
                )
                .await?;
            }
            link.gate.store(GATE_LOCAL, Ordering::Release);
            t.asked = None;
            return Ok(());
        }
        if !full && t.asked == Some(view.generation) {
            return Ok(());
        }
        let ttl = view
            .open_left
            .unwrap_or_default()
            .saturating_add(self.probe_lease);
        let owner = self
            .op(
                "take the probe lease",
                self.backend.acquire_probe(&core.name, &self.replica, ttl),
            )
            .await?;
        t.asked = Some(view.generation);
        link.gate.store(
            if owner { GATE_OWNER } else { GATE_PEER },
            Ordering::Release,
        );
        Ok(())
    }

    /// Reads peers' snapshots: this replica's own and unreadable ones left out (those
    /// counted), at most [`MAX_PEERS`].
    fn decode(&self, raw: Vec<(String, Vec<u8>)>) -> Vec<(String, Snapshot)> {
        let mut out = Vec::with_capacity(raw.len().min(MAX_PEERS));
        let mut bad = 0u64;
        for (who, bytes) in raw {
            if *who == *self.replica {
                continue;
            }
            if out.len() == MAX_PEERS {
                bad += 1;
                continue;
            }
            match Snapshot::decode(&bytes) {
                Some(s) if super::valid_replica(&who) => out.push((who, s)),
                _ => bad += 1,
            }
        }
        if bad > 0 {
            self.counters.bad.fetch_add(bad, Ordering::Relaxed);
            metrics::counter!(
                "rampart_circuit_breaker_shared_bad_snapshots_total",
                rampart_core::registry::INSTANCE_LABEL => self.replica.to_string()
            )
            .increment(bad);
            tracing::debug!(target: "rampart::circuit_breaker", replica = %self.replica, bad, "peer snapshots ignored: unreadable, or too many peers");
        }
        out
    }

    /// Runs one backend operation under the timeout.
    async fn op<T>(
        &self,
        what: &'static str,
        fut: BoxFuture<'_, Result<T, super::BackendError>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.op_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(format!("{what}: {}", rampart_core::error::chain_line(&e))),
            Err(_) => Err(format!("{what}: no answer within {:?}", self.op_timeout)),
        }
    }

    fn metric_decision(&self, decision: &'static str) {
        metrics::counter!(
            "rampart_circuit_breaker_shared_decisions_total",
            rampart_core::registry::INSTANCE_LABEL => self.replica.to_string(),
            "decision" => decision
        )
        .increment(1);
    }
}

/// The longest a breaker configured with `d` stays open: what a followed open is capped at.
fn longest_open(d: &OpenDuration) -> Duration {
    match *d {
        OpenDuration::Fixed(d) => d,
        OpenDuration::Exponential { max, .. } => max,
    }
    .min(MAX_OPEN_LEFT)
}
