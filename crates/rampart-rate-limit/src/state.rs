//! The shared state of one rate limit ([`Core`]: its quota, mode, clock and counts), what it
//! decides ([`Verdict`]) and what it has counted ([`RateLimitStats`]).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use rampart_core::{
    clock::{Instant, SharedClock},
    rejection::{LimitInfo, LimitReason, LimitedBy, RateLimited},
    shard::PerThread,
};

use crate::{
    gcra::{Cell, Decision},
    quota::Params,
};

/// What a call gets: go now, go after a wait (already reserved), or the refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Go,
    After(Duration),
    Refused(RateLimited),
}

/// The quota as atomics, so that a handle can change it while calls are decided. A decision
/// racing a change may see one old and one new value, once.
#[derive(Debug)]
struct QuotaCell {
    interval: AtomicU64,
    burst: AtomicU64,
    tau: AtomicU64,
    units: AtomicU64,
    period: AtomicU64,
}

impl QuotaCell {
    fn new(p: &Params) -> Self {
        let cell = Self {
            interval: AtomicU64::new(0),
            burst: AtomicU64::new(0),
            tau: AtomicU64::new(0),
            units: AtomicU64::new(0),
            period: AtomicU64::new(0),
        };
        cell.set(p);
        cell
    }

    fn set(&self, p: &Params) {
        self.interval.store(p.interval, Ordering::Relaxed);
        self.burst.store(p.burst, Ordering::Relaxed);
        self.tau.store(p.tau, Ordering::Relaxed);
        self.units.store(p.units, Ordering::Relaxed);
        self.period.store(
            u64::try_from(p.period.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// What a check reads: the interval, burst and tau (units and period are left at zero:
    /// only a refusal reports them, and it reads them with [`get`](Self::get)).
    #[inline]
    fn for_check(&self) -> Params {
        Params {
            interval: self.interval.load(Ordering::Relaxed),
            burst: self.burst.load(Ordering::Relaxed),
            tau: self.tau.load(Ordering::Relaxed),
            units: 0,
            period: Duration::ZERO,
        }
    }

    #[inline]
    fn get(&self) -> Params {
        Params {
            interval: self.interval.load(Ordering::Relaxed),
            burst: self.burst.load(Ordering::Relaxed),
            tau: self.tau.load(Ordering::Relaxed),
            units: self.units.load(Ordering::Relaxed),
            period: Duration::from_nanos(self.period.load(Ordering::Relaxed)),
        }
    }
}

/// Counts of one limiter's admissions, per thread (every call writes one, so each thread
/// writes its own cache line, with no atomic read-modify-write).
#[derive(Debug, Default)]
struct Hot {
    admitted: AtomicU64,
    waited: AtomicU64,
    /// The admitted cost beyond one unit per call, wrapping (a cost of 0 takes one away): the
    /// common call of cost 1 writes nothing here.
    extra_cost: AtomicU64,
}

/// Counts of one limiter's decisions.
#[derive(Debug)]
struct Counts {
    hot: PerThread<Hot>,
    rejected: AtomicU64,
    shadow_rejected: AtomicU64,
}

impl Counts {
    fn new() -> Self {
        Self {
            hot: PerThread::new(),
            rejected: AtomicU64::new(0),
            shadow_rejected: AtomicU64::new(0),
        }
    }

    #[inline]
    fn admitted(&self, cost: u64, waited: bool) {
        let mine = self.hot.mine();
        if waited {
            mine.add(|h| &h.waited, 1);
        } else {
            mine.add(|h| &h.admitted, 1);
        }
        if cost != 1 {
            mine.add(|h| &h.extra_cost, cost.wrapping_sub(1));
        }
    }
}

/// What a limiter has decided so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitStats {
    /// Calls admitted at once.
    pub admitted: u64,
    /// Calls admitted after a wait.
    pub waited: u64,
    /// Calls refused.
    pub rejected: u64,
    /// Calls that shadow mode let through but the limit would have refused.
    pub shadow_rejected: u64,
    /// The cost of every admitted call, added up.
    pub admitted_cost: u64,
}

#[derive(Debug)]
struct Metrics {
    admitted: metrics::Counter,
    waited: metrics::Counter,
    rejected: metrics::Counter,
    shadow_rejected: metrics::Counter,
}

impl Metrics {
    fn new(name: &Arc<str>) -> Self {
        let counter = |outcome: &'static str| {
            metrics::counter!(
                "rampart_rate_limit_decisions_total",
                rampart_core::registry::INSTANCE_LABEL => name.to_string(),
                "outcome" => outcome
            )
        };
        Self {
            admitted: counter("admitted"),
            waited: counter("waited"),
            rejected: counter("rejected"),
            shadow_rejected: counter("shadow_rejected"),
        }
    }
}

/// One rate limit's shared state: every layer, service and handle of it holds this `Arc`.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) name: Arc<str>,
    quota: QuotaCell,
    max_wait: u64,
    shadow: AtomicBool,
    clock: SharedClock,
    timed: bool,
    epoch: Instant,
    /// With `fast_clock`: the TSC clock and its reading at the epoch.
    fast: Option<(quanta::Clock, u64)>,
    counts: Counts,
    metrics: Metrics,
}

