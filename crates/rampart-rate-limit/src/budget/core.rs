//! The budget's policy core: what is spent in the current period, reserved before a call and
//! settled after it, on a wall clock read from tokio's (so that paused time drives it).

use std::{
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rampart_core::{
    clock::Instant,
    rejection::{LimitInfo, LimitReason, LimitedBy, RateLimited},
    sync::lock,
};

use super::{
    period::{Period, ROLLING_SLOTS},
    store::{BudgetSnapshot, BudgetStore},
};

/// A threshold of the budget crossed in a period: what the alert hook gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetAlert {
    /// The threshold, in percent of the budget (80, 100, …).
    pub percent: u8,
    /// Units spent in the period so far.
    pub spent: u64,
    /// The budget per period.
    pub total: u64,
    /// When the period ends.
    pub resets_at: SystemTime,
}

/// A budget's state, as its handle reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetStats {
    /// Units spent (settled, or reserved by calls in flight) in the current period.
    pub spent: u64,
    /// The budget per period.
    pub total: u64,
    /// When the whole budget is back: the end of the current period (for a rolling window:
    /// when what was spent last leaves it).
    pub resets_at: SystemTime,
    /// Calls refused since the start.
    pub rejected: u64,
}

pub(crate) type AlertHook = Arc<dyn Fn(&BudgetAlert) + Send + Sync>;

struct State {
    /// The current period's number (for a rolling window: the current slot's).
    period: i64,
    /// Its end, in Unix seconds.
    ends: i64,
    /// Spent in the period (for a rolling window: in the slots still in the window).
    spent: u64,
    /// A rolling window's slots still in it, oldest first: (slot number, spent in it).
    ///
    /// Not core's `RollingCounts`, on purpose: that ring counts lock-free on the monotonic
    /// clock from a per-process epoch, so its slot numbers mean nothing after a restart. A
    /// budget's slots are numbered in wall-clock time (Unix seconds over the slot length),
    /// because they are what a [`BudgetStore`] keeps and a restarted replica reads back; and
    /// they change only under `state`'s lock, which the thresholds and reservations need
    /// anyway. A window holds at most `ROLLING_SLOTS` (60) slots, so a deque is enough.
    slots: std::collections::VecDeque<(i64, u64)>,
    /// Thresholds already fired this period (bit i for `thresholds[i]`).
    fired: u32,
    total: u64,
    rejected: u64,
}

/// One budget's shared state.
pub(crate) struct BudgetCore {
    pub(crate) name: Arc<str>,
    period: Period,
    thresholds: Vec<u8>,
    on_alert: Option<AlertHook>,
    /// The wall clock is `wall0` plus tokio's time since `mono0`.
    wall0: SystemTime,
    mono0: Instant,
    state: Mutex<State>,
    /// Set when the spending changed since the last snapshot was taken for the store.
    dirty: AtomicBool,
    /// Where the spending is kept, if anywhere.
    pub(crate) store: Option<Arc<dyn BudgetStore>>,
}

impl fmt::Debug for BudgetCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetCore")
            .field("name", &self.name)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

/// A reservation: what a call holds until it settles.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reservation {
    period: i64,
    pub(crate) estimate: u64,
}

impl BudgetCore {
    pub(crate) fn new(
        name: Arc<str>,
        total: u64,
        period: Period,
        thresholds: Vec<u8>,
        on_alert: Option<AlertHook>,
        wall0: SystemTime,
        store: Option<Arc<dyn BudgetStore>>,
    ) -> Self {
        let mono0 = Instant::now();
        let unix = unix_secs(wall0);
        let (n, _, ends) = period.at(unix);
        Self {
            name,
            period,
            thresholds,
            on_alert,
            wall0,
            mono0,
            state: Mutex::new(State {
                period: n,
                ends,
                spent: 0,
                slots: std::collections::VecDeque::new(),
                fired: 0,
                total,
                rejected: 0,
            }),
            dirty: AtomicBool::new(false),
            store,
        }
    }

    fn now(&self) -> SystemTime {
        self.wall0 + Instant::now().saturating_duration_since(self.mono0)
    }

