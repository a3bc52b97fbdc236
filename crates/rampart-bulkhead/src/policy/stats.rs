//! A live view of a bulkhead: [`Stats`] and [`ClassStats`].

use super::*;

/// A live view of one class.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClassStats {
    /// The class name.
    pub name: Arc<str>,
    /// Capacity reserved for it.
    pub reserved: u32,
    /// Whether it may borrow beyond its reservation.
    pub borrow: bool,
    /// Calls of this class in flight.
    pub active: u32,
    /// Calls of this class waiting.
    pub queued: usize,
}

/// A live view of a bulkhead.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Calls in flight.
    pub active: u32,
    /// The total capacity.
    pub capacity: u32,
    /// Calls waiting for a permit.
    pub queued: usize,
    /// Calls rejected, for any reason.
    pub rejected: u64,
    /// Calls rejected because no permit was free and waiting was not allowed.
    pub rejected_no_capacity: u64,
    /// Calls rejected because the wait queue was full.
    pub rejected_queue_full: u64,
    /// Calls rejected because their wait ran out.
    pub rejected_wait_elapsed: u64,
    /// The longest time a call waited before it got a permit.
    pub longest_wait: Duration,
    /// Per class, highest priority first.
    pub classes: Vec<ClassStats>,
}

impl Core {
    pub(crate) fn stats(&self) -> Stats {
        let word = self.word.load(Ordering::SeqCst);
        let queued: Vec<usize> = lock(&self.queues).iter().map(VecDeque::len).collect();
        let c = &self.counters;
        let (no_capacity, queue_full, wait_elapsed) = (
            c.no_capacity.load(Ordering::Relaxed),
            c.queue_full.load(Ordering::Relaxed),
            c.wait_elapsed.load(Ordering::Relaxed),
        );
        Stats {
            active: u32::try_from(self.total(word)).unwrap_or(u32::MAX),
            capacity: self.capacity.load(Ordering::Relaxed),
            queued: queued.iter().sum(),
            rejected: no_capacity + queue_full + wait_elapsed,
            rejected_no_capacity: no_capacity,
            rejected_queue_full: queue_full,
            rejected_wait_elapsed: wait_elapsed,
            longest_wait: Duration::from_nanos(c.longest_wait_nanos.load(Ordering::Relaxed)),
            classes: self
                .classes
                .iter()
                .enumerate()
                .map(|(i, class)| ClassStats {
                    name: class.name.clone(),
                    reserved: self.reserved[i].load(Ordering::Relaxed),
                    borrow: self.borrow[i],
                    active: u32::try_from(self.get(word, i)).unwrap_or(u32::MAX),
                    queued: queued[i],
                })
                .collect(),
        }
    }
}