impl Core {
    pub(crate) fn new(
        name: Arc<str>,
        params: &Params,
        max_wait: Duration,
        shadow: bool,
        clock: SharedClock,
        fast_clock: bool,
    ) -> Self {
        let epoch = clock.now();
        let fast = fast_clock.then(|| {
            let clock = quanta::Clock::new();
            let start = clock.raw();
            (clock, start)
        });
        Self {
            metrics: Metrics::new(&name),
            name,
            quota: QuotaCell::new(params),
            max_wait: u64::try_from(max_wait.as_nanos()).unwrap_or(u64::MAX),
            shadow: AtomicBool::new(shadow),
            timed: clock.is_tokio_time(),
            clock,
            epoch,
            fast,
            counts: Counts::new(),
        }
    }

    /// Nanoseconds since the epoch.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        if let Some((clock, start)) = &self.fast {
            return clock.delta_as_nanos(*start, clock.raw());
        }
        let now = if self.timed {
            Instant::now()
        } else {
            self.clock.now()
        };
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn set_quota(&self, p: &Params) {
        self.quota.set(p);
        tracing::info!(
            target: "rampart::rate_limit",
            name = %self.name, units = p.units, period = ?p.period, burst = p.burst,
            "quota changed"
        );
    }

    pub(crate) fn params(&self) -> Params {
        self.quota.get()
    }

    pub(crate) fn set_shadow(&self, on: bool) {
        self.shadow.store(on, Ordering::Relaxed);
    }

    pub(crate) fn is_shadow(&self) -> bool {
        self.shadow.load(Ordering::Relaxed)
    }

    /// Decides a call of `cost` against `cell`.
    #[inline]
    pub(crate) fn decide(&self, cell: &Cell, cost: u64) -> Verdict {
        let p = self.quota.for_check();
        let now = self.now();
        match cell.check(now, cost, &p, self.max_wait) {
            Decision::Admit => {
                self.counts.admitted(cost, false);
                self.metrics.admitted.increment(1);
                Verdict::Go
            }
            Decision::Wait(nanos) => {
                self.counts.admitted(cost, true);
                self.metrics.waited.increment(1);
                Verdict::After(Duration::from_nanos(nanos))
            }
            Decision::Over(nanos) => self.refuse(cell, now, cost, Some(nanos)),
            Decision::TooCostly => self.refuse(cell, now, cost, None),
        }
    }

    #[cold]
    fn refuse(&self, cell: &Cell, now: u64, cost: u64, wait: Option<u64>) -> Verdict {
        let p = &self.quota.get();
        if self.is_shadow() {
            self.counts.shadow_rejected.fetch_add(1, Ordering::Relaxed);
            self.metrics.shadow_rejected.increment(1);
            tracing::debug!(
                target: "rampart::rate_limit",
                name = %self.name, cost, "shadow mode: would have refused the call"
            );
            return Verdict::Go;
        }
        self.counts.rejected.fetch_add(1, Ordering::Relaxed);
        self.metrics.rejected.increment(1);
        let reason = match wait {
            None => LimitReason::CostTooHigh,
            Some(_) if self.max_wait == 0 => LimitReason::OverLimit,
            Some(_) => LimitReason::WaitTooLong,
        };
        let (remaining, reset) = cell.remaining(now, p);
        let info = LimitInfo {
            quota: p.units,
            window: p.period,
            remaining,
            reset: Duration::from_nanos(reset),
        };
        tracing::debug!(
            target: "rampart::rate_limit",
            name = %self.name, cost, reason = reason.as_str(), "call refused"
        );
        Verdict::Refused(RateLimited::new(
            LimitedBy::Rate,
            reason,
            cost,
            wait.map(Duration::from_nanos),
            info,
        ))
    }

    pub(crate) fn stats(&self) -> RateLimitStats {
        let (mut admitted, mut waited, mut extra) = (0u64, 0u64, 0u64);
        for hot in self.counts.hot.iter() {
            admitted += hot.admitted.load(Ordering::Relaxed);
            waited += hot.waited.load(Ordering::Relaxed);
            extra = extra.wrapping_add(hot.extra_cost.load(Ordering::Relaxed));
        }
        RateLimitStats {
            admitted,
            waited,
            rejected: self.counts.rejected.load(Ordering::Relaxed),
            shadow_rejected: self.counts.shadow_rejected.load(Ordering::Relaxed),
            admitted_cost: (admitted + waited).wrapping_add(extra),
        }
    }
}

impl Verdict {
    #[inline]
    pub(crate) fn into_result(self) -> Result<Option<Duration>, RateLimited> {
        match self {
            Verdict::Go => Ok(None),
            Verdict::After(d) => Ok(Some(d)),
            Verdict::Refused(r) => Err(r),
        }
    }
}