    /// Moves `s` to the period holding `unix` if it has ended; for a rolling window, to the
    /// current slot, dropping the slots that left the window and re-arming the thresholds
    /// the spending fell back under.
    fn roll(&self, s: &mut State, unix: i64) {
        if unix < s.ends {
            return;
        }
        let (n, _, ends) = self.period.at(unix);
        s.period = n;
        s.ends = ends;
        if !self.period.is_rolling() {
            s.spent = 0;
            s.fired = 0;
            return;
        }
        while s
            .slots
            .front()
            .is_some_and(|(slot, _)| *slot <= n - ROLLING_SLOTS)
        {
            s.slots.pop_front();
        }
        s.spent = s.slots.iter().map(|(_, spent)| spent).sum();
        for (i, &percent) in self.thresholds.iter().enumerate() {
            if u128::from(s.spent) * 100 < u128::from(percent) * u128::from(s.total) {
                s.fired &= !(1 << i);
            }
        }
    }

    /// Adds `n` (or takes it away) in the current period, and in its slot for a rolling window.
    fn spend(&self, s: &mut State, slot: i64, add: u64, take: u64) {
        s.spent = s.spent.saturating_add(add).saturating_sub(take);
        self.dirty.store(true, Ordering::Relaxed);
        if !self.period.is_rolling() {
            return;
        }
        match s.slots.iter_mut().find(|(n, _)| *n == slot) {
            Some((_, spent)) => *spent = spent.saturating_add(add).saturating_sub(take),
            None if add > 0 => {
                s.slots.push_back((slot, add));
                s.slots.make_contiguous().sort_unstable_by_key(|(n, _)| *n);
            }
            None => {}
        }
    }

    /// How long until a call of `estimate` fits (`None`: only when the period ends), and when
    /// the whole budget is back, in Unix seconds.
    fn fits_after(&self, s: &State, estimate: u64) -> (Option<i64>, i64) {
        if !self.period.is_rolling() {
            return (None, s.ends);
        }
        let slot = self.period.slot_secs();
        let full = s
            .slots
            .back()
            .map_or(s.ends, |(n, _)| (n + ROLLING_SLOTS) * slot);
        let mut left = s.spent;
        for (n, spent) in &s.slots {
            left = left.saturating_sub(*spent);
            if left.saturating_add(estimate) <= s.total {
                return (Some((n + ROLLING_SLOTS) * slot), full);
            }
        }
        (Some(full), full)
    }

    /// Reserves `estimate`, or refuses: the budget cannot cover it this period.
    pub(crate) fn reserve(&self, estimate: u64) -> Result<Reservation, RateLimited> {
        let now = self.now();
        let unix = unix_secs(now);
        let mut alerts = Vec::new();
        let result = {
            let mut s = lock(&self.state);
            self.roll(&mut s, unix);
            if estimate > s.total || s.spent.saturating_add(estimate) > s.total {
                s.rejected += 1;
                let (fits_at, full_at) = self.fits_after(&s, estimate);
                let subsec = Duration::from_nanos(u64::from(
                    now.duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .subsec_nanos(),
                ));
                let secs_until = |at: i64| {
                    Duration::from_secs(u64::try_from(at - unix).unwrap_or(0))
                        .saturating_sub(subsec)
                };
                let until = secs_until(fits_at.unwrap_or(s.ends));
                let reset = secs_until(full_at);
                let too_high = estimate > s.total;
                let info = LimitInfo {
                    quota: s.total,
                    window: self.period.nominal(),
                    remaining: s.total.saturating_sub(s.spent),
                    reset,
                };
                Err(RateLimited::new(
                    LimitedBy::Budget,
                    if too_high {
                        LimitReason::CostTooHigh
                    } else {
                        LimitReason::OverLimit
                    },
                    estimate,
                    (!too_high).then_some(until),
                    info,
                ))
            } else {
                let slot = s.period;
                self.spend(&mut s, slot, estimate, 0);
                self.crossed(&mut s, &mut alerts);
                Ok(Reservation {
                    period: s.period,
                    estimate,
                })
            }
        };
        self.alert(alerts);
        if let Err(refused) = &result {
            tracing::debug!(
                target: "rampart::budget",
                name = %self.name, cost = estimate, reason = refused.reason().as_str(),
                "call refused: budget"
            );
            metrics::counter!(
                "rampart_budget_rejected_total",
                rampart_core::registry::INSTANCE_LABEL => self.name.to_string()
            )
            .increment(1);
        }
        result
    }

    /// Settles a reservation at `actual` (more or less than the estimate). A reservation of
    /// a period that has ended settles nothing: that period is closed (for a rolling window:
    /// its slot has left the window).
    pub(crate) fn settle(&self, r: Reservation, actual: u64) {
        if actual == r.estimate {
            return;
        }
        let mut alerts = Vec::new();
        {
            let mut s = lock(&self.state);
            self.roll(&mut s, unix_secs(self.now()));
            let open = if self.period.is_rolling() {
                r.period > s.period - ROLLING_SLOTS
            } else {
                s.period == r.period
            };
            if !open {
                return;
            }
            if actual > r.estimate {
                self.spend(&mut s, r.period, actual - r.estimate, 0);
            } else {
                self.spend(&mut s, r.period, 0, r.estimate - actual);
            }
            self.crossed(&mut s, &mut alerts);
        }
        self.alert(alerts);
    }

