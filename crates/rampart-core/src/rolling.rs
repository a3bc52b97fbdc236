//! [`RollingCounts`]: counters over a rolling time window, in a ring of time slots.
//!
//! The one ring behind the retry budget (deposits and withdrawals over its TTL) and the health
//! success rate (successes and failures over its window). A window of `d` in `s` slots keeps
//! `s` slots of `d / s` each; a count goes into the slot of the current period with one relaxed
//! atomic add, and only moving a slot on to a new period (once per slot length, by whichever
//! call gets there first) takes a lock. A sum reads every slot whose period is within the last
//! `s`, so the window slides in steps of one slot: a count leaves it between `d - d/s` and `d`
//! after it was made.
//!
//! The period is a 64-bit division of the nanoseconds since the ring was made (a 128-bit one
//! costs several times more on the hot path); 2^64 ns is 584 years of uptime.
//!
//! ```
//! use std::time::Duration;
//! use rampart_core::clock::ManualClock;
//! use rampart_core::rolling::RollingCounts;
//!
//! let clock = ManualClock::new();
//! let ring = RollingCounts::<2>::new(clock.shared(), Duration::from_secs(10), 10);
//! ring.add(0, 3);
//! ring.add(1, 1);
//! assert_eq!(ring.sum(), [3, 1]);
//! clock.advance(Duration::from_secs(10));
//! assert_eq!(ring.sum(), [0, 0], "a whole window later, gone");
//! ```

use std::{
    fmt,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::{
    clock::{Instant, SharedClock},
    sync::lock,
};

/// `N` counters over a rolling time window. See the [module docs](self).
pub struct RollingCounts<const N: usize> {
    clock: SharedClock,
    epoch: Instant,
    slot_nanos: u64,
    slots: Box<[Slot<N>]>,
    /// Serialises moving a slot on to a new period.
    roll: Mutex<()>,
}

struct Slot<const N: usize> {
    /// The period the counts belong to, plus one: 0 is "never used".
    tag: AtomicU64,
    counts: [AtomicU64; N],
}

impl<const N: usize> fmt::Debug for RollingCounts<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RollingCounts")
            .field("slots", &self.slots.len())
            .field("slot", &Duration::from_nanos(self.slot_nanos))
            .field("sum", &self.sum())
            .finish()
    }
}

impl<const N: usize> RollingCounts<N> {
    /// A ring over `window`, in `slots` slots (at least 1; a zero-length slot is made 1 ns),
    /// on `clock`.
    pub fn new(clock: SharedClock, window: Duration, slots: u32) -> Self {
        let slots = slots.max(1);
        let slot_nanos = u64::try_from(window.as_nanos() / u128::from(slots))
            .unwrap_or(u64::MAX)
            .max(1);
        Self {
            epoch: clock.now(),
            clock,
            slot_nanos,
            slots: (0..slots)
                .map(|_| Slot {
                    tag: AtomicU64::new(0),
                    counts: std::array::from_fn(|_| AtomicU64::new(0)),
                })
                .collect(),
            roll: Mutex::new(()),
        }
    }

    /// The current period's tag (period plus one).
    #[inline]
    fn tag(&self) -> u64 {
        let since = self.clock.now().saturating_duration_since(self.epoch);
        let nanos = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX);
        (nanos / self.slot_nanos).saturating_add(1)
    }

    /// Adds `n` to counter `i` (`i < N`; a larger `i` is ignored) in the current slot.
    #[inline]
    pub fn add(&self, i: usize, n: u64) {
        let tag = self.tag();
        let slot = &self.slots[(tag % self.slots.len() as u64) as usize];
        if slot.tag.load(Ordering::Acquire) != tag {
            self.roll(slot, tag);
        }
        if let Some(c) = slot.counts.get(i) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Moves `slot` on to `tag`, unless another call just did (or moved it further).
    ///
    /// A call that saw the slot current and adds to it while a call a whole window later
    /// clears it may land in the new period: that needs a thread stalled for a whole window
    /// between two instructions, and costs one miscounted call.
    #[cold]
    fn roll(&self, slot: &Slot<N>, tag: u64) {
        let _guard = lock(&self.roll);
        if slot.tag.load(Ordering::Acquire) < tag {
            for c in &slot.counts {
                c.store(0, Ordering::Relaxed);
            }
            slot.tag.store(tag, Ordering::Release);
        }
    }

    /// Each counter summed over the window as it stands now.
    pub fn sum(&self) -> [u64; N] {
        let now = self.tag();
        let n = self.slots.len() as u64;
        let mut out = [0u64; N];
        for slot in self.slots.iter() {
            let tag = slot.tag.load(Ordering::Acquire);
            if tag != 0 && tag <= now && now - tag < n {
                for (o, c) in out.iter_mut().zip(&slot.counts) {
                    *o = o.saturating_add(c.load(Ordering::Relaxed));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn ring(clock: &ManualClock) -> RollingCounts<2> {
        RollingCounts::new(clock.shared(), Duration::from_secs(10), 10)
    }

    #[test]
    fn counts_slide_out_one_slot_at_a_time() {
        let clock = ManualClock::new();
        let r = ring(&clock);
        r.add(0, 1); // period 0
        clock.advance(Duration::from_secs(5));
        r.add(0, 10); // period 5
        r.add(1, 2);
        assert_eq!(r.sum(), [11, 2]);
        clock.advance(Duration::from_secs(5)); // period 10: period 0 is out
        assert_eq!(r.sum(), [10, 2]);
        r.add(0, 100); // reuses period 0's slot
        assert_eq!(r.sum(), [110, 2]);
        clock.advance(Duration::from_secs(5)); // period 15: period 5 is out
        assert_eq!(r.sum(), [100, 0]);
    }

    #[test]
    fn an_idle_ring_reads_empty_after_many_windows() {
        let clock = ManualClock::new();
        let r = ring(&clock);
        r.add(0, 7);
        clock.advance(Duration::from_secs(3600));
        assert_eq!(r.sum(), [0, 0]);
        r.add(1, 1);
        assert_eq!(r.sum(), [0, 1]);
    }

    #[test]
    fn an_out_of_range_counter_is_ignored() {
        let clock = ManualClock::new();
        let r = ring(&clock);
        r.add(5, 1);
        assert_eq!(r.sum(), [0, 0]);
    }
}
