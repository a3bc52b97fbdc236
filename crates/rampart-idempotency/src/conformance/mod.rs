//! The store conformance suite: what every [`IdempotencyStore`] must do (the contract in the
//! [`IdempotencyStore`] docs), as one async function that panics, naming the store and the
//! broken rule, at the first failure.
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use rampart_idempotency::{conformance, MemoryStore};
//!
//! // The memory store, under tokio's paused time (`#[tokio::test(start_paused = true)]`):
//! conformance::run(&MemoryStore::bounded(1000).unwrap()).await;
//! // A networked store, in real time: TTLs of 300 ms leave room for round trips.
//! # let redis_store = MemoryStore::bounded(1000).unwrap();
//! conformance::run_with_ttl(&redis_store, Duration::from_millis(300)).await;
//! # }
//! ```
//!
//! The suite needs no empty store: every run uses keys of its own (`conformance-<random>-…`),
//! and leaves a few dozen entries behind, which expire within 100 TTLs. It waits
//! with `tokio::time::sleep` (about 6 TTLs in all), so under paused time it takes no time, and
//! with real time it takes about two seconds at the default TTL. It needs at most 64 entries
//! of room.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test helper: panics are its reports

use std::{
    future::{Future, poll_fn},
    task::Poll,
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::{
    fingerprint::Fingerprint,
    response::StoredResponse,
    store::{
        Begin, BoxFuture, IdempotencyStore, Lease, LeaseToken, StoreError, StoreErrorKind, StoreKey,
    },
};

/// Runs every check against `store` with a TTL of 250 ms (see [`run_with_ttl`]).
pub async fn run(store: &dyn IdempotencyStore) {
    run_with_ttl(store, Duration::from_millis(250)).await;
}

/// Runs every check against `store`. Leases taken by the suite hold for `ttl`; checks of
/// expiry sleep `2 × ttl`. Use a `ttl` well above a round trip to the store.
pub async fn run_with_ttl(store: &dyn IdempotencyStore, ttl: Duration) {
    let name = store.describe();
    let run = format!("conformance-{:016x}", fastrand::u64(..));
    let key = |n: &str| StoreKey::global(&format!("{run}-{n}"));
    let long = ttl * 100;
    let fp_a = fingerprint(b"a");
    let fp_b = fingerprint(b"b");
    let tok = |n: u128| LeaseToken::from_u128(n);

    // 1. A new key: the lease is taken.
    let k = key("lifecycle");
    let begun = store
        .begin(&k, &fp_a, Lease::new(tok(1), long))
        .await
        .unwrap();
    assert_eq!(
        begun,
        Begin::Acquired,
        "{name}: begin on a new key takes the lease"
    );

    // While in flight: the same fingerprint is told how long the lease has left; another one
    // is a mismatch.
    match store
        .begin(&k, &fp_a, Lease::new(tok(2), long))
        .await
        .unwrap()
    {
        Begin::InFlight { expires_in } => assert!(
            expires_in <= long && expires_in > long / 2,
            "{name}: in flight for about the lease TTL ({long:?}), got {expires_in:?}"
        ),
        other => panic!("{name}: begin on a key in flight must be InFlight, got {other:?}"),
    }
    assert_eq!(
        store
            .begin(&k, &fp_b, Lease::new(tok(3), long))
            .await
            .unwrap(),
        Begin::Mismatch,
        "{name}: another fingerprint on a key in flight is a mismatch"
    );

    // 2. complete needs the lease's token.
    let res = response();
    assert!(
        !store.complete(&k, tok(2), &res, long).await.unwrap(),
        "{name}: complete with another request's token must not store"
    );
    assert!(
        matches!(
            store
                .begin(&k, &fp_a, Lease::new(tok(2), long))
                .await
                .unwrap(),
            Begin::InFlight { .. }
        ),
        "{name}: a refused complete changes nothing"
    );
    assert!(
        store.complete(&k, tok(1), &res, long).await.unwrap(),
        "{name}: complete with the lease's token stores"
    );
    match store
        .begin(&k, &fp_a, Lease::new(tok(4), long))
        .await
        .unwrap()
    {
        Begin::Completed(got) => assert_eq!(
            *got, res,
            "{name}: the stored response comes back exactly (status, every header value in \
             order, binary values, body, trailers)"
        ),
        other => panic!("{name}: begin on a completed key must replay, got {other:?}"),
    }
    assert_eq!(
        store
            .begin(&k, &fp_b, Lease::new(tok(5), long))
            .await
            .unwrap(),
        Begin::Mismatch,
        "{name}: another fingerprint on a completed key is a mismatch"
    );
    assert!(
        !store
            .complete(&k, tok(1), &response_with(StatusCode::OK, b"again"), long)
            .await
            .unwrap(),
        "{name}: a completed key cannot be completed again"
    );
    assert!(
        !store.release(&k, tok(1)).await.unwrap(),
        "{name}: release never removes a completed entry"
    );
    match store
        .begin(&k, &fp_a, Lease::new(tok(6), long))
        .await
        .unwrap()
    {
        Begin::Completed(got) => assert_eq!(*got, res, "{name}: still the first response"),
        other => panic!("{name}: the completed entry must survive, got {other:?}"),
    }

    // 3. release: only with the token, and the key is free again.
    let k = key("release");
    assert_eq!(
        store
            .begin(&k, &fp_a, Lease::new(tok(10), long))
            .await
            .unwrap(),
        Begin::Acquired
    );
    assert!(
        !store.release(&k, tok(11)).await.unwrap(),
        "{name}: release with another token must not release"
    );
    assert!(matches!(
        store
            .begin(&k, &fp_a, Lease::new(tok(12), long))
            .await
            .unwrap(),
        Begin::InFlight { .. }
    ));
    assert!(
        store.release(&k, tok(10)).await.unwrap(),
        "{name}: release with the token"
    );
    assert!(
        !store.release(&k, tok(10)).await.unwrap(),
        "{name}: a second release finds nothing"
    );
    assert_eq!(
        store
            .begin(&k, &fp_b, Lease::new(tok(13), long))
            .await
            .unwrap(),
        Begin::Acquired,
        "{name}: a released key is free, for any fingerprint"
    );
    assert!(
        !store.complete(&k, tok(10), &res, long).await.unwrap(),
        "{name}: the released lease's token cannot complete the new lease"
    );
    assert!(store.release(&k, tok(13)).await.unwrap());
    assert!(
        !store.complete(&k, tok(13), &res, long).await.unwrap(),
        "{name}: a released lease cannot complete"
    );

    // 4. Scopes: one key, three scopes, three entries.
    let raw = format!("{run}-scoped");
    let scopes = [
        StoreKey::global(&raw),
        StoreKey::for_caller("caller-a", &raw),
        StoreKey::for_caller("caller-b", &raw),
    ];
    for (i, s) in scopes.iter().enumerate() {
        assert_eq!(
            store
                .begin(s, &fp_a, Lease::new(tok(20 + i as u128), long))
                .await
                .unwrap(),
            Begin::Acquired,
            "{name}: {s} is its own entry"
        );
    }
    assert!(
        store
            .complete(&scopes[1], tok(21), &res, long)
            .await
            .unwrap()
    );
    assert!(
        matches!(
            store
                .begin(&scopes[2], &fp_a, Lease::new(tok(30), long))
                .await
                .unwrap(),
            Begin::InFlight { .. }
        ),
        "{name}: completing one caller's entry leaves another's in flight"
    );
    assert!(store.release(&scopes[0], tok(20)).await.unwrap());
    assert!(
        matches!(
            store
                .begin(&scopes[1], &fp_a, Lease::new(tok(31), long))
                .await
                .unwrap(),
            Begin::Completed(_)
        ),
        "{name}: releasing the global entry leaves a caller's completed one"
    );
    assert!(store.release(&scopes[2], tok(22)).await.unwrap());

    // 5. Keys compare byte for byte, whatever characters they hold.
    let odd = [
        format!("{run}-Case"),
        format!("{run}-case"),
        format!("{run}-:{{}}\"\\*?[]"),
        format!("{run}-{}", "k".repeat(255 - run.len() - 1)),
    ];
    for (i, raw) in odd.iter().enumerate() {
        let k = StoreKey::global(raw);
        assert_eq!(
            store
                .begin(&k, &fp_a, Lease::new(tok(40 + i as u128), long))
                .await
                .unwrap(),
            Begin::Acquired,
            "{name}: key {raw:?} is its own entry"
        );
        assert!(store.release(&k, tok(40 + i as u128)).await.unwrap());
    }

    // 6. Concurrent begins on one key: exactly one takes the lease.
    let k = key("race");
    let racers: Vec<BoxFuture<'_, Result<Begin, StoreError>>> = (0..32u128)
        .map(|i| store.begin(&k, &fp_a, Lease::new(tok(100 + i), long)))
        .collect();
    let results = join_all(racers).await;
    let acquired = results
        .iter()
        .filter(|r| matches!(r, Ok(Begin::Acquired)))
        .count();
    assert_eq!(
        acquired, 1,
        "{name}: one of 32 concurrent begins takes the lease: {results:?}"
    );
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(Begin::Acquired | Begin::InFlight { .. }))),
        "{name}: the others see it in flight: {results:?}"
    );

    // 7. Responses of every shape come back exactly.
    for (i, res) in [
        response_with(StatusCode::NO_CONTENT, b""),
        response_with(StatusCode::UNPROCESSABLE_ENTITY, &[0u8, 255, 10, 13]),
        response_with(StatusCode::OK, &vec![b'x'; 256 * 1024]),
    ]
    .into_iter()
    .enumerate()
    {
        let k = key(&format!("shape-{i}"));
        let t = tok(200 + i as u128);
        assert_eq!(
            store.begin(&k, &fp_a, Lease::new(t, long)).await.unwrap(),
            Begin::Acquired
        );
        assert!(store.complete(&k, t, &res, long).await.unwrap());
        match store
            .begin(&k, &fp_a, Lease::new(tok(300), long))
            .await
            .unwrap()
        {
            Begin::Completed(got) => {
                assert_eq!(*got, res, "{name}: response {i} comes back exactly")
            }
            other => panic!("{name}: response {i}: expected a replay, got {other:?}"),
        }
    }

    // 8. A lease expires after its TTL (a crashed request), and the crashed request's token
    //    is then worthless.
    let k = key("lease-expiry");
    assert_eq!(
        store
            .begin(&k, &fp_a, Lease::new(tok(400), ttl))
            .await
            .unwrap(),
        Begin::Acquired
    );
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(
        store
            .begin(&k, &fp_b, Lease::new(tok(401), long))
            .await
            .unwrap(),
        Begin::Acquired,
        "{name}: an expired lease frees the key (for any fingerprint)"
    );
    assert!(
        !store.complete(&k, tok(400), &res, long).await.unwrap(),
        "{name}: the expired lease's request cannot complete"
    );
    assert!(
        !store.release(&k, tok(400)).await.unwrap(),
        "{name}: the expired lease's request cannot release the new lease"
    );
    assert!(store.complete(&k, tok(401), &res, long).await.unwrap());

    // A lease that expired without anyone taking the key cannot complete either.
    let k = key("lease-lapsed");
    assert_eq!(
        store
            .begin(&k, &fp_a, Lease::new(tok(410), ttl))
            .await
            .unwrap(),
        Begin::Acquired
    );
    tokio::time::sleep(ttl * 2).await;
    assert!(
        !store.complete(&k, tok(410), &res, long).await.unwrap(),
        "{name}: complete after the lease expired must not store"
    );
    assert_eq!(
        store
            .begin(&k, &fp_a, Lease::new(tok(411), long))
            .await
            .unwrap(),
        Begin::Acquired,
        "{name}: nothing was stored by the late complete"
    );
    assert!(store.release(&k, tok(411)).await.unwrap());

    // 9. A completed entry expires after its retention, not before the lease TTL would.
    let k = key("retention");
    assert_eq!(
        store
            .begin(&k, &fp_a, Lease::new(tok(500), ttl))
            .await
            .unwrap(),
        Begin::Acquired
    );
    assert!(store.complete(&k, tok(500), &res, ttl * 4).await.unwrap());
    tokio::time::sleep(ttl * 2).await;
    assert!(
        matches!(
            store
                .begin(&k, &fp_a, Lease::new(tok(501), long))
                .await
                .unwrap(),
            Begin::Completed(_)
        ),
        "{name}: the retention replaces the lease TTL on complete"
    );
    tokio::time::sleep(ttl * 3).await;
    assert_eq!(
        store
            .begin(&k, &fp_b, Lease::new(tok(502), long))
            .await
            .unwrap(),
        Begin::Acquired,
        "{name}: the response is gone after its retention"
    );
    assert!(store.release(&k, tok(502)).await.unwrap());
}