    /// Thresholds crossed and not yet fired this period.
    fn crossed(&self, s: &mut State, out: &mut Vec<BudgetAlert>) {
        for (i, &percent) in self.thresholds.iter().enumerate() {
            let bit = 1 << i;
            let reached = u128::from(s.spent) * 100 >= u128::from(percent) * u128::from(s.total);
            if reached && s.fired & bit == 0 {
                s.fired |= bit;
                out.push(BudgetAlert {
                    percent,
                    spent: s.spent,
                    total: s.total,
                    resets_at: UNIX_EPOCH
                        + Duration::from_secs(u64::try_from(self.fits_after(s, 0).1).unwrap_or(0)),
                });
            }
        }
    }

    /// Fires the alerts, outside the lock.
    fn alert(&self, alerts: Vec<BudgetAlert>) {
        for a in &alerts {
            tracing::warn!(
                target: "rampart::budget",
                name = %self.name, percent = a.percent, spent = a.spent, total = a.total,
                "budget threshold reached"
            );
            if let Some(hook) = &self.on_alert {
                hook(a);
            }
        }
    }

    pub(crate) fn stats(&self) -> BudgetStats {
        let mut s = lock(&self.state);
        self.roll(&mut s, unix_secs(self.now()));
        BudgetStats {
            spent: s.spent,
            total: s.total,
            resets_at: UNIX_EPOCH
                + Duration::from_secs(u64::try_from(self.fits_after(&s, 0).1).unwrap_or(0)),
            rejected: s.rejected,
        }
    }

    pub(crate) fn set_total(&self, total: u64) {
        lock(&self.state).total = total;
    }

    /// The spending now, for a store; `None` if nothing changed since the last one was taken.
    pub(crate) fn snapshot_if_changed(&self) -> Option<BudgetSnapshot> {
        self.dirty
            .swap(false, Ordering::Relaxed)
            .then(|| self.snapshot())
    }

    /// Marks the spending as not saved (a save failed), so that the next round saves it.
    pub(crate) fn unsaved(&self) {
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// The spending now, for a store.
    pub(crate) fn snapshot(&self) -> BudgetSnapshot {
        let unix = unix_secs(self.now());
        let mut s = lock(&self.state);
        self.roll(&mut s, unix);
        let (_, start, end) = self.period.at(unix);
        BudgetSnapshot {
            start,
            end,
            slot_secs: if self.period.is_rolling() {
                self.period.slot_secs()
            } else {
                0
            },
            spent: s.spent,
            fired: s.fired,
            slots: s.slots.iter().copied().collect(),
        }
    }

    /// Takes up what a store kept: a fixed period's spending if it is the current period (the
    /// same bounds), a rolling window's slots still in it (the same slot length). Anything
    /// else belongs to a period that is over, or to another configuration: the budget starts
    /// fresh. Returns whether anything was taken up.
    pub(crate) fn restore(&self, kept: &BudgetSnapshot) -> bool {
        let unix = unix_secs(self.now());
        let mut s = lock(&self.state);
        self.roll(&mut s, unix);
        if self.period.is_rolling() {
            if kept.slot_secs != self.period.slot_secs() {
                return false;
            }
            let current = s.period;
            s.slots = kept
                .slots
                .iter()
                .copied()
                .filter(|(n, _)| *n > current - ROLLING_SLOTS && *n <= current)
                .collect();
            s.slots.make_contiguous().sort_unstable_by_key(|(n, _)| *n);
            s.spent = s.slots.iter().map(|(_, spent)| spent).sum();
            s.fired = kept.fired;
            // Re-arm the thresholds the spending is back under (as `roll` does).
            for (i, &percent) in self.thresholds.iter().enumerate() {
                if u128::from(s.spent) * 100 < u128::from(percent) * u128::from(s.total) {
                    s.fired &= !(1 << i);
                }
            }
            !s.slots.is_empty()
        } else {
            let (_, start, end) = self.period.at(unix);
            if kept.slot_secs != 0 || (kept.start, kept.end) != (start, end) {
                return false;
            }
            s.spent = kept.spent;
            s.fired = kept.fired;
            true
        }
    }
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}
