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
//! On tokio's clock, in a multi-thread runtime, [`add`](RollingCounts::add) does not read the
//! clock at all while a slot lasts: the first add of a slot reads it, keeps the slot's period,
//! and arms an [`Alarm`] a little before the slot ends (5 ms); until the alarm goes off, adds
//! use the kept period (one atomic load). The trade-offs: one timer per slot length while the
//! ring is in use; slots shorter than 15 ms are never kept (every add reads the clock); and a
//! timer that fires late (a runtime so overloaded that its timers run more than 5 ms behind)
//! lets a few adds land in the slot that just ended, so they leave the window up to one slot
//! early. [`sum`](RollingCounts::sum) always reads the clock. On any other clock (a
//! `ManualClock` in tests), in a current-thread runtime or outside one, every add reads the
//! clock, as before.
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
    clock::{Alarm, Instant, SharedClock},
    sync::lock,
};

/// How long before a slot's end its kept period is dropped (more than tokio's millisecond of
/// timer rounding, with room for a busy runtime).
const LEAD: Duration = Duration::from_millis(5);

/// `N` counters over a rolling time window. See the [module docs](self).
pub struct RollingCounts<const N: usize> {
    clock: SharedClock,
    epoch: Instant,
    slot_nanos: u64,
    slots: Box<[Slot<N>]>,
    /// Serialises moving a slot on to a new period.
    roll: Mutex<()>,
    /// The current slot's tag while an alarm guards it; 0: read the clock.
    current: std::sync::Arc<AtomicU64>,
    /// Drops `current` a little before the slot ends; `None` unless the clock is tokio's.
    alarm: Option<Alarm>,
    /// Clock reads left before arming is tried again, after it failed (no multi-thread
    /// runtime here): a failed try costs more than the read it would save.
    skip: std::sync::atomic::AtomicU32,
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
            alarm: clock.is_tokio_time().then(Alarm::new),
            current: std::sync::Arc::new(AtomicU64::new(0)),
            skip: std::sync::atomic::AtomicU32::new(0),
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

    /// The current period's tag for an add: the kept one while its alarm has not gone off.
    #[inline]
    fn add_tag(&self) -> u64 {
        match self.current.load(Ordering::Acquire) {
            0 => self.read_and_keep(),
            tag => tag,
        }
    }

    /// Reads the clock and, if an alarm can guard it, keeps the slot's tag until a little
    /// before the slot ends.
    #[inline(never)]
    fn read_and_keep(&self) -> u64 {
        let now = self.clock.now();
        let since = now.saturating_duration_since(self.epoch);
        let nanos = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX);
        let tag = (nanos / self.slot_nanos).saturating_add(1);
        let Some(alarm) = &self.alarm else {
            return tag;
        };
        // The slot `tag` ends `tag` slot lengths after the epoch.
        let end = tag
            .checked_mul(self.slot_nanos)
            .map(|end| crate::clock::saturating_add(self.epoch, Duration::from_nanos(end)));
        let Some(deadline) = end.and_then(|end| end.checked_sub(LEAD)) else {
            return tag;
        };
        // Too close to the end (or a slot too short): not worth a timer.
        if deadline.saturating_duration_since(now) <= LEAD {
            return tag;
        }
        let skip = self.skip.load(Ordering::Relaxed);
        if skip > 0 {
            // A plain store, not a read-modify-write: a lost decrement only delays a retry.
            self.skip.store(skip - 1, Ordering::Relaxed);
            return tag;
        }
        if self
            .current
            .compare_exchange(0, tag, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let current = self.current.clone();
            let armed = alarm.arm(deadline, move || {
                let _ = current.compare_exchange(tag, 0, Ordering::AcqRel, Ordering::Relaxed);
            });
            if !armed {
                self.current.store(0, Ordering::Release);
                self.skip.store(1024, Ordering::Relaxed);
            }
        }
        tag
    }

    /// Adds `n` to counter `i` (`i < N`; a larger `i` is ignored) in the current slot.
    #[inline]
    pub fn add(&self, i: usize, n: u64) {
        let tag = self.add_tag();
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

    /// The kept slot is dropped by its alarm a little before the slot ends, so adds read the
    /// clock again. Real time, because tokio pauses time only in a current-thread runtime, where
    /// no alarm is armed; the test waits for the alarm itself (about 25 ms), not a fixed sleep.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_kept_slot_ends_with_its_alarm() {
        let ring =
            RollingCounts::<1>::new(crate::clock::default_clock(), Duration::from_millis(60), 2);
        // 30 ms slots; the ring was made just now, so this add is at the start of slot 1.
        ring.add(0, 1);
        let kept = ring.current.load(Ordering::Acquire);
        assert_eq!(kept, 1, "a multi-thread runtime keeps the first slot");
        let cleared = async {
            while ring.current.load(Ordering::Acquire) == kept {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), cleared)
            .await
            .expect("the alarm dropped the kept slot");
        let at = ring.clock.now();
        assert!(
            at >= ring.epoch + Duration::from_millis(25),
            "not before the slot's end less the lead"
        );
        ring.add(0, 5);
        assert_ne!(
            ring.current.load(Ordering::Acquire),
            kept,
            "the next add reads the clock, not the dropped slot"
        );
        assert_eq!(ring.sum(), [6], "both adds are in the window");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_current_thread_runtime_keeps_no_slot() {
        let ring =
            RollingCounts::<1>::new(crate::clock::default_clock(), Duration::from_secs(10), 10);
        ring.add(0, 1);
        assert_eq!(ring.current.load(Ordering::Acquire), 0);
        assert_eq!(ring.sum(), [1]);
    }

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
