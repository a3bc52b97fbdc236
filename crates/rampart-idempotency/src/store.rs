//! [`IdempotencyStore`]: the contract every idempotency store keeps, and its vocabulary.

use std::{fmt, sync::Arc, time::Duration};

use sha2::{Digest, Sha256};

use crate::{
    fingerprint::{Fingerprint, hex, nibble},
    response::StoredResponse,
};

/// A boxed, `Send` future: what this trait's methods return (rampart-core's).
pub use rampart_core::BoxFuture;

/// Keeps leases and stored responses.
///
/// [`IdempotencyStore`]: where leases and stored responses live, and the types its methods
/// speak ([`StoreKey`], [`Lease`], [`Begin`], [`StoreError`]).
///
/// A store is used through `Arc<dyn IdempotencyStore>`, so that one layer type works with the
/// in-memory store ([`MemoryStore`](crate::MemoryStore)) and a shared one (Redis, in
/// `rampart-redis`) picked at run time. Its methods return boxed futures for that reason.
///
/// # The lifecycle of an entry
///
/// ```text
///               begin (no entry)                 complete (token matches)
///   (absent) ───────────────────▶ IN FLIGHT ───────────────────────────────▶ COMPLETED
///      ▲                           │   │                                       │
///      │   release (token matches) │   │ lease TTL passes                      │ retention passes
///      └───────────────────────────┴───┴───────────────────────────────────────┘
/// ```
///
/// An entry is named by a [`StoreKey`] (the client's key and the caller's scope) and holds the
/// request's [`Fingerprint`]. While in flight it holds the [`LeaseToken`] of the request that
/// took the lease, and expires after the lease's TTL; once completed it holds the
/// [`StoredResponse`] and expires after the retention the layer asks for.
///
/// # Round trips
///
/// The operations are shaped so that a networked store needs **one** round trip for a replay,
/// a conflict or a mismatch ([`begin`](IdempotencyStore::begin) alone) and **two** for a first
/// execution (`begin`, then [`complete`](IdempotencyStore::complete) or
/// [`release`](IdempotencyStore::release)). Each must be atomic: on Redis, one Lua script per
/// operation.
///
/// # Contract
///
/// Every implementation passes the conformance suite (`conformance::run`, feature
/// `test-util`), which checks each of these:
///
/// 1. `begin(key, fp, lease)`, atomically:
///    - no entry (or an expired one): create an in-flight entry holding `fp` and
///      `lease.token`, expiring after `lease.ttl`; return [`Begin::Acquired`];
///    - an entry whose fingerprint is not `fp`: [`Begin::Mismatch`] (whatever its state);
///    - a completed entry with `fp`: [`Begin::Completed`] with the response exactly as stored
///      (status, every header value in order, binary values included, body, trailers);
///    - an in-flight entry with `fp`: [`Begin::InFlight`] with the time left on its lease.
///
///    Of any number of concurrent `begin`s on one absent key, exactly one gets `Acquired`.
/// 2. `complete(key, token, response, retention)`: if the entry is in flight under `token`
///    (and its lease has not expired), make it completed with `response`, expiring after
///    `retention`, and return `Ok(true)`. Otherwise change nothing and return `Ok(false)`:
///    the lease was lost (it expired, and maybe another request took it).
/// 3. `release(key, token)`: if the entry is in flight under `token`, remove it and return
///    `Ok(true)`; otherwise change nothing and return `Ok(false)`. A completed entry is never
///    removed by `release`.
/// 4. Entries of different [`StoreKey`]s never affect each other (keys are compared byte for
///    byte: [`StoreKey::as_str`]).
/// 5. A store that cannot take a new entry without dropping an in-flight one returns
///    [`StoreErrorKind::Full`]; it never drops an in-flight entry to make room (that would
///    let a concurrent retry run the request a second time). Dropping completed entries
///    before their retention ends is allowed, but must be documented (the memory store does
///    it, oldest first, when full).
///
/// TTLs are kept to the millisecond at least. Stores keep time with their own clock (the
/// memory store with an injected [`Clock`](rampart_core::clock::Clock), Redis with the
/// server's).
///
/// # Implementing it on Redis
///
/// One hash per entry, at a key made of a prefix and [`StoreKey::as_str`]: fields `fp`
/// (the fingerprint's 32 bytes, or [`Fingerprint::to_hex`]), `token`
/// ([`LeaseToken::to_hex`]) while in flight, `resp` ([`StoredResponse::encode`]) once
/// completed; the entry's lifetime is the key's `PEXPIRE`. `begin` is one script:
///
/// ```lua
/// -- KEYS[1] entry; ARGV[1] fp, ARGV[2] token, ARGV[3] lease ms
/// local e = redis.call('HMGET', KEYS[1], 'fp', 'resp')
/// if not e[1] then
///   redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'token', ARGV[2])
///   redis.call('PEXPIRE', KEYS[1], ARGV[3])
///   return {'acquired'}
/// end
/// if e[1] ~= ARGV[1] then return {'mismatch'} end
/// if e[2] then return {'completed', e[2]} end
/// return {'in_flight', redis.call('PTTL', KEYS[1])}
/// ```
///
/// `complete` sets `resp`, deletes `token` and `PEXPIRE`s to the retention only if `token`
/// is still the caller's and `resp` is absent; `release` `DEL`s the key under the same
/// condition. Redis evicting keys under `maxmemory` breaks rule 5: use a `noeviction` (or
/// `volatile-*` with care) policy, and say so in the store's docs.
pub trait IdempotencyStore: Send + Sync + fmt::Debug + 'static {
    /// A short description for logs and errors, e.g. `memory(10000 entries)` or
    /// `redis://cache:6379/0`. Never holds a password.
    fn describe(&self) -> String;

    /// Takes the lease on `key` for a request with fingerprint `fingerprint`, or says why not:
    /// the stored response, a lease held by another request, or a different fingerprint.
    fn begin<'a>(
        &'a self,
        key: &'a StoreKey,
        fingerprint: &'a Fingerprint,
        lease: Lease,
    ) -> BoxFuture<'a, Result<Begin, StoreError>>;

    /// Stores `response` for `key` if the lease `token` still holds it, to be kept for
    /// `retention`; `Ok(false)` if the lease was lost.
    fn complete<'a>(
        &'a self,
        key: &'a StoreKey,
        token: LeaseToken,
        response: &'a StoredResponse,
        retention: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Gives up the lease `token` on `key` (the request will not be stored, and a retry may
    /// run it again); `Ok(false)` if the lease was no longer held.
    fn release<'a>(
        &'a self,
        key: &'a StoreKey,
        token: LeaseToken,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
}

