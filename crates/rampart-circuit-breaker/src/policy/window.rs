//! The rolling window: per-CPU shards of time buckets (lock-free adds), or one exact count
//! ring; reading it, judging its rates, and clearing it.

use super::*;

pub(crate) use rampart_core::shard::{Padded, current_shard, shard_count};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) total: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

impl Counts {
    pub(super) fn add(&mut self, failure: bool, slow: bool) {
        self.total += 1;
        self.failures += u64::from(failure);
        self.slow += u64::from(slow);
    }
}

/// The counts of one time bucket, written lock-free. Cache-line aligned, so that the buckets of
/// neighbouring shards (separate allocations) never share a line.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(super) struct Bucket {
    pub(super) total: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) slow: AtomicU64,
}

impl Bucket {
    /// What the bucket holds. The failures and slow calls are read first, with `Acquire`
    /// (they are counted with `Release` after the call's total): every one seen has its call in
    /// the total read after it. A concurrent `take` can still leave a moment's excess, so the
    /// parts are capped by the total.
    pub(super) fn load(&self) -> Counts {
        let failures = self.failures.load(Ordering::Acquire);
        let slow = self.slow.load(Ordering::Acquire);
        let total = self.total.load(Ordering::Relaxed);
        Counts {
            total,
            failures: failures.min(total),
            slow: slow.min(total),
        }
    }

    /// Empties the bucket, returning what it held (nothing recorded meanwhile is lost).
    pub(super) fn take(&self) -> Counts {
        Counts {
            total: self.total.swap(0, Ordering::AcqRel),
            failures: self.failures.swap(0, Ordering::AcqRel),
            slow: self.slow.swap(0, Ordering::AcqRel),
        }
    }
}

/// The exact count window: a ring of the last `size` outcomes.
#[derive(Debug)]
pub(super) struct CountRing {
    /// bit 0: failure, bit 1: slow.
    pub(super) slots: Vec<u8>,
    pub(super) next: usize,
    pub(super) len: usize,
    pub(super) counts: Counts,
}

impl CountRing {
    pub(super) fn push(&mut self, failure: bool, slow: bool) {
        let size = self.slots.len();
        if self.len == size {
            let old = self.slots[self.next];
            self.counts.total -= 1;
            self.counts.failures -= u64::from(old & 1);
            self.counts.slow -= u64::from(old >> 1);
        } else {
            self.len += 1;
        }
        self.slots[self.next] = u8::from(failure) | (u8::from(slow) << 1);
        self.next = (self.next + 1) % size;
        self.counts.add(failure, slow);
    }

    pub(super) fn clear(&mut self) {
        self.next = 0;
        self.len = 0;
        self.counts = Counts::default();
    }
}

/// One CPU's part of a breaker. Its time buckets are rolling: slot `b % n` holds bucket `b`,
/// tagged in `epochs`; a call records with one atomic add into its bucket, and only moving a
/// slot on to a new bucket takes the lock.
#[derive(Debug, Default)]
pub(super) struct Shard {
    /// Counts of buckets that were rolled over or cleared (for lifetime stats); also
    /// serialises rolling over and reading the window.
    pub(super) retired: Mutex<Counts>,
    pub(super) epochs: Box<[AtomicU64]>,
    pub(super) buckets: Box<[Bucket]>,
    /// The last bucket recorded into and its slot (`bucket << 16 | slot`), to skip a division.
    pub(super) cursor: AtomicU64,
    /// Lifetime counts of the calls not recorded into `buckets`.
    pub(super) successes: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) slow: AtomicU64,
    pub(super) ignored: AtomicU64,
    pub(super) rejected: AtomicU64,
}

impl Core {
    #[inline]
    pub(super) fn shard(&self, i: usize) -> &Shard {
        &self.shards[i & (self.shards.len() - 1)].0
    }

