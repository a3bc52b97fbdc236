//! A retry budget: retries may add at most a fixed fraction to the load a client sends, so a
//! failing dependency sees a bounded amplification rather than a retry storm.
//!
//! In the spirit of Finagle's `RetryBudget` and gRPC's retry throttling: every original request
//! [deposits](RetryBudget::deposit), every retry [withdraws](RetryBudget::try_withdraw), and a
//! retry is allowed while
//!
//! ```text
//! ratio × requests in the last `ttl` + min_per_sec × ttl − retries in the last `ttl` ≥ 1
//! ```
//!
//! The arithmetic is exact in millionths: a ratio of 0.6 allows exactly 6 retries per 10
//! requests. (tower's `TpsBudget` turns the ratio into whole tokens per request and so rounds
//! 0.6 up to 1.0: one retry per request.) `min_per_sec` keeps a small reserve so that a client
//! with little traffic can still retry.
//!
//! ```
//! use std::time::Duration;
//! use rampart_core::clock::ManualClock;
//! use rampart_retry::budget::RetryBudget;
//!
//! let clock = ManualClock::new();
//! let budget = RetryBudget::builder()
//!     .ratio(0.6)
//!     .min_per_sec(0)
//!     .ttl(Duration::from_secs(10))
//!     .clock(clock.shared())
//!     .build()?;
//! for _ in 0..10 {
//!     budget.deposit();
//! }
//! let allowed = (0..10).filter(|_| budget.try_withdraw()).count();
//! assert_eq!(allowed, 6);
//! # Ok::<(), rampart_core::error::ConfigError>(())
//! ```
//!
//! The window rolls in 10 slots of `ttl / 10`; deposits and withdrawals are lock-free atomic
//! additions into the current slot. Two retries racing for the last unit of budget may both
//! pass: the budget can be overdrawn by the number of retries decided at the same instant.

use std::{fmt, sync::Arc, time::Duration};

use rampart_core::{
    clock::{SharedClock, default_clock},
    error::ConfigError,
    rolling::RollingCounts,
};

const COMPONENT: &str = "retry budget";
const UNIT: u128 = 1_000_000;
const SLOTS: u32 = 10;

const DEPOSITS: usize = 0;
const WITHDRAWALS: usize = 1;

struct Inner {
    ratio_millionths: u128,
    reserve_millionths: u128,
    /// Deposits and withdrawals over the TTL.
    counts: RollingCounts<2>,
}

/// A retry budget shared by every clone. See the [module docs](self).
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ratio", &(self.inner.ratio_millionths as f64 / UNIT as f64))
            .field("available", &self.available())
            .finish_non_exhaustive()
    }
}

impl Default for RetryBudget {
    /// 20 % of the requests of the last 10 s, plus 10 retries a second.
    fn default() -> Self {
        match RetryBudget::builder().build() {
            Ok(b) => b,
            Err(e) => unreachable!("the defaults are valid: {e}"),
        }
    }
}

impl RetryBudget {
    /// A builder with the [defaults](RetryBudget::default).
    pub fn builder() -> RetryBudgetBuilder {
        RetryBudgetBuilder {
            ttl: Duration::from_secs(10),
            min_per_sec: 10,
            ratio: 0.2,
            clock: default_clock(),
        }
    }

    /// Records an original request (not a retry).
    #[inline]
    pub fn deposit(&self) {
        self.inner.counts.add(DEPOSITS, 1);
    }

    /// Takes one retry out of the budget; `false` (and nothing taken) if it is spent.
    pub fn try_withdraw(&self) -> bool {
        if self.balance() < UNIT {
            return false;
        }
        self.inner.counts.add(WITHDRAWALS, 1);
        true
    }

    /// What the budget holds now, in millionths of a retry.
    fn balance(&self) -> u128 {
        let i = &self.inner;
        let [deposits, withdrawals] = i.counts.sum().map(u128::from);
        (deposits * i.ratio_millionths + i.reserve_millionths).saturating_sub(withdrawals * UNIT)
    }

    /// How many retries the budget would allow now.
    pub fn available(&self) -> u64 {
        u64::try_from(self.balance() / UNIT).unwrap_or(u64::MAX)
    }
}

/// Builds a [`RetryBudget`]; [`build`](Self::build) validates every field.
#[derive(Clone)]
pub struct RetryBudgetBuilder {
    ttl: Duration,
    min_per_sec: u32,
    ratio: f64,
    clock: SharedClock,
}

impl fmt::Debug for RetryBudgetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudgetBuilder")
            .field("ttl", &self.ttl)
            .field("min_per_sec", &self.min_per_sec)
            .field("ratio", &self.ratio)
            .finish_non_exhaustive()
    }
}