impl<T: IdempotencyStore + ?Sized> IdempotencyStore for Arc<T> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn begin<'a>(
        &'a self,
        key: &'a StoreKey,
        fingerprint: &'a Fingerprint,
        lease: Lease,
    ) -> BoxFuture<'a, Result<Begin, StoreError>> {
        (**self).begin(key, fingerprint, lease)
    }
    fn complete<'a>(
        &'a self,
        key: &'a StoreKey,
        token: LeaseToken,
        response: &'a StoredResponse,
        retention: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        (**self).complete(key, token, response, retention)
    }
    fn release<'a>(
        &'a self,
        key: &'a StoreKey,
        token: LeaseToken,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        (**self).release(key, token)
    }
}

/// What [`IdempotencyStore::begin`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// The lease is the caller's: run the request, then `complete` or `release`.
    Acquired,
    /// The request already ran; here is its response (boxed: it is far larger than the other
    /// variants).
    Completed(Box<StoredResponse>),
    /// Another request with the same key and fingerprint holds the lease, for at most this
    /// much longer.
    InFlight {
        /// The time left on the lease.
        expires_in: Duration,
    },
    /// The key is in use (in flight or completed) by a request with another fingerprint.
    Mismatch,
}

/// The name of an entry: the client's key within the caller's scope.
///
/// [`as_str`](Self::as_str) is the canonical, unambiguous form a store indexes by:
/// `g:<key>` in the global scope, `c:<32 hex digits>:<key>` for a caller, where the digits are
/// the first 128 bits of the SHA-256 of the caller's identity. The identity itself (an API key,
/// say) is never stored.
///
/// ```
/// use rampart_idempotency::StoreKey;
///
/// assert_eq!(StoreKey::global("order-42").as_str(), "g:order-42");
/// let k = StoreKey::for_caller("tenant-a", "order-42");
/// assert_eq!(k.key(), "order-42");
/// assert!(k.as_str().starts_with("c:") && k.as_str().ends_with(":order-42"));
/// assert_ne!(k, StoreKey::for_caller("tenant-b", "order-42"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StoreKey {
    id: String,
    key_at: usize,
}

impl StoreKey {
    /// `key` in the global scope (the layer's default: no caller identity).
    pub fn global(key: &str) -> Self {
        let mut id = String::with_capacity(2 + key.len());
        id.push_str("g:");
        id.push_str(key);
        Self { id, key_at: 2 }
    }

    /// `key` in the scope of the caller `caller` (e.g. an API key or a tenant id).
    pub fn for_caller(caller: &str, key: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"rampart-idempotency/caller\0");
        h.update(caller.as_bytes());
        let digest: [u8; 32] = h.finalize().into();
        let mut id = String::with_capacity(2 + 32 + 1 + key.len());
        id.push_str("c:");
        id.push_str(&hex(&digest[..16]));
        id.push(':');
        let key_at = id.len();
        id.push_str(key);
        Self { id, key_at }
    }

    /// The canonical form, unique per (scope, key): what a store indexes by.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The client's key.
    pub fn key(&self) -> &str {
        &self.id[self.key_at..]
    }

    /// `true` in the global scope.
    pub fn is_global(&self) -> bool {
        self.key_at == 2
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StoreKey").field(&self.id).finish()
    }
}