    /// Records into the window; `false` if the call belongs to an older generation.
    #[inline]
    pub(super) fn record_window(
        self: &Arc<Self>,
        shard: usize,
        generation: u64,
        failure: bool,
        slow: bool,
        now: Option<Instant>,
    ) -> bool {
        let current = |core: &Self| unpack(core.state.load(Ordering::Acquire)).2 == generation;
        if let Some(ring) = &self.ring {
            let mut ring = lock(ring);
            if !current(self) {
                return false;
            }
            ring.push(failure, slow);
            return true;
        }
        let tick = self.tick.load(Ordering::Acquire);
        let bucket = if TickWord::is_valid(tick) {
            TickWord::bucket(tick)
        } else {
            self.refresh_tick(tick, now)
        };
        let s = self.shard(shard);
        let cursor = s.cursor.load(Ordering::Relaxed);
        let slot = if cursor >> 16 == bucket {
            (cursor & 0xffff) as usize
        } else {
            let slot = (bucket % s.epochs.len() as u64) as usize;
            s.cursor
                .store((bucket << 16) | slot as u64, Ordering::Relaxed);
            slot
        };
        let epoch = s.epochs[slot].load(Ordering::Acquire);
        if epoch != bucket && (epoch == u64::MAX || epoch < bucket) {
            self.roll(s, slot, bucket);
        }
        // A call racing with a transition may land in the window it just left or entered: at
        // most the calls in flight at that moment, which the lock-free path accepts.
        let b = &s.buckets[slot];
        b.total.fetch_add(1, Ordering::Relaxed);
        if failure {
            b.failures.fetch_add(1, Ordering::Release);
        }
        if slow {
            b.slow.fetch_add(1, Ordering::Release);
        }
        true
    }

    /// Moves `slot` on to `bucket`, retiring what it held.
    #[cold]
    pub(super) fn roll(&self, s: &Shard, slot: usize, bucket: u64) {
        let mut retired = lock(&s.retired);
        let epoch = s.epochs[slot].load(Ordering::Acquire);
        if epoch == u64::MAX || epoch < bucket {
            let old = s.buckets[slot].take();
            retired.total += old.total;
            retired.failures += old.failures;
            retired.slow += old.slow;
            s.epochs[slot].store(bucket, Ordering::Release);
        }
    }

    /// The counts in the current window.
    pub(crate) fn window_counts(&self, now: Option<Instant>) -> Counts {
        if let Some(ring) = &self.ring {
            return lock(ring).counts;
        }
        let now = now.unwrap_or_else(|| self.clock.now());
        let current = self.nanos(now) / self.bucket_nanos;
        let mut sum = Counts::default();
        for shard in self.shards.iter() {
            let s = &shard.0;
            let _rolling = lock(&s.retired);
            let n = s.epochs.len() as u64;
            for (epoch, b) in s.epochs.iter().zip(s.buckets.iter()) {
                let epoch = epoch.load(Ordering::Acquire);
                if epoch != u64::MAX && epoch <= current && current - epoch < n {
                    let c = b.load();
                    sum.total += c.total;
                    sum.failures += c.failures;
                    sum.slow += c.slow;
                }
            }
        }
        sum
    }

    pub(super) fn judge(&self, now: Option<Instant>) -> Option<Reason> {
        self.judge_counts(self.window_counts(now))
    }

    /// Whether window counts `c` trip the breaker, and why.
    pub(super) fn judge_counts(&self, c: Counts) -> Option<Reason> {
        if c.total < u64::from(self.cfg.minimum_calls) {
            return None;
        }
        if let Some(ppm) = self.cfg.failure_rate_ppm
            && c.failures * 1_000_000 >= ppm * c.total
        {
            return Some(Reason::FailureRate);
        }
        if self.cfg.slow_call_threshold.is_some()
            && c.slow * 1_000_000 >= self.cfg.slow_call_rate_ppm * c.total
        {
            return Some(Reason::SlowCallRate);
        }
        None
    }

    /// Empties the window. The generation was bumped before, so a record racing with this
    /// either lands before the clear (and is cleared) or sees the new generation (and is dropped).
    pub(super) fn clear_window(&self) {
        if let Some(ring) = &self.ring {
            lock(ring).clear();
        }
        for shard in self.shards.iter() {
            let s = &shard.0;
            let mut retired = lock(&s.retired);
            for (epoch, b) in s.epochs.iter().zip(s.buckets.iter()) {
                let old = b.take();
                retired.total += old.total;
                retired.failures += old.failures;
                retired.slow += old.slow;
                epoch.store(u64::MAX, Ordering::Release);
            }
        }
    }
}
