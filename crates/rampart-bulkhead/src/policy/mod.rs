//! The bulkhead's decisions: permits, priority classes and the wait queue. Plain synchronous
//! code over atomics and one short lock; no tower types.
//!
//! # Cost model
//!
//! The live count of every class is packed into one `AtomicU64` (with `n` classes, `64 / n`
//! bits each). Admission while nobody waits is one load of the waiter count and one
//! compare-and-swap of that word; release is one atomic subtraction and one load. The lock
//! guarding the wait queues is taken only when the bulkhead is full: to queue, to hand a freed
//! permit to a waiter, and to give up waiting.
//!
//! # Who gets a permit
//!
//! A call of class `c` may be admitted when the total is below the capacity and either
//!
//! 1. `c` is below its reservation (it uses its own capacity), or
//! 2. `c` may borrow, and after admitting it the free capacity still covers the idle
//!    reservations of every class *above* `c`.
//!
//! So a borrower never eats into the reservation of a more important class, while a more
//! important class that may borrow can use the idle reservation of a less important one (and
//! the shared pool above the sum of the reservations). Such a loan is returned at the next
//! release: a class below its reservation takes any free permit.
//!
//! When a permit is released and calls are waiting, the permit goes first to the oldest waiter
//! of the highest-priority class that is *below its reservation* (it reclaims its own slot), and
//! only then to borrowers, by priority, oldest first. Hence the starvation bound: a waiter whose
//! class is below its reservation is admitted after at most (the waiters ahead of it in its own
//! class) + (the reservation shortfall of the classes above it) releases. Borrowing beyond a
//! reservation is best effort, by priority, and bounded by `max_wait`.
//!
//! Newcomers don't overtake waiters: while any call waits, admission goes through the queue.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    },
    task::Waker,
    time::Duration,
};

use rampart_core::sync::lock;
use rampart_core::{
    clock::{Instant, SharedClock},
    error::ConfigError,
};

use crate::{
    config::{BulkheadConfig, MAX_CLASSES, max_capacity},
    error::{BulkheadFull, FullReason},
};

#[derive(Debug)]
struct Class {
    name: Arc<str>,
    queue_rejections: AtomicU64,
    admitted: metrics::Counter,
    rejected: metrics::Counter,
    active: metrics::Gauge,
}

#[derive(Debug, Default)]
struct Counters {
    no_capacity: AtomicU64,
    queue_full: AtomicU64,
    wait_elapsed: AtomicU64,
    longest_wait_nanos: AtomicU64,
}

/// The shared state of one bulkhead (or one partition of a keyed bulkhead).
///
/// `repr(C)` with the hot fields first: behind its `Arc`, the reference count and everything a
/// call touches share one cache line.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Core {
    /// Live counts, packed: class `c` in bits `c * bits ..`.
    word: AtomicU64,
    /// Waiters over all classes (read without the lock on every admission and release).
    queued: AtomicUsize,
    capacity: AtomicU32,
    /// Per class: the reservation, and whether it may borrow (inline, on the hot line).
    reserved: [AtomicU32; MAX_CLASSES],
    borrow: [bool; MAX_CLASSES],
    classes: Box<[Class]>,
    bits: u32,
    mask: u64,
    default_class: usize,
    pub(crate) name: Arc<str>,
    queues: Mutex<Vec<VecDeque<Arc<Waiter>>>>,
    /// Serialises resizes.
    resize: Mutex<()>,
    max_queued: usize,
    pub(crate) max_wait: Duration,
    clock: SharedClock,
    counters: Counters,
}

impl Core {
    /// A bulkhead that is not one of many per key: `name` in logs and metrics.
    pub(crate) fn unkeyed(cfg: &BulkheadConfig, name: Arc<str>) -> Arc<Self> {
        Self::new(cfg, name, None)
    }

