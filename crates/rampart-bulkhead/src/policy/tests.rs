//! Unit and property tests of the permit rules, driven by hand: no runtime, no sleeps.

use std::{sync::Arc, time::Duration};

use proptest::prelude::*;
use rampart_core::clock::ManualClock;

use super::{Abandon, Acquire, Core, Waiter};
use crate::{
    config::{BulkheadConfig, BulkheadConfigBuilder},
    error::FullReason,
};

struct H {
    core: Arc<Core>,
    clock: ManualClock,
}

impl H {
    fn new(b: BulkheadConfigBuilder) -> Self {
        let clock = ManualClock::new();
        let cfg = b.clock(clock.shared()).build().expect("valid test config");
        Self {
            core: Core::unkeyed(&cfg, Arc::from("test")),
            clock,
        }
    }

    fn class(&self, name: &str) -> usize {
        self.core.class_index(Some(name))
    }

    /// Takes a permit now or panics.
    fn take(&self, class: &str) {
        match self.core.acquire(self.class(class)) {
            Acquire::Now => {}
            other => panic!("{class}: expected a permit, got {other:?}"),
        }
    }

    fn reject(&self, class: &str) -> FullReason {
        match self.core.acquire(self.class(class)) {
            Acquire::Rejected(r) => r.reason(),
            other => panic!("{class}: expected a rejection, got {other:?}"),
        }
    }

    fn wait(&self, class: &str) -> Arc<Waiter> {
        match self.core.acquire(self.class(class)) {
            Acquire::Wait(w) => w,
            other => panic!("{class}: expected to wait, got {other:?}"),
        }
    }

    fn release(&self, class: &str) {
        self.core.release(self.class(class));
    }

    fn active(&self, class: &str) -> u32 {
        let s = self.core.stats();
        s.classes[self.class(class)].active
    }
}

fn single(n: u32) -> BulkheadConfigBuilder {
    BulkheadConfig::builder().max_concurrent(n)
}

fn queued(n: u32) -> BulkheadConfigBuilder {
    single(n).max_wait(Duration::from_secs(1)).max_queued(2)
}

/// critical 2 (borrows) / normal 1 / bulk 1, capacity 4: no shared pool.
fn classes() -> BulkheadConfigBuilder {
    BulkheadConfig::builder()
        .borrowing_class("critical", 2)
        .class("normal", 1)
        .class("bulk", 1)
        .max_wait(Duration::from_secs(1))
}

#[test]
fn fails_fast_at_the_limit_and_a_release_frees_a_permit() {
    let h = H::new(single(2));
    h.take("default");
    h.take("default");
    assert_eq!(h.reject("default"), FullReason::NoCapacity);
    assert_eq!(h.core.stats().active, 2);
    h.release("default");
    h.take("default");
    let s = h.core.stats();
    assert_eq!((s.active, s.rejected, s.rejected_no_capacity), (2, 1, 1));
}

#[test]
fn waiters_are_served_in_order_and_the_queue_is_bounded() {
    let h = H::new(queued(1));
    h.take("default");
    let first = h.wait("default");
    let second = h.wait("default");
    assert_eq!(h.reject("default"), FullReason::QueueFull);
    assert_eq!(h.core.stats().queued, 2);
    h.release("default");
    assert!(first.is_granted() && !second.is_granted());
    h.release("default");
    assert!(second.is_granted());
    assert_eq!(h.core.stats().queued, 0);
}

#[test]
fn a_newcomer_does_not_overtake_a_waiter() {
    let h = H::new(queued(1));
    h.take("default");
    let waiting = h.wait("default");
    let newcomer = h.wait("default");
    h.release("default");
    assert!(waiting.is_granted(), "the permit went to the older waiter");
    assert!(!newcomer.is_granted());
}

#[test]
fn the_longest_wait_is_reported() {
    let h = H::new(queued(1));
    h.take("default");
    let w = h.wait("default");
    h.clock.advance(Duration::from_millis(250));
    h.release("default");
    assert!(w.is_granted());
    assert_eq!(h.core.stats().longest_wait, Duration::from_millis(250));
}

