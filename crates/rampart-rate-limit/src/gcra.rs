//! The policy core: GCRA (the generic cell rate algorithm of ATM networks, as governor and
//! redis-cell use it) over one atomic word. Plain synchronous code on nanosecond timestamps:
//! no clock, no tower.
//!
//! A cell keeps the *theoretical arrival time* (TAT): when the limit would be back to full
//! had nothing more been sent. A call of cost `c` at `now` moves it to
//! `max(TAT, now) + c × interval`, and is admitted when that is at most `tau` (the burst
//! times the interval) ahead of `now`; otherwise it would be admitted `ahead - tau` later.
//! Over any window `w`, the admitted cost is at most `burst + w / interval`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::quota::Params;

/// One limit's state: the TAT, in nanoseconds since the limiter's epoch (0 for a limit never
/// used: as good as any time in the past).
#[derive(Debug, Default)]
pub(crate) struct Cell {
    tat: AtomicU64,
}

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Admitted now; the cost is spent.
    Admit,
    /// Admitted after waiting this many nanoseconds; the cost is spent (reserved), so the
    /// caller must wait, not ask again.
    Wait(u64),
    /// Refused: it would fit after this many nanoseconds, more than the allowed wait. Nothing
    /// was spent.
    Over(u64),
    /// Refused: the cost is more than the burst, so it can never fit. Nothing was spent.
    TooCostly,
}

impl Cell {
    /// Decides a call of `cost` at `now` under `p`, waiting at most `max_wait` nanoseconds.
    /// Spends the cost only if the call is admitted (now or after a wait).
    #[inline]
    pub(crate) fn check(&self, now: u64, cost: u64, p: &Params, max_wait: u64) -> Decision {
        if cost > p.burst {
            return Decision::TooCostly;
        }
        let inc = cost.saturating_mul(p.interval);
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let new_tat = tat.max(now).saturating_add(inc);
            let wait = (new_tat - now).saturating_sub(p.tau);
            if wait > max_wait {
                return Decision::Over(wait);
            }
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if wait == 0 => return Decision::Admit,
                Ok(_) => return Decision::Wait(wait),
                Err(seen) => tat = seen,
            }
        }
    }

    /// The units left at `now` (what a call could spend at once) and the nanoseconds until
    /// the limit is full again.
    pub(crate) fn remaining(&self, now: u64, p: &Params) -> (u64, u64) {
        let tat = self.tat.load(Ordering::Acquire).max(now);
        let used = tat - now;
        let left = p.tau.saturating_sub(used) / p.interval;
        (left, used)
    }

    /// `true` while the cell holds a debt: forgetting it would grant a fresh burst.
    pub(crate) fn in_debt(&self, now: u64) -> bool {
        self.tat.load(Ordering::Relaxed) > now
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::quota::Quota;

    const MS: u64 = 1_000_000;

    fn p(units: u64, per_ms: u64, burst: u64) -> Params {
        Quota::new(units, Duration::from_millis(per_ms))
            .burst(burst)
            .params("test")
            .unwrap()
    }

    #[test]
    fn an_idle_limit_grants_its_burst_then_one_unit_per_interval() {
        let q = p(10, 1000, 3); // one per 100 ms, 3 at once
        let c = Cell::default();
        let t0 = 5_000 * MS;
        for _ in 0..3 {
            assert_eq!(c.check(t0, 1, &q, 0), Decision::Admit);
        }
        assert_eq!(c.check(t0, 1, &q, 0), Decision::Over(100 * MS));
        assert_eq!(c.check(t0 + 99 * MS, 1, &q, 0), Decision::Over(MS));
        assert_eq!(c.check(t0 + 100 * MS, 1, &q, 0), Decision::Admit);
        assert_eq!(c.check(t0 + 100 * MS, 1, &q, 0), Decision::Over(100 * MS));
        // Idle for long: back to the burst, no more.
        let later = t0 + 60_000 * MS;
        for _ in 0..3 {
            assert_eq!(c.check(later, 1, &q, 0), Decision::Admit);
        }
        assert!(matches!(c.check(later, 1, &q, 0), Decision::Over(_)));
    }

    #[test]
    fn a_cost_spends_that_many_units_and_one_over_the_burst_never_fits() {
        let q = p(10, 1000, 5);
        let c = Cell::default();
        assert_eq!(c.check(0, 4, &q, 0), Decision::Admit);
        assert_eq!(c.check(0, 2, &q, 0), Decision::Over(100 * MS));
        assert_eq!(c.check(0, 1, &q, 0), Decision::Admit);
        assert_eq!(c.check(0, 6, &q, u64::MAX), Decision::TooCostly);
        assert_eq!(
            c.check(0, 0, &q, 0),
            Decision::Admit,
            "a free call always passes"
        );
    }

    #[test]
    fn a_wait_reserves_the_cost_so_the_next_caller_waits_longer() {
        let q = p(10, 1000, 1);
        let c = Cell::default();
        assert_eq!(c.check(0, 1, &q, 250 * MS), Decision::Admit);
        assert_eq!(c.check(0, 1, &q, 250 * MS), Decision::Wait(100 * MS));
        assert_eq!(c.check(0, 1, &q, 250 * MS), Decision::Wait(200 * MS));
        assert_eq!(c.check(0, 1, &q, 250 * MS), Decision::Over(300 * MS));
    }

    #[test]
    fn remaining_counts_what_can_go_at_once() {
        let q = p(10, 1000, 4);
        let c = Cell::default();
        assert_eq!(c.remaining(0, &q), (4, 0));
        c.check(0, 3, &q, 0);
        assert_eq!(c.remaining(0, &q), (1, 300 * MS));
        assert!(c.in_debt(0));
        assert_eq!(c.remaining(300 * MS, &q), (4, 0));
        assert!(!c.in_debt(300 * MS));
    }

    proptest! {
        /// Over any window, the admitted cost never exceeds the burst plus the window's
        /// share of the rate.
        #[test]
        fn admitted_cost_in_any_window_is_bounded(
            units in 1u64..50,
            per_ms in 1u64..2000,
            burst in 1u64..20,
            calls in prop::collection::vec((0u64..300, 0u64..25, 0u64..3), 1..300),
        ) {
            let q = p(units, per_ms, burst);
            let c = Cell::default();
            let mut now = 0;
            let mut admitted: Vec<(u64, u64)> = Vec::new();
            for (advance_ms, cost, wait_steps) in calls {
                now += advance_ms * MS / 10;
                let max_wait = wait_steps * q.interval;
                match c.check(now, cost, &q, max_wait) {
                    Decision::Admit => admitted.push((now, cost)),
                    // It goes out when the wait ends.
                    Decision::Wait(w) => {
                        prop_assert!(w <= max_wait);
                        admitted.push((now + w, cost));
                    }
                    Decision::Over(w) => prop_assert!(w > max_wait),
                    Decision::TooCostly => prop_assert!(cost > burst),
                }
            }
            admitted.sort_unstable();
            for (i, &(start, _)) in admitted.iter().enumerate() {
                for j in i..admitted.len() {
                    let window = admitted[j].0 - start;
                    let spent: u64 = admitted[i..=j].iter().map(|(_, c)| c).sum();
                    let bound = burst + window / q.interval;
                    prop_assert!(
                        spent <= bound,
                        "{spent} admitted within {window} ns; bound {bound}"
                    );
                }
            }
        }
    }
}
