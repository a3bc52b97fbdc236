//! Per-CPU shards of hot counters: [`Padded`], [`shard_count`] and [`current_shard`].
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

use std::sync::{
    OnceLock,
    atomic::{AtomicUsize, Ordering},
};

/// Pads and aligns to two cache lines, so neighbouring shards never share one (adjacent-line
/// prefetching pulls pairs of lines on x86).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_SLOT: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
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
    THREAD_SLOT.with(|s| *s) & (shard_count() - 1)
}