impl fmt::Display for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

/// A lease to take: who takes it ([`LeaseToken`]) and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Names the request holding the lease; `complete` and `release` must present it.
    pub token: LeaseToken,
    /// How long the lease holds if the request never completes (a crash).
    pub ttl: Duration,
}

impl Lease {
    /// A lease for `token`, held for `ttl`.
    pub const fn new(token: LeaseToken, ttl: Duration) -> Self {
        Self { token, ttl }
    }
}

/// A random 128-bit token naming one request's lease, so that a request whose lease expired
/// (and was taken by a retry) can neither complete nor release the retry's lease.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseToken(u128);

impl LeaseToken {
    /// A fresh random token.
    pub fn random() -> Self {
        Self(fastrand::u128(..))
    }

    /// A token from its number (as a store kept it, or a fixed one in tests).
    pub const fn from_u128(n: u128) -> Self {
        Self(n)
    }

    /// The token's number.
    pub const fn as_u128(self) -> u128 {
        self.0
    }

    /// 32 lowercase hex digits.
    pub fn to_hex(self) -> String {
        hex(&self.0.to_be_bytes())
    }

    /// A token from [`to_hex`](Self::to_hex)'s form; `None` if `s` is not 32 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 32 {
            return None;
        }
        s.bytes()
            .try_fold(0u128, |n, c| Some((n << 4) | u128::from(nibble(c)?)))
            .map(Self)
    }
}

impl fmt::Debug for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeaseToken({})", self.to_hex())
    }
}

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// What kind of failure a [`StoreError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The store could not be reached or did not answer in time.
    Unavailable,
    /// The store is full and will not drop an in-flight entry to make room; the layer always
    /// answers `503` (it is overload, not an outage, so fail-open does not apply).
    Full,
    /// A stored entry could not be read back.
    Corrupt,
    /// Any other failure.
    Other,
}

impl StoreErrorKind {
    /// A lowercase name: `unavailable`, `full`, `corrupt`, `other`.
    pub const fn as_str(self) -> &'static str {
        match self {
            StoreErrorKind::Unavailable => "unavailable",
            StoreErrorKind::Full => "full",
            StoreErrorKind::Corrupt => "corrupt",
            StoreErrorKind::Other => "other",
        }
    }
}

/// An idempotency store failed: which store, what kind of failure, and the cause
/// (rampart-core's [`StoreError`](rampart_core::store::StoreError) with this crate's
/// [`StoreErrorKind`]).
pub type StoreError = rampart_core::store::StoreError<StoreErrorKind>;

impl rampart_core::store::ErrorKind for StoreErrorKind {
    const STORE: &'static str = "idempotency";

    fn describe(self) -> &'static str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_keys_are_unambiguous() {
        // A caller's scope never collides with the global one, nor with another caller's.
        let g = StoreKey::global("k");
        let a = StoreKey::for_caller("a", "k");
        let b = StoreKey::for_caller("b", "k");
        assert!(g.is_global() && !a.is_global());
        assert_ne!(g, a);
        assert_ne!(a, b);
        assert_eq!(a, StoreKey::for_caller("a", "k"));
        assert_eq!(a.key(), "k");
        assert_eq!(a.as_str().len(), 2 + 32 + 1 + 1);
        // A global key that looks like a caller's is still global.
        let tricky = StoreKey::global(&a.as_str()[2..]);
        assert_ne!(tricky.as_str(), a.as_str());
        // The identity is not in the key.
        let secret = StoreKey::for_caller("sk_live_secret", "k");
        assert!(!secret.as_str().contains("secret"));
    }

    #[test]
    fn lease_tokens_round_trip_through_hex() {
        let t = LeaseToken::random();
        assert_eq!(LeaseToken::from_hex(&t.to_hex()), Some(t));
        assert_eq!(LeaseToken::from_u128(1).to_hex(), format!("{:032x}", 1));
        assert_eq!(LeaseToken::from_hex("xyz"), None);
        assert_ne!(LeaseToken::random(), LeaseToken::random());
    }

    #[test]
    fn store_errors_name_the_store_and_cause() {
        let e = StoreError::new("redis://cache", StoreErrorKind::Unavailable)
            .with_source("connection refused");
        assert_eq!(
            e.to_string(),
            "idempotency store redis://cache: unavailable: connection refused"
        );
        assert_eq!(e.kind(), StoreErrorKind::Unavailable);
        assert!(std::error::Error::source(&e).is_some());
    }
}