    /// A bulkhead called `name` in logs; its metric series are labelled `name` (the
    /// layer's name) and, for a partition, `key`.
    pub(crate) fn new(cfg: &BulkheadConfig, name: Arc<str>, key: Option<Arc<str>>) -> Arc<Self> {
        let n = cfg.classes.len();
        let bits = 64 / n as u32;
        let mask = if bits >= 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        let classes: Box<[Class]> = cfg
            .classes
            .iter()
            .map(|c| {
                let mut labels = vec![
                    metrics::Label::new(
                        rampart_core::registry::INSTANCE_LABEL,
                        cfg.name().to_owned(),
                    ),
                    metrics::Label::new("class", c.name.to_string()),
                ];
                if let Some(key) = &key {
                    labels.push(metrics::Label::new("key", key.to_string()));
                }
                let calls = |outcome: &'static str| {
                    let mut l = labels.clone();
                    l.push(metrics::Label::new("outcome", outcome));
                    metrics::counter!("rampart_bulkhead_calls_total", l)
                };
                Class {
                    name: Arc::from(&*c.name),
                    queue_rejections: AtomicU64::new(0),
                    admitted: calls("admitted"),
                    rejected: calls("rejected"),
                    active: metrics::gauge!("rampart_bulkhead_active", labels.clone()),
                }
            })
            .collect();
        let mut borrow = [false; MAX_CLASSES];
        for (b, c) in borrow.iter_mut().zip(&cfg.classes) {
            *b = c.borrow;
        }
        Arc::new(Self {
            reserved: std::array::from_fn(|i| {
                AtomicU32::new(cfg.classes.get(i).map_or(0, |c| c.reserved))
            }),
            borrow,
            name,
            default_class: cfg.default_class,
            bits,
            mask,
            capacity: AtomicU32::new(cfg.capacity),
            word: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            queues: Mutex::new((0..n).map(|_| VecDeque::new()).collect()),
            resize: Mutex::new(()),
            max_queued: cfg.max_queued,
            max_wait: cfg.max_wait,
            clock: cfg.clock.clone(),
            counters: Counters::default(),
            classes,
        })
    }

    #[inline]
    fn shift(&self, c: usize) -> u32 {
        self.bits.wrapping_mul(c as u32) & 63
    }

    #[inline]
    fn get(&self, word: u64, c: usize) -> u64 {
        (word >> self.shift(c)) & self.mask
    }

    #[inline]
    fn unit(&self, c: usize) -> u64 {
        1u64 << self.shift(c)
    }

    #[inline]
    fn total(&self, word: u64) -> u64 {
        (0..self.classes.len()).map(|c| self.get(word, c)).sum()
    }

    /// The index of the class named `name` (`None` or unknown: the default class).
    #[inline]
    pub(crate) fn class_index(&self, name: Option<&str>) -> usize {
        match name {
            Some(name) if self.classes.len() > 1 => self
                .classes
                .iter()
                .position(|c| &*c.name == name)
                .unwrap_or(self.default_class),
            _ => self.default_class,
        }
    }

    pub(crate) fn has_classes(&self) -> bool {
        self.classes.len() > 1
    }

    /// The word after admitting one call of class `c`, if the rules allow it.
    #[inline]
    fn admit_word(&self, word: u64, c: usize) -> Option<u64> {
        let capacity = u64::from(self.capacity.load(Ordering::Relaxed));
        let total = self.total(word);
        if total >= capacity {
            return None;
        }
        if self.get(word, c) < u64::from(self.reserved[c].load(Ordering::Relaxed)) {
            // Within its own reservation.
            return Some(word + self.unit(c));
        }
        if !self.borrow[c] {
            return None;
        }
        // Borrowing: the free capacity must still cover the idle reservations of every class
        // above this one.
        let owed: u64 = (0..c)
            .map(|h| {
                u64::from(self.reserved[h].load(Ordering::Relaxed))
                    .saturating_sub(self.get(word, h))
            })
            .sum();
        if capacity - total - 1 < owed {
            return None;
        }
        Some(word + self.unit(c))
    }

    /// One compare-and-swap loop: takes a permit of class `c` if the rules allow it.
    #[inline]
    fn try_take(&self, c: usize) -> bool {
        let mut word = self.word.load(Ordering::SeqCst);
        loop {
            let Some(next) = self.admit_word(word, c) else {
                return false;
            };
            match self
                .word
                .compare_exchange_weak(word, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(now) => word = now,
            }
        }
    }

    /// The fast path: a permit for a call of class `c` if one is free and nobody waits.
    #[inline]
    pub(crate) fn try_acquire(&self, c: usize) -> bool {
        if self.queued.load(Ordering::SeqCst) == 0 && self.try_take(c) {
            self.admitted(c);
            return true;
        }
        false
    }

    /// Asks for a permit for a call of class `c`: now, after a wait, or never.
    #[cfg(test)]
    pub(crate) fn acquire(&self, c: usize) -> Acquire {
        if self.try_acquire(c) {
            return Acquire::Now;
        }
        self.acquire_slow(c)
    }

    #[inline]
    fn admitted(&self, c: usize) {
        let class = &self.classes[c];
        class.admitted.increment(1);
        class.active.increment(1.0);
    }

    /// The slow path, once [`try_acquire`](Self::try_acquire) failed: wait in line, or reject.
    #[cold]
    pub(crate) fn acquire_slow(&self, c: usize) -> Acquire {
        if self.max_wait.is_zero() {
            // Fail fast: no queue at all.
            return Acquire::Rejected(self.reject(c, FullReason::NoCapacity, Duration::ZERO));
        }
        let mut queues = lock(&self.queues);
        if self.queued.load(Ordering::SeqCst) == 0 && self.try_take(c) {
            drop(queues);
            self.admitted(c);
            return Acquire::Now;
        }
        if self.queued.load(Ordering::SeqCst) >= self.max_queued {
            drop(queues);
            self.classes[c]
                .queue_rejections
                .fetch_add(1, Ordering::Relaxed);
            return Acquire::Rejected(self.reject(c, FullReason::QueueFull, Duration::ZERO));
        }
        let waiter = Arc::new(Waiter {
            class: c,
            since: self.clock.now(),
            state: AtomicU8::new(WAITING),
            waker: Mutex::new(None),
        });
        queues[c].push_back(waiter.clone());
        self.queued.fetch_add(1, Ordering::SeqCst);
        self.dispatch_locked(&mut queues);
        drop(queues);
        if waiter.is_granted() {
            Acquire::Now
        } else {
            tracing::trace!(target: "rampart::bulkhead", bulkhead = %self.name, class = %self.classes[c].name, "waiting for a permit");
            Acquire::Wait(waiter)
        }
    }

    #[cold]
    fn reject(&self, c: usize, reason: FullReason, waited: Duration) -> BulkheadFull {
        let counter = match reason {
            FullReason::NoCapacity => &self.counters.no_capacity,
            FullReason::QueueFull => &self.counters.queue_full,
            FullReason::WaitElapsed => &self.counters.wait_elapsed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let class = &self.classes[c];
        class.rejected.increment(1);
        tracing::debug!(target: "rampart::bulkhead", bulkhead = %self.name, class = %class.name, reason = reason.as_str(), ?waited, "call rejected");
        BulkheadFull::new(reason, class.name.clone(), waited)
    }

    /// Releases a permit of class `c`.
    #[inline]
    pub(crate) fn release(&self, c: usize) {
        self.word.fetch_sub(self.unit(c), Ordering::SeqCst);
        self.classes[c].active.decrement(1.0);
        if self.queued.load(Ordering::SeqCst) != 0 {
            self.dispatch();
        }
    }

    #[cold]
    fn dispatch(&self) {
        let mut queues = lock(&self.queues);
        self.dispatch_locked(&mut queues);
    }

    /// Hands free permits to waiters: first to classes below their reservation (by priority),
    /// then to borrowers (by priority); oldest first within a class.
    fn dispatch_locked(&self, queues: &mut [VecDeque<Arc<Waiter>>]) {
        'grant: loop {
            for own_only in [true, false] {
                for (c, queue) in queues.iter_mut().enumerate() {
                    if queue.is_empty() {
                        continue;
                    }
                    if own_only {
                        let word = self.word.load(Ordering::SeqCst);
                        let reserved = u64::from(self.reserved[c].load(Ordering::Relaxed));
                        if self.get(word, c) >= reserved {
                            continue;
                        }
                    }
                    if self.try_take(c) {
                        if let Some(w) = queue.pop_front() {
                            self.queued.fetch_sub(1, Ordering::SeqCst);
                            let waited = self.clock.now().saturating_duration_since(w.since);
                            let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
                            self.counters
                                .longest_wait_nanos
                                .fetch_max(nanos, Ordering::Relaxed);
                            self.admitted(c);
                            w.grant();
                        }
                        continue 'grant;
                    }
                }
            }
            return;
        }
    }

    /// A waiter gives up (its wait ran out, or its future was dropped).
    pub(crate) fn abandon(&self, waiter: &Arc<Waiter>) -> Abandon {
        let mut queues = lock(&self.queues);
        if waiter.is_granted() {
            return Abandon::WasGranted;
        }
        let q = &mut queues[waiter.class];
        if let Some(i) = q.iter().position(|w| Arc::ptr_eq(w, waiter)) {
            q.remove(i);
            self.queued.fetch_sub(1, Ordering::SeqCst);
        }
        waiter.state.store(GONE, Ordering::Release);
        // Removing a waiter can unblock those behind it (a borrower that was not first).
        self.dispatch_locked(&mut queues);
        Abandon::Removed
    }

    /// The rejection for a waiter whose wait ran out.
    pub(crate) fn wait_elapsed(&self, waiter: &Waiter) -> BulkheadFull {
        let waited = self.clock.now().saturating_duration_since(waiter.since);
        self.reject(waiter.class, FullReason::WaitElapsed, waited)
    }

    pub(crate) fn waiter_class(waiter: &Waiter) -> usize {
        waiter.class
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.word.load(Ordering::Relaxed) == 0 && self.queued.load(Ordering::Relaxed) == 0
    }

    // ---- handle operations ----
}

/// A held permit: released when dropped.
#[derive(Debug)]
pub struct Permit {
    core: Arc<Core>,
    class: usize,
}

impl Permit {
    pub(crate) fn new(core: Arc<Core>, class: usize) -> Self {
        Self { core, class }
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        self.core.release(self.class);
    }
}

mod resize;
mod stats;
mod waiter;

pub use self::stats::{ClassStats, Stats};
use self::waiter::*;
pub(crate) use self::waiter::{Abandon, Acquire, Waiter};

#[cfg(test)]
mod tests;
