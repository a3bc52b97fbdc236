use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use rampart_core::clock::ManualClock;

use super::*;

const SEC: Duration = Duration::from_secs(1);

fn fp(n: u8) -> Fingerprint {
    Fingerprint::from_bytes([n; 32])
}

fn response(len: usize) -> StoredResponse {
    StoredResponse::new(
        StatusCode::OK,
        HeaderMap::new(),
        Bytes::from(vec![b'x'; len]),
    )
}

fn lease(n: u128) -> Lease {
    Lease::new(LeaseToken::from_u128(n), 10 * SEC)
}

#[tokio::test(start_paused = true)]
async fn passes_the_conformance_suite() {
    crate::conformance::run(&MemoryStore::bounded(1000).unwrap()).await;
}

#[test]
fn a_lease_expires_after_its_ttl() {
    let clock = ManualClock::new();
    let store = MemoryStore::builder()
        .clock(clock.shared())
        .build()
        .unwrap();
    let k = StoreKey::global("k");
    assert_eq!(
        store.begin_now(&k, &fp(1), lease(1)).unwrap(),
        Begin::Acquired
    );
    clock.advance(4 * SEC);
    assert_eq!(
        store.begin_now(&k, &fp(1), lease(2)).unwrap(),
        Begin::InFlight {
            expires_in: 6 * SEC
        }
    );
    clock.advance(6 * SEC);
    assert_eq!(
        store.begin_now(&k, &fp(1), lease(2)).unwrap(),
        Begin::Acquired,
        "the crashed request's lease is gone"
    );
    assert!(
        !store
            .complete_now(&k, LeaseToken::from_u128(1), &response(1), SEC)
            .unwrap(),
        "the first request lost its lease"
    );
    assert!(
        store
            .complete_now(&k, LeaseToken::from_u128(2), &response(1), SEC)
            .unwrap()
    );
}

#[test]
fn a_response_is_kept_for_its_retention() {
    let clock = ManualClock::new();
    let store = MemoryStore::builder()
        .clock(clock.shared())
        .build()
        .unwrap();
    let k = StoreKey::global("k");
    store.begin_now(&k, &fp(1), lease(1)).unwrap();
    assert!(
        store
            .complete_now(&k, LeaseToken::from_u128(1), &response(3), 60 * SEC)
            .unwrap()
    );
    clock.advance(59 * SEC);
    assert!(matches!(
        store.begin_now(&k, &fp(1), lease(2)).unwrap(),
        Begin::Completed(_)
    ));
    clock.advance(SEC);
    assert_eq!(
        store.begin_now(&k, &fp(1), lease(2)).unwrap(),
        Begin::Acquired
    );
    assert_eq!(
        store.stats().bytes,
        0,
        "the expired response's bytes are freed"
    );
}

#[test]
fn when_full_the_oldest_completed_entry_is_evicted() {
    let clock = ManualClock::new();
    let store = MemoryStore::builder()
        .max_entries(3)
        .clock(clock.shared())
        .build()
        .unwrap();
    for (i, name) in ["a", "b"].into_iter().enumerate() {
        let k = StoreKey::global(name);
        store.begin_now(&k, &fp(1), lease(i as u128)).unwrap();
        store
            .complete_now(
                &k,
                LeaseToken::from_u128(i as u128),
                &response(1),
                100 * SEC,
            )
            .unwrap();
        clock.advance(SEC);
    }
    store
        .begin_now(&StoreKey::global("c"), &fp(1), lease(9))
        .unwrap();
    // Full: "a" (the oldest completed) makes room for "d".
    assert_eq!(
        store
            .begin_now(&StoreKey::global("d"), &fp(1), lease(10))
            .unwrap(),
        Begin::Acquired
    );
    assert_eq!(store.stats().evicted, 1);
    // "a" was evicted: a retry of it runs again (and evicts "b", the last completed one).
    assert_eq!(
        store
            .begin_now(&StoreKey::global("a"), &fp(1), lease(11))
            .unwrap(),
        Begin::Acquired
    );
    assert_eq!(store.stats().evicted, 2);
    assert_eq!(store.stats().in_flight, 3);
}

#[test]
fn a_store_full_of_leases_refuses_rather_than_evicting_one() {
    let store = MemoryStore::bounded(2).unwrap();
    store
        .begin_now(&StoreKey::global("a"), &fp(1), lease(1))
        .unwrap();
    store
        .begin_now(&StoreKey::global("b"), &fp(1), lease(2))
        .unwrap();
    let err = store
        .begin_now(&StoreKey::global("c"), &fp(1), lease(3))
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Full);
    assert!(
        err.to_string().contains("2 entries, 2 of them in flight"),
        "{err}"
    );
    // Both leases are still held.
    for k in ["a", "b"] {
        assert!(matches!(
            store
                .begin_now(&StoreKey::global(k), &fp(1), lease(4))
                .unwrap(),
            Begin::InFlight { .. }
        ));
    }
    // A released lease makes room.
    assert!(store.release_now(&StoreKey::global("a"), LeaseToken::from_u128(1)));
    assert_eq!(
        store
            .begin_now(&StoreKey::global("c"), &fp(1), lease(3))
            .unwrap(),
        Begin::Acquired
    );
}