impl RetryBudgetBuilder {
    /// How long a deposit counts (1 s..=60 s; default 10 s).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Retries a second allowed even without traffic (default 10).
    pub fn min_per_sec(mut self, n: u32) -> Self {
        self.min_per_sec = n;
        self
    }

    /// Retries allowed per request, in 0..=1000 (default 0.2), exact to a millionth.
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// The clock (default: tokio's).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&self.ttl) {
            return Err(ConfigError::new(
                COMPONENT,
                "ttl",
                format!("must be in 1s..=60s, got {:?}", self.ttl),
            ));
        }
        if !(self.ratio.is_finite() && (0.0..=1000.0).contains(&self.ratio)) {
            return Err(ConfigError::new(
                COMPONENT,
                "ratio",
                format!("must be a number in 0..=1000, got {}", self.ratio),
            ));
        }
        let ratio_millionths = (self.ratio * UNIT as f64).round() as u128;
        let reserve_millionths =
            (f64::from(self.min_per_sec) * self.ttl.as_secs_f64() * UNIT as f64).round() as u128;
        Ok(RetryBudget {
            inner: Arc::new(Inner {
                ratio_millionths,
                reserve_millionths,
                counts: RollingCounts::new(self.clock, self.ttl, SLOTS),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_core::clock::ManualClock;

    fn budget(clock: &ManualClock, ratio: f64, min_per_sec: u32) -> RetryBudget {
        RetryBudget::builder()
            .ratio(ratio)
            .min_per_sec(min_per_sec)
            .ttl(Duration::from_secs(10))
            .clock(clock.shared())
            .build()
            .unwrap()
    }

    #[test]
    fn fractional_ratios_are_exact() {
        for (ratio, requests, retries) in [(0.6, 10, 6), (0.1, 100, 10), (0.25, 8, 2), (1.5, 4, 6)]
        {
            let clock = ManualClock::new();
            let b = budget(&clock, ratio, 0);
            for _ in 0..requests {
                b.deposit();
            }
            let allowed = (0..100).filter(|_| b.try_withdraw()).count();
            assert_eq!(allowed, retries, "ratio {ratio} over {requests} requests");
        }
    }

    #[test]
    fn retries_stop_under_sustained_failure() {
        // Every request fails and is retried while the budget lasts: retries stay a fraction
        // of the requests instead of multiplying them.
        let clock = ManualClock::new();
        let b = budget(&clock, 0.2, 1);
        let (mut requests, mut retries) = (0u64, 0u64);
        for _ in 0..600 {
            // 600 s at 10 requests a second, each wanting 3 retries (18 000 without a budget).
            for _ in 0..10 {
                b.deposit();
                requests += 1;
                for _ in 0..3 {
                    if b.try_withdraw() {
                        retries += 1;
                    }
                }
            }
            clock.advance(Duration::from_millis(1000));
        }
        // At most ratio × requests, plus the reserve of 1 a second, plus the first window's.
        let bound = requests / 5 + 600 + 10;
        assert!(
            retries <= bound,
            "{retries} retries for {requests} requests"
        );
        assert!(retries >= requests / 5, "the budget is used: {retries}");
    }

    #[test]
    fn deposits_expire_after_the_ttl_but_the_reserve_stays() {
        let clock = ManualClock::new();
        let b = budget(&clock, 1.0, 0);
        for _ in 0..5 {
            b.deposit();
        }
        assert_eq!(b.available(), 5);
        clock.advance(Duration::from_secs(10));
        assert_eq!(b.available(), 0, "the deposits are gone");
        let b = budget(&clock, 0.0, 2);
        assert_eq!(b.available(), 20, "2 a second over 10 s");
    }

    #[test]
    fn clones_share_one_budget() {
        let clock = ManualClock::new();
        let a = budget(&clock, 0.5, 0);
        let b = a.clone();
        for _ in 0..4 {
            a.deposit();
        }
        assert!(b.try_withdraw() && b.try_withdraw());
        assert!(!a.try_withdraw());
    }

    #[test]
    fn bad_configuration_names_the_field() {
        let field = |b: RetryBudgetBuilder| b.build().unwrap_err().field();
        assert_eq!(field(RetryBudget::builder().ttl(Duration::ZERO)), "ttl");
        assert_eq!(
            field(RetryBudget::builder().ttl(Duration::from_secs(61))),
            "ttl"
        );
        assert_eq!(field(RetryBudget::builder().ratio(-0.1)), "ratio");
        assert_eq!(field(RetryBudget::builder().ratio(f64::NAN)), "ratio");
    }
}
