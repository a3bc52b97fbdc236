//! Key extraction: which instance of a policy (which breaker, which bulkhead partition) a
//! request belongs to.
//!
//! - [`ByAuthority`]: per downstream host, from the URI authority (client side) or the `Host`
//!   header (server side).
//! - [`ByHeader`]: per value of a header, e.g. a tenant id.
//! - [`key_fn`]: any closure, e.g. per route.
//!
//! An extractor returns `None` when the request carries no key; each pattern documents what it
//! does then (the circuit breaker uses one shared fallback instance).

use std::{fmt, hash::Hash, marker::PhantomData};

/// Picks the key of the policy instance that handles a request.
pub trait KeyExtractor<Req>: Clone + Send + Sync + 'static {
    /// The key type. Cheap to clone: it is cloned once per new key, never per call.
    type Key: Hash + Eq + Clone + Send + Sync + fmt::Debug + 'static;

    /// The key of `req`, or `None` if it has none.
    fn extract(&self, req: &Req) -> Option<Self::Key>;
}

/// Keys a request by its URI authority (`host:port`), falling back to the `Host` header.
///
/// The key compares case-insensitively, as host names do.
///
/// ```
/// use rampart_core::key::{ByAuthority, KeyExtractor};
///
/// let req = http::Request::get("http://API.example.com:8080/v1").body(()).unwrap();
/// let key = ByAuthority.extract(&req).unwrap();
/// assert_eq!(key, "api.example.com:8080");
/// ```
#[cfg(feature = "http")]
#[derive(Debug, Clone, Copy, Default)]
pub struct ByAuthority;

#[cfg(feature = "http")]
impl<B> KeyExtractor<http::Request<B>> for ByAuthority {
    type Key = http::uri::Authority;

    fn extract(&self, req: &http::Request<B>) -> Option<Self::Key> {
        if let Some(a) = req.uri().authority() {
            return Some(a.clone());
        }
        let host = req.headers().get(http::header::HOST)?;
        http::uri::Authority::try_from(host.as_bytes()).ok()
    }
}

/// Keys a request by its route: method, authority, path and query, e.g.
/// `GET api.example.com/v1/items?page=2`. What a cache of responses is keyed by.
///
/// ```
/// use rampart_core::key::{ByRoute, KeyExtractor};
///
/// let req = http::Request::get("http://api.example.com/v1/items?page=2").body(()).unwrap();
/// assert_eq!(ByRoute.extract(&req).unwrap(), "GET api.example.com/v1/items?page=2");
/// ```
#[cfg(feature = "http")]
#[derive(Debug, Clone, Copy, Default)]
pub struct ByRoute;

#[cfg(feature = "http")]
impl<B> KeyExtractor<http::Request<B>> for ByRoute {
    type Key = String;

    fn extract(&self, req: &http::Request<B>) -> Option<String> {
        let uri = req.uri();
        let authority = uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| req.headers().get(http::header::HOST)?.to_str().ok())
            .unwrap_or("");
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        Some(format!("{} {authority}{path}", req.method()))
    }
}

/// Keys a request by the value of one header, e.g. `x-tenant-id`.
///
/// ```
/// use rampart_core::key::{ByHeader, KeyExtractor};
///
/// let by_tenant = ByHeader::new(http::HeaderName::from_static("x-tenant-id"));
/// let req = http::Request::get("/").header("x-tenant-id", "acme").body(()).unwrap();
/// assert_eq!(by_tenant.extract(&req).unwrap(), "acme");
/// ```
#[cfg(feature = "http")]
#[derive(Debug, Clone)]
pub struct ByHeader {
    name: http::HeaderName,
}

#[cfg(feature = "http")]
impl ByHeader {
    /// Keys by the header `name`.
    pub const fn new(name: http::HeaderName) -> Self {
        Self { name }
    }
}

#[cfg(feature = "http")]
impl<B> KeyExtractor<http::Request<B>> for ByHeader {
    type Key = http::HeaderValue;

    fn extract(&self, req: &http::Request<B>) -> Option<Self::Key> {
        req.headers().get(&self.name).cloned()
    }
}

/// The idempotency key of a logical request, in its extensions.
///
/// Set once (by rampart-retry's `IdempotencyKeyLayer`, or taken from the caller's header) and
/// identical on every attempt; the dead-letter record keeps it and a redrive reuses it, so that
/// a server-side idempotency layer turns at-least-once delivery into exactly-once effect.
#[cfg(feature = "http")]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(pub http::HeaderValue);

#[cfg(feature = "http")]
impl IdempotencyKey {
    /// The key of `req`, if one was set.
    pub fn of<B>(req: &http::Request<B>) -> Option<&IdempotencyKey> {
        req.extensions().get::<IdempotencyKey>()
    }
}

/// An extractor made from a closure; see [`key_fn`].
pub struct KeyFn<F, K> {
    f: F,
    _key: PhantomData<fn() -> K>,
}

/// Makes a key extractor from a closure.
///
/// ```
/// use rampart_core::key::{key_fn, KeyExtractor};
///
/// // Per route: the first path segment.
/// let by_route = key_fn(|req: &http::Request<()>| {
///     req.uri().path().split('/').nth(1).map(str::to_owned)
/// });
/// let req = http::Request::get("/orders/42").body(()).unwrap();
/// assert_eq!(by_route.extract(&req).as_deref(), Some("orders"));
/// ```
pub fn key_fn<F, Req, K>(f: F) -> KeyFn<F, K>
where
    F: Fn(&Req) -> Option<K>,
{
    KeyFn {
        f,
        _key: PhantomData,
    }
}

impl<F: Clone, K> Clone for KeyFn<F, K> {
    fn clone(&self) -> Self {
        Self {
            f: self.f.clone(),
            _key: PhantomData,
        }
    }
}

impl<F, K> fmt::Debug for KeyFn<F, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFn").finish_non_exhaustive()
    }
}

impl<F, Req, K> KeyExtractor<Req> for KeyFn<F, K>
where
    F: Fn(&Req) -> Option<K> + Clone + Send + Sync + 'static,
    K: Hash + Eq + Clone + Send + Sync + fmt::Debug + 'static,
{
    type Key = K;

    fn extract(&self, req: &Req) -> Option<K> {
        (self.f)(req)
    }
}

#[cfg(all(test, feature = "http"))]
mod tests {
    use super::*;

    #[test]
    fn authority_from_uri_or_host_header() {
        let req = http::Request::get("http://a.example:81/x")
            .body(())
            .unwrap();
        assert_eq!(ByAuthority.extract(&req).unwrap(), "A.EXAMPLE:81");
        let req = http::Request::get("/x")
            .header("host", "b.example")
            .body(())
            .unwrap();
        assert_eq!(ByAuthority.extract(&req).unwrap(), "b.example");
        let req = http::Request::get("/x").body(()).unwrap();
        assert!(ByAuthority.extract(&req).is_none());
        let req = http::Request::get("/x")
            .header("host", "bad host")
            .body(())
            .unwrap();
        assert!(
            ByAuthority.extract(&req).is_none(),
            "a malformed Host is no key, not a panic"
        );
    }

    #[test]
    fn header_key() {
        let k = ByHeader::new(http::HeaderName::from_static("x-tenant"));
        let req = http::Request::get("/")
            .header("x-tenant", "t1")
            .body(())
            .unwrap();
        assert_eq!(k.extract(&req).unwrap(), "t1");
        let req = http::Request::get("/").body(()).unwrap();
        assert!(k.extract(&req).is_none());
    }
}