#[test]
fn without_eviction_a_full_store_refuses() {
    let clock = ManualClock::new();
    let store = MemoryStore::builder()
        .max_entries(1)
        .evict_completed(false)
        .clock(clock.shared())
        .build()
        .unwrap();
    let a = StoreKey::global("a");
    store.begin_now(&a, &fp(1), lease(1)).unwrap();
    store
        .complete_now(&a, LeaseToken::from_u128(1), &response(1), 10 * SEC)
        .unwrap();
    let err = store
        .begin_now(&StoreKey::global("b"), &fp(1), lease(2))
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Full);
    clock.advance(10 * SEC);
    assert_eq!(
        store
            .begin_now(&StoreKey::global("b"), &fp(1), lease(2))
            .unwrap(),
        Begin::Acquired,
        "room again once the response expired"
    );
}

#[test]
fn the_byte_bound_evicts_completed_entries_and_refuses_giant_responses() {
    let clock = ManualClock::new();
    let store = MemoryStore::builder()
        .max_bytes(1000)
        .clock(clock.shared())
        .build()
        .unwrap();
    let complete = |name: &str, n: u128, len: usize| {
        let k = StoreKey::global(name);
        store.begin_now(&k, &fp(1), lease(n)).unwrap();
        store.complete_now(&k, LeaseToken::from_u128(n), &response(len), 100 * SEC)
    };
    assert!(complete("a", 1, 400).unwrap());
    clock.advance(SEC);
    assert!(complete("b", 2, 400).unwrap());
    assert!(complete("c", 3, 400).unwrap(), "a is evicted to make room");
    let stats = store.stats();
    assert_eq!((stats.completed, stats.evicted), (2, 1));
    assert!(stats.bytes <= 1000);
    assert_eq!(
        store
            .begin_now(&StoreKey::global("a"), &fp(1), lease(4))
            .unwrap(),
        Begin::Acquired
    );
    let err = store
        .complete_now(
            &StoreKey::global("a"),
            LeaseToken::from_u128(4),
            &response(2000),
            SEC,
        )
        .unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Full);
    assert!(err.to_string().contains("exceeds max_bytes"), "{err}");
    assert_eq!(
        store.stats().completed,
        2,
        "nothing evicted for a response that never fits"
    );
}

#[test]
fn bounds_are_checked() {
    let e = MemoryStore::builder().max_bytes(0).build().unwrap_err();
    assert_eq!(e.field(), "max_bytes");
    let e = MemoryStore::bounded(0).unwrap_err();
    assert_eq!(e.field(), "max_entries");
}

/// A response whose body and headers are slices of a larger buffer (as a connection's reads
/// are) is stored in bytes of its own: the buffer is not kept alive by the stored entry.
#[test]
fn a_stored_response_owns_its_bytes() {
    let store = MemoryStore::bounded(10).unwrap();
    let k = StoreKey::global("k");
    let buffer = Bytes::from(vec![b'a'; 64 * 1024]);
    let range = buffer.as_ptr() as usize..buffer.as_ptr() as usize + buffer.len();
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-from-upstream",
        http::HeaderValue::from_maybe_shared(buffer.slice(100..110)).unwrap(),
    );
    let res = StoredResponse::new(StatusCode::OK, headers, buffer.slice(0..16));
    assert_eq!(
        store.begin_now(&k, &fp(1), lease(1)).unwrap(),
        Begin::Acquired
    );
    assert!(
        store
            .complete_now(&k, LeaseToken::from_u128(1), &res, SEC)
            .unwrap()
    );
    drop(res);
    let Begin::Completed(stored) = store.begin_now(&k, &fp(1), lease(2)).unwrap() else {
        panic!("the response is stored");
    };
    assert_eq!(stored.body(), &buffer.slice(0..16), "the same bytes");
    assert!(
        !range.contains(&(stored.body().as_ptr() as usize)),
        "not a slice of the buffer"
    );
    let value = stored.headers().get("x-from-upstream").unwrap();
    assert_eq!(value.as_bytes(), &b"aaaaaaaaaa"[..]);
    assert!(!range.contains(&(value.as_bytes().as_ptr() as usize)));
}

/// A large store is sharded: it still holds its bound (each shard a share), evicts to make
/// room, and finds every key it keeps.
#[test]
fn a_sharded_store_keeps_its_bound_and_finds_its_keys() {
    let store = MemoryStore::bounded(32_768).unwrap();
    assert_eq!(store.shards.len(), 16);
    for n in 0..40_000u32 {
        let k = StoreKey::global(&format!("key-{n}"));
        assert_eq!(
            store.begin_now(&k, &fp(1), lease(n.into())).unwrap(),
            Begin::Acquired
        );
        assert!(
            store
                .complete_now(&k, LeaseToken::from_u128(n.into()), &response(8), SEC)
                .unwrap()
        );
    }
    let stats = store.stats();
    assert!(stats.completed <= 32_768, "{stats:?}");
    assert!(
        stats.completed > 30_000,
        "the shards fill nearly evenly: {stats:?}"
    );
    assert_eq!(stats.evicted, 40_000 - stats.completed as u64);
    let last = StoreKey::global("key-39999");
    assert!(matches!(
        store.begin_now(&last, &fp(1), lease(1)).unwrap(),
        Begin::Completed(_)
    ));
    assert!(
        !MemoryStore::bounded(16_383)
            .map(|s| s.shards.len() > 1)
            .unwrap()
    );
}