#[test]
fn an_abandoned_waiter_leaves_the_queue() {
    let h = H::new(queued(1));
    h.take("default");
    let gone = h.wait("default");
    let next = h.wait("default");
    assert_eq!(h.core.abandon(&gone), Abandon::Removed);
    assert_eq!(h.core.stats().queued, 1);
    h.release("default");
    assert!(next.is_granted());
    // Abandoning after the grant hands the permit to the caller, which must release it.
    assert_eq!(h.core.abandon(&next), Abandon::WasGranted);
    assert_eq!(h.core.stats().active, 1);
}

#[test]
fn a_class_without_borrowing_stays_within_its_reservation() {
    let h = H::new(classes());
    h.take("bulk");
    assert_eq!(
        h.reject_or_wait("bulk"),
        "waits",
        "bulk has 1, even with 3 idle"
    );
}

impl H {
    fn reject_or_wait(&self, class: &str) -> &'static str {
        match self.core.acquire(self.class(class)) {
            Acquire::Now => "admitted",
            Acquire::Wait(w) => {
                assert_eq!(self.core.abandon(&w), Abandon::Removed);
                "waits"
            }
            Acquire::Rejected(_) => "rejected",
        }
    }
}

#[test]
fn a_higher_class_borrows_idle_capacity_of_lower_classes() {
    let h = H::new(classes());
    for _ in 0..4 {
        h.take("critical"); // its own 2, then normal's and bulk's idle slots
    }
    assert_eq!(h.active("critical"), 4);
    assert_eq!(h.reject_or_wait("critical"), "waits", "capacity is 4");
}

#[test]
fn a_lower_class_never_takes_a_higher_class_reservation() {
    let h = H::new(
        BulkheadConfig::builder()
            .class("critical", 2)
            .borrowing_class("bulk", 1)
            .capacity(4)
            .max_wait(Duration::from_secs(1)),
    );
    h.take("bulk");
    h.take("bulk"); // the shared pool (capacity 4 - reserved 3)
    assert_eq!(
        h.reject_or_wait("bulk"),
        "waits",
        "the remaining 2 are critical's, idle or not"
    );
    h.take("critical");
    h.take("critical");
}

#[test]
fn a_class_below_its_reservation_reclaims_the_next_release_before_borrowers() {
    let h = H::new(classes());
    for _ in 0..4 {
        h.take("critical");
    }
    let critical = h.wait("critical"); // a borrower: critical is over its 2
    let bulk = h.wait("bulk"); // bulk is below its reservation of 1
    h.release("critical");
    assert!(bulk.is_granted(), "bulk reclaims its own slot first");
    assert!(!critical.is_granted());
    h.release("critical");
    assert!(
        critical.is_granted(),
        "then borrowers, as normal's slot is free"
    );
}

#[test]
fn borrowers_are_served_by_priority() {
    let h = H::new(
        BulkheadConfig::builder()
            .borrowing_class("critical", 1)
            .borrowing_class("normal", 1)
            .capacity(3)
            .max_wait(Duration::from_secs(1)),
    );
    h.take("critical");
    h.take("normal");
    h.take("normal"); // the pool
    let normal = h.wait("normal");
    let critical = h.wait("critical");
    h.release("normal");
    assert!(
        critical.is_granted(),
        "the pool slot goes to the higher class"
    );
    assert!(!normal.is_granted());
}

#[test]
fn growing_the_capacity_admits_waiters() {
    let h = H::new(queued(1));
    h.take("default");
    let w = h.wait("default");
    h.core.set_capacity(2).unwrap();
    assert!(w.is_granted());
    assert_eq!(h.core.stats().capacity, 2);
    // Shrinking keeps the calls in flight and applies to new ones.
    h.core.set_capacity(1).unwrap();
    assert_eq!(h.core.stats().active, 2);
    h.release("default");
    assert_eq!(h.reject_or_wait("default"), "waits");
}

#[test]
fn resizing_a_class_moves_the_capacity_with_it() {
    let h = H::new(classes());
    h.core.set_reserved("bulk", 3).unwrap();
    let s = h.core.stats();
    assert_eq!((s.capacity, s.classes[2].reserved), (6, 3));
    assert_eq!(h.core.set_reserved("nope", 1).unwrap_err().field(), "class");
    assert_eq!(h.core.set_capacity(5).unwrap_err().field(), "capacity");
    assert_eq!(h.core.set_capacity(0).unwrap_err().field(), "capacity");
}

