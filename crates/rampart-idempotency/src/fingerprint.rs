//! [`Fingerprint`]: what makes two requests with the same key "the same request".
//!
//! A SHA-256 over the method, the path and query, the configured headers and the body. Each
//! part is length-prefixed, so no two different requests hash the same input (moving a byte
//! from the path into the body changes the fingerprint). A key reused with a different
//! fingerprint is refused with `422`.

use std::fmt;

use http::{HeaderMap, HeaderName, Method, Uri};
use sha2::{Digest, Sha256};

/// The SHA-256 fingerprint of a request: 32 bytes.
///
/// ```
/// use rampart_idempotency::Fingerprint;
///
/// let a = Fingerprint::of(&http::Method::POST, &"/charges?x=1".parse().unwrap(),
///                         &http::HeaderMap::new(), &[], b"{\"amount\":5}");
/// let b = Fingerprint::of(&http::Method::POST, &"/charges?x=1".parse().unwrap(),
///                         &http::HeaderMap::new(), &[], b"{\"amount\":6}");
/// assert_ne!(a, b);
/// assert_eq!(a.to_hex().len(), 64);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a request: its method, its path and query (`/` when it has none;
    /// the scheme and authority are left out, as a server behind a proxy sees them vary), the
    /// values of the headers in `headers` that are named in `names` (every value, in order; an
    /// absent header counts as absent, not as empty), and its body.
    pub fn of(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        names: &[HeaderName],
        body: &[u8],
    ) -> Self {
        let mut h = Sha256::new();
        // A version tag, so that a later change of the input layout never matches an old entry.
        h.update(b"rampart-idempotency/v1\0");
        part(&mut h, method.as_str().as_bytes());
        let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
        part(&mut h, pq.as_bytes());
        h.update((names.len() as u64).to_be_bytes());
        for name in names {
            part(&mut h, name.as_str().as_bytes());
            let values = headers.get_all(name);
            h.update((values.iter().count() as u64).to_be_bytes());
            for v in values {
                part(&mut h, v.as_bytes());
            }
        }
        part(&mut h, body);
        Self(h.finalize().into())
    }

    /// A fingerprint from its 32 bytes (as a store kept them).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// A fingerprint from [`to_hex`](Self::to_hex)'s form; `None` if `s` is not 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let s = s.as_bytes();
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(Self(out))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.to_hex())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

fn part(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

pub(crate) const fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        names: &[&str],
        body: &[u8],
    ) -> Fingerprint {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let names: Vec<HeaderName> = names
            .iter()
            .map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap())
            .collect();
        Fingerprint::of(
            &Method::from_bytes(method.as_bytes()).unwrap(),
            &uri.parse().unwrap(),
            &map,
            &names,
            body,
        )
    }

    #[test]
    fn same_request_same_fingerprint() {
        assert_eq!(
            fp("POST", "/a?b=1", &[], &[], b"x"),
            fp("POST", "/a?b=1", &[], &[], b"x")
        );
    }

    #[test]
    fn every_part_counts() {
        let base = fp(
            "POST",
            "/a?b=1",
            &[("content-type", "json")],
            &["content-type"],
            b"x",
        );
        assert_ne!(
            base,
            fp(
                "PATCH",
                "/a?b=1",
                &[("content-type", "json")],
                &["content-type"],
                b"x"
            )
        );
        assert_ne!(
            base,
            fp(
                "POST",
                "/b?b=1",
                &[("content-type", "json")],
                &["content-type"],
                b"x"
            )
        );
        assert_ne!(
            base,
            fp(
                "POST",
                "/a?b=2",
                &[("content-type", "json")],
                &["content-type"],
                b"x"
            )
        );
        assert_ne!(
            base,
            fp(
                "POST",
                "/a",
                &[("content-type", "json")],
                &["content-type"],
                b"x"
            )
        );
        assert_ne!(
            base,
            fp(
                "POST",
                "/a?b=1",
                &[("content-type", "xml")],
                &["content-type"],
                b"x"
            )
        );
        assert_ne!(base, fp("POST", "/a?b=1", &[], &["content-type"], b"x"));
        assert_ne!(
            base,
            fp(
                "POST",
                "/a?b=1",
                &[("content-type", "json")],
                &["content-type"],
                b"y"
            )
        );
    }

    #[test]
    fn only_configured_headers_count() {
        assert_eq!(
            fp("POST", "/a", &[("x-request-id", "1")], &[], b""),
            fp("POST", "/a", &[("x-request-id", "2")], &[], b"")
        );
    }

    #[test]
    fn scheme_and_authority_do_not_count() {
        assert_eq!(
            fp("POST", "http://a.example/x", &[], &[], b""),
            fp("POST", "/x", &[], &[], b"")
        );
    }

    #[test]
    fn parts_are_unambiguous() {
        // An empty header value and an absent header differ; so do one value "a,b" and two.
        assert_ne!(
            fp("POST", "/", &[("x", "")], &["x"], b""),
            fp("POST", "/", &[], &["x"], b"")
        );
        assert_ne!(
            fp("POST", "/", &[("x", "a,b")], &["x"], b""),
            fp("POST", "/", &[("x", "a"), ("x", "b")], &["x"], b"")
        );
        // Bytes moved between the header and the body.
        assert_ne!(
            fp("POST", "/", &[("x", "ab")], &["x"], b"c"),
            fp("POST", "/", &[("x", "a")], &["x"], b"bc")
        );
    }

    #[test]
    fn hex_round_trip() {
        let f = fp("POST", "/", &[], &[], b"body");
        let hex = f.to_hex();
        assert_eq!(hex.len(), 64);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(Fingerprint::from_hex(&hex), Some(f));
        assert_eq!(Fingerprint::from_hex(&hex.to_uppercase()), Some(f));
        assert_eq!(Fingerprint::from_hex("zz"), None);
        assert_eq!(Fingerprint::from_hex(&"g".repeat(64)), None);
        assert_eq!(Fingerprint::from_bytes(*f.as_bytes()), f);
    }

    #[test]
    fn known_vector() {
        // Pinned: a change of the input layout must be deliberate (it orphans stored entries,
        // whose retries then get 422).
        let f = fp("POST", "/charges", &[], &[], b"{}");
        assert_eq!(f, fp("POST", "/charges", &[], &[], b"{}"));
        let mut h = Sha256::new();
        h.update(b"rampart-idempotency/v1\0");
        for p in [&b"POST"[..], b"/charges"] {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p);
        }
        h.update(0u64.to_be_bytes());
        h.update(2u64.to_be_bytes());
        h.update(b"{}");
        assert_eq!(f.as_bytes(), &<[u8; 32]>::from(h.finalize()));
    }
}
