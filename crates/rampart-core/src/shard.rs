//! Per-CPU shards of hot counters: [`Padded`], [`shard_count`] and [`current_shard`]; and
//! [`PerThread`] counters, written without atomic read-modify-writes.
//!
//! A counter every call bumps (a breaker's outcomes, a limiter's admissions) becomes a cache
//! line every core fights over. Sharding it — one copy per shard, each on its own cache
//! lines, summed when read — lets each thread write its own. A thread's shard is fixed for
//! its life (given out round-robin as threads first ask), so two threads share a shard only
//! when there are more threads than shards.
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use rampart_core::shard::{Padded, current_shard, shard_count};
//!
//! let counts: Vec<Padded<AtomicU64>> = (0..shard_count()).map(|_| Padded(AtomicU64::new(0))).collect();
//! counts[current_shard()].0.fetch_add(1, Ordering::Relaxed);
//! let total: u64 = counts.iter().map(|c| c.0.load(Ordering::Relaxed)).sum();
//! assert_eq!(total, 1);
//! ```

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use crate::sync::lock;

/// Pads and aligns to two cache lines, so neighbouring shards never share one (adjacent-line
/// prefetching pulls pairs of lines on x86).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

/// Slots of threads that have ended, smallest first: a new thread takes one of them before a
/// new number, so slot numbers stay as dense as the threads alive at once (a blocking pool
/// that churns through threads reuses the same few).
static FREE_SLOTS: Mutex<BinaryHeap<Reverse<usize>>> = Mutex::new(BinaryHeap::new());

/// A thread's slot number, given back when the thread ends.
struct Slot(usize);

impl Slot {
    fn take() -> Self {
        match lock(&FREE_SLOTS).pop() {
            Some(Reverse(n)) => Slot(n),
            None => Slot(NEXT_THREAD.fetch_add(1, Ordering::Relaxed)),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // The thread's last write to its slots happens before this push, and the next owner
        // takes the number under the same lock: one writer at a time, in order.
        lock(&FREE_SLOTS).push(Reverse(self.0));
    }
}

thread_local! {
    static THREAD_SLOT: Slot = Slot::take();
}

/// The calling thread's slot number; `usize::MAX` while the thread's locals are being torn
/// down (its counts then go to the shared slot).
#[inline]
fn thread_slot() -> usize {
    THREAD_SLOT.try_with(|s| s.0).unwrap_or(usize::MAX)
}

/// The number of shards: the CPU count rounded up to a power of two, at most 64.
pub fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 64)
            .next_power_of_two()
    })
}

/// The calling thread's shard, below [`shard_count`].
#[inline]
pub fn current_shard() -> usize {
    thread_slot() & (shard_count() - 1)
}

/// Counters that each thread writes alone, so that bumping one is a plain load and store, not
/// an atomic read-modify-write (on x86 a `lock`ed instruction costs several nanoseconds even
/// uncontended).
///
/// Each thread owns one slot while it lives (twice [`shard_count`] slots, at most 128; a
/// thread that ends gives its slot to the next one), written by it alone and read by anyone;
/// the threads beyond them, when more are alive at once, share one slot written with atomic
/// adds. Either way the counts are exact; a reader sums the slots and may miss an add still in
/// flight.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use rampart_core::shard::PerThread;
///
/// #[derive(Debug, Default)]
/// struct Counts { admitted: AtomicU64 }
///
/// let counts: PerThread<Counts> = PerThread::new();
/// let mine = counts.mine();
/// mine.add(|c| &c.admitted, 2);
/// let total: u64 = counts.iter().map(|c| c.admitted.load(Ordering::Relaxed)).sum();
/// assert_eq!(total, 2);
/// ```
#[derive(Debug)]
pub struct PerThread<T> {
    owned: Box<[Padded<T>]>,
    shared: Padded<T>,
}

impl<T: Default> Default for PerThread<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Default> PerThread<T> {
    /// A slot for each of the first threads, and the shared one.
    pub fn new() -> Self {
        let slots = (2 * shard_count()).min(128);
        Self {
            owned: (0..slots).map(|_| Padded(T::default())).collect(),
            shared: Padded(T::default()),
        }
    }
}

impl<T> PerThread<T> {
    /// The calling thread's slot.
    #[inline]
    pub fn mine(&self) -> Mine<'_, T> {
        let id = thread_slot();
        match self.owned.get(id) {
            Some(slot) => Mine {
                slot: &slot.0,
                owned: true,
            },
            None => Mine {
                slot: &self.shared.0,
                owned: false,
            },
        }
    }

    /// Every slot, to sum.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.owned
            .iter()
            .map(|p| &p.0)
            .chain(std::iter::once(&self.shared.0))
    }
}

/// The calling thread's slot of a [`PerThread`].
#[derive(Debug, Clone, Copy)]
pub struct Mine<'a, T> {
    slot: &'a T,
    owned: bool,
}

impl<'a, T> Mine<'a, T> {
    /// Adds `n` (wrapping) to the counter `field` picks in this thread's slot: a plain load
    /// and store in a slot this thread owns, an atomic add in the shared one.
    #[inline]
    pub fn add(&self, field: impl FnOnce(&'a T) -> &'a std::sync::atomic::AtomicU64, n: u64) {
        let counter = field(self.slot);
        if self.owned {
            counter.store(
                counter.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        } else {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, atomic::AtomicU64};

    use super::*;

    #[derive(Debug, Default)]
    struct Counts {
        n: AtomicU64,
    }

    #[test]
    fn the_slots_of_ended_threads_are_given_out_again() {
        let slots: std::collections::HashSet<usize> = (0..50)
            .map(|_| {
                std::thread::spawn(thread_slot)
                    .join()
                    .expect("a thread reading its slot")
            })
            .collect();
        // One thread at a time: the same few numbers (a few more if other tests' threads
        // come and go meanwhile), not fifty.
        assert!(slots.len() < 10, "{slots:?}");
    }

    #[test]
    fn counts_from_many_threads_are_exact() {
        // More threads than owned slots: some share the atomic one.
        let counts: Arc<PerThread<Counts>> = Arc::new(PerThread::new());
        let threads = 2 * counts.owned.len() + 3;
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let counts = counts.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        counts.mine().add(|c| &c.n, 1);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("a counting thread");
        }
        let total: u64 = counts.iter().map(|c| c.n.load(Ordering::Relaxed)).sum();
        assert_eq!(total, threads as u64 * 10_000);
    }
}