#[test]
fn unknown_or_missing_class_names_go_to_the_default_class() {
    let h = H::new(classes().default_class("normal"));
    assert_eq!(h.core.class_index(None), 1);
    assert_eq!(h.core.class_index(Some("nope")), 1);
    assert_eq!(h.core.class_index(Some("bulk")), 2);
}

#[test]
fn four_classes_share_one_word_without_overflow() {
    let h = H::new(
        BulkheadConfig::builder()
            .class("a", 1)
            .class("b", 1)
            .class("c", 1)
            .borrowing_class("d", 65_000)
            .capacity(65_535),
    );
    for _ in 0..65_000 {
        h.take("d");
    }
    h.take("a");
    h.take("b");
    h.take("c");
    let s = h.core.stats();
    assert_eq!(s.active, 65_003);
    assert_eq!(
        s.classes.iter().map(|c| c.active).collect::<Vec<_>>(),
        [1, 1, 1, 65_000]
    );
}

// ---- property test: invariants under random traffic ----

#[derive(Debug, Clone)]
enum Op {
    Acquire(usize),
    Release(usize),
    Abandon(usize),
    Capacity(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0usize..3).prop_map(Op::Acquire),
        4 => any::<usize>().prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::Abandon),
        1 => (0u32..6).prop_map(Op::Capacity),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// After every step: the total is within the capacity, a class that may not borrow is
    /// within its reservation, the capacity reserved for classes above a borrower is never
    /// eaten, and no waiter is left waiting while a permit it may take is free.
    #[test]
    fn permits_respect_the_rules_under_random_traffic(
        reserved in prop::collection::vec(0u32..3, 3),
        borrow in prop::collection::vec(any::<bool>(), 3),
        pool in 0u32..3,
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let total_reserved: u32 = reserved.iter().sum();
        prop_assume!(total_reserved + pool > 0);
        let mut b = BulkheadConfig::builder()
            .max_wait(Duration::from_secs(1))
            .max_queued(6)
            .capacity(total_reserved + pool);
        for (i, (r, borrows)) in reserved.iter().zip(&borrow).enumerate() {
            let name = ["a", "b", "c"][i];
            b = if *borrows { b.borrowing_class(name, *r) } else { b.class(name, *r) };
        }
        let h = H::new(b);
        let mut held: Vec<usize> = Vec::new();
        let mut waiting: Vec<Arc<Waiter>> = Vec::new();
        for op in ops {
            match op {
                Op::Acquire(c) => match h.core.acquire(c) {
                    Acquire::Now => held.push(c),
                    Acquire::Wait(w) => waiting.push(w),
                    Acquire::Rejected(_) => {}
                },
                Op::Release(i) if !held.is_empty() => {
                    let c = held.swap_remove(i % held.len());
                    h.core.release(c);
                }
                Op::Abandon(i) if !waiting.is_empty() => {
                    let w = waiting.swap_remove(i % waiting.len());
                    if h.core.abandon(&w) == Abandon::WasGranted {
                        h.core.release(w.class);
                    }
                }
                Op::Capacity(extra) => {
                    let _ = h.core.set_capacity(total_reserved.max(1) + extra);
                }
                Op::Release(_) | Op::Abandon(_) => {}
            }
            // Granted waiters now hold permits.
            waiting.retain(|w| {
                if w.is_granted() {
                    held.push(w.class);
                    false
                } else {
                    true
                }
            });
            let s = h.core.stats();
            prop_assert_eq!(s.active as usize, held.len());
            for (c, cs) in s.classes.iter().enumerate() {
                prop_assert_eq!(cs.active as usize, held.iter().filter(|h| **h == c).count());
            }
            let word = h.core.word.load(std::sync::atomic::Ordering::SeqCst);
            for (c, cs) in s.classes.iter().enumerate() {
                if !cs.borrow {
                    // A shrink can leave a class above a *capacity*, never above its reservation.
                    prop_assert!(cs.active <= cs.reserved, "class {} over its reservation", c);
                }
                if cs.queued > 0 {
                    prop_assert!(
                        h.core.admit_word(word, c).is_none(),
                        "class {} has waiters while a permit it may take is free", c
                    );
                }
            }
        }
    }
}
