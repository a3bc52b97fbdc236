//! The distributed limit's local memory of its refusals: a key Redis refused stays refused
//! here until the time Redis named, so that a hot key over its limit costs no round trip.
//!
//! Exact but for half a round trip, not an approximation: Redis refused a call of cost `c`
//! because the key's debt lets no call of cost `c` through before `until`; every other
//! replica's calls only push that time later, so refusing a call of cost `c` or more before
//! `until` is what Redis would answer (`until` is counted from when the answer arrived, so it
//! may fall up to half a round trip late).
//! A cheaper call is still asked. What this cannot know is a change made behind the limiter's
//! back (the key deleted by hand to reset it): such a key stays refused here until `until`.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use rampart_core::{
    rejection::{LimitInfo, LimitReason, LimitedBy, RateLimited},
    sync::lock,
};
use tokio::time::Instant;

/// A refusal remembered for one key.
#[derive(Debug, Clone, Copy)]
struct Refused {
    /// The smallest cost refused (a cheaper call is asked again).
    cost: u64,
    /// When a call of that cost fits.
    until: Instant,
    /// What Redis said of the limit, and when.
    info: LimitInfo,
    at: Instant,
}

/// Remembered refusals, at most `max` keys.
#[derive(Debug)]
pub(crate) struct Refusals {
    max: usize,
    keys: Mutex<HashMap<String, Refused>>,
}

impl Refusals {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The refusal Redis would answer for a call of `cost` on `key` now, if one is remembered
    /// and the wait it names is longer than `max_wait`.
    pub(crate) fn check(&self, key: &str, cost: u64, max_wait: Duration) -> Option<RateLimited> {
        if self.max == 0 {
            return None;
        }
        let now = Instant::now();
        let mut keys = lock(&self.keys);
        let refused = *keys.get(key)?;
        if refused.until <= now {
            keys.remove(key);
            return None;
        }
        let wait = refused.until - now;
        if cost < refused.cost || wait <= max_wait {
            return None;
        }
        let info = LimitInfo {
            reset: refused.info.reset.saturating_sub(now - refused.at),
            ..refused.info
        };
        let reason = if max_wait.is_zero() {
            LimitReason::OverLimit
        } else {
            LimitReason::WaitTooLong
        };
        Some(RateLimited::new(
            LimitedBy::Rate,
            reason,
            cost,
            Some(wait),
            info,
        ))
    }

    /// Remembers that Redis refused a call of `cost` on `key`, fitting after `wait`.
    pub(crate) fn note(&self, key: &str, cost: u64, wait: Duration, info: LimitInfo) {
        if self.max == 0 || wait.is_zero() {
            return;
        }
        let now = Instant::now();
        let entry = Refused {
            cost,
            until: now + wait,
            info,
            at: now,
        };
        let mut keys = lock(&self.keys);
        if let Some(old) = keys.get_mut(key) {
            // Keep the smaller cost: it is the stronger statement.
            if cost <= old.cost {
                *old = entry;
            }
            return;
        }
        if keys.len() >= self.max {
            keys.retain(|_, r| r.until > now);
            if keys.len() >= self.max {
                return; // full of live refusals: this one is asked again next time
            }
        }
        keys.insert(key.to_owned(), entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> LimitInfo {
        LimitInfo {
            quota: 10,
            window: Duration::from_secs(60),
            remaining: 0,
            reset: Duration::from_secs(6),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_holds_until_its_time_for_that_cost_or_more() {
        let r = Refusals::new(10);
        r.note("k", 2, Duration::from_secs(6), info());
        let hit = r.check("k", 2, Duration::ZERO).expect("remembered");
        assert_eq!(hit.retry_after(), Some(Duration::from_secs(6)));
        assert_eq!(hit.reason(), LimitReason::OverLimit);
        assert!(
            r.check("k", 3, Duration::ZERO).is_some(),
            "dearer: refused too"
        );
        assert!(r.check("k", 1, Duration::ZERO).is_none(), "cheaper: asked");
        assert!(r.check("other", 2, Duration::ZERO).is_none());
        assert!(
            r.check("k", 2, Duration::from_secs(6)).is_none(),
            "a wait within max_wait is Redis's to reserve"
        );

        tokio::time::advance(Duration::from_secs(4)).await;
        let hit = r.check("k", 2, Duration::ZERO).unwrap();
        assert_eq!(hit.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(hit.info().reset, Duration::from_secs(2));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            r.check("k", 2, Duration::ZERO).is_none(),
            "its time has come"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_memory_is_bounded_and_off_at_zero() {
        let r = Refusals::new(2);
        r.note("a", 1, Duration::from_secs(1), info());
        r.note("b", 1, Duration::from_secs(10), info());
        r.note("c", 1, Duration::from_secs(10), info());
        assert!(r.check("c", 1, Duration::ZERO).is_none(), "full: not kept");
        tokio::time::advance(Duration::from_secs(2)).await;
        r.note("c", 1, Duration::from_secs(10), info());
        assert!(
            r.check("c", 1, Duration::ZERO).is_some(),
            "room once a's expired"
        );
        assert!(r.check("b", 1, Duration::ZERO).is_some());

        let off = Refusals::new(0);
        off.note("k", 1, Duration::from_secs(10), info());
        assert!(off.check("k", 1, Duration::ZERO).is_none());
    }
}