/// A fingerprint for tests.
pub fn fingerprint(body: &[u8]) -> Fingerprint {
    Fingerprint::of(
        &http::Method::POST,
        &http::Uri::from_static("/conformance"),
        &HeaderMap::new(),
        &[],
        body,
    )
}

/// A response with every part a store must keep: a status, a header with two values (in
/// order), a binary header value, a body and trailers.
pub fn response() -> StoredResponse {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from_static("c0ffee"));
    response_with(StatusCode::CREATED, b"{\"id\":\"ch_1\",\"amount\":500}").with_trailers(trailers)
}

fn response_with(status: StatusCode, body: &[u8]) -> StoredResponse {
    let mut h = HeaderMap::new();
    h.append(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.append(
        HeaderName::from_static("x-multi"),
        HeaderValue::from_static("one"),
    );
    h.append(
        HeaderName::from_static("x-multi"),
        HeaderValue::from_static("two"),
    );
    h.append(
        HeaderName::from_static("x-binary"),
        HeaderValue::from_bytes(&[0xc3, 0x28, 0xff]).unwrap(),
    );
    StoredResponse::new(status, h, Bytes::copy_from_slice(body))
}

/// Polls every future until all are done; their outputs in order.
async fn join_all<T>(mut futs: Vec<BoxFuture<'_, T>>) -> Vec<T> {
    let mut out: Vec<Option<T>> = futs.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (fut, slot) in futs.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match fut.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|v| v.unwrap()).collect()
}

mod cancel;
mod failing;

pub use self::{cancel::cancelled_after_the_handler, failing::FailingStore};
