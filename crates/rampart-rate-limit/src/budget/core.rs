//! The budget's policy core: what is spent in the current period, reserved before a call and
//! settled after it, on a wall clock read from tokio's (so that paused time drives it).

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rampart_core::{
    clock::Instant,
    rejection::{LimitInfo, LimitReason, LimitedBy, RateLimited},
    sync::lock,
};

use super::period::Period;

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
    /// When the current period ends.
    pub resets_at: SystemTime,
    /// Calls refused since the start.
    pub rejected: u64,
}

pub(crate) type AlertHook = Arc<dyn Fn(&BudgetAlert) + Send + Sync>;

struct State {
    /// The current period's number.
    period: i64,
    /// Its end, in Unix seconds.
    ends: i64,
    spent: u64,
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
                fired: 0,
                total,
                rejected: 0,
            }),
        }
    }

    fn now(&self) -> SystemTime {
        self.wall0 + Instant::now().saturating_duration_since(self.mono0)
    }

    /// Moves `s` to the period holding `unix` if it has ended.
    fn roll(&self, s: &mut State, unix: i64) {
        if unix >= s.ends {
            let (n, _, ends) = self.period.at(unix);
            s.period = n;
            s.ends = ends;
            s.spent = 0;
            s.fired = 0;
        }
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
                let until = Duration::from_secs(u64::try_from(s.ends - unix).unwrap_or(0))
                    .saturating_sub(Duration::from_nanos(u64::from(
                        now.duration_since(UNIX_EPOCH)
                            .unwrap_or_default()
                            .subsec_nanos(),
                    )));
                let too_high = estimate > s.total;
                let info = LimitInfo {
                    quota: s.total,
                    window: self.period.nominal(),
                    remaining: s.total.saturating_sub(s.spent),
                    reset: until,
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
                s.spent += estimate;
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
    /// a period that has ended settles nothing: that period is closed.
    pub(crate) fn settle(&self, r: Reservation, actual: u64) {
        if actual == r.estimate {
            return;
        }
        let mut alerts = Vec::new();
        {
            let mut s = lock(&self.state);
            self.roll(&mut s, unix_secs(self.now()));
            if s.period != r.period {
                return;
            }
            s.spent = if actual > r.estimate {
                s.spent.saturating_add(actual - r.estimate)
            } else {
                s.spent.saturating_sub(r.estimate - actual)
            };
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
                    resets_at: UNIX_EPOCH + Duration::from_secs(u64::try_from(s.ends).unwrap_or(0)),
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
            resets_at: UNIX_EPOCH + Duration::from_secs(u64::try_from(s.ends).unwrap_or(0)),
            rejected: s.rejected,
        }
    }

    pub(crate) fn set_total(&self, total: u64) {
        lock(&self.state).total = total;
    }
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}
