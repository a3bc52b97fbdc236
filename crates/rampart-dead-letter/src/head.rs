//! [`HeadCopy`]: a request's URI and headers copied into one buffer while it is in flight, so
//! that it can be recorded if it finally fails.
//!
//! Cloning the `HeaderMap` and the `Uri` costs two allocations for the map and, per header
//! value, an atomic increment of its `Bytes` (or, for a value made from a `&str`, a first
//! clone that allocates a shared buffer); a drop undoes each. One buffer costs one allocation
//! and one copy of a few hundred bytes, and nearly every request succeeds and drops it unread.
//! The trade-off: reading it back (on a failure only) walks the buffer and parses nothing
//! more than lengths.

use http::{HeaderMap, Uri};

/// A request's URI and headers, copied. See the [module docs](self).
pub(crate) struct HeadCopy {
    /// The URI's text, then each header as its name's length (`u32`, native order), its name,
    /// its value's length, its value.
    buf: Vec<u8>,
    /// Where the URI's text ends.
    uri_end: usize,
    /// Where the URI's path and query start, in its text.
    path_at: usize,
    /// Whether the URI has an authority (`http://host/…`, not just `/…`).
    has_authority: bool,
}

impl HeadCopy {
    /// Copies `uri` and `headers`.
    pub(crate) fn of(uri: &Uri, headers: &HeaderMap) -> Self {
        let scheme = uri.scheme_str();
        let authority = uri.authority().map(http::uri::Authority::as_str);
        let path = uri.path_and_query().map(http::uri::PathAndQuery::as_str);
        let mut len = scheme.map_or(0, |s| s.len() + 3) + authority.map_or(0, str::len);
        len += path.map_or(0, str::len);
        for (name, value) in headers {
            len += 8 + name.as_str().len() + value.len();
        }
        let mut buf = Vec::with_capacity(len);
        if let Some(scheme) = scheme {
            buf.extend_from_slice(scheme.as_bytes());
            buf.extend_from_slice(b"://");
        }
        if let Some(authority) = authority {
            buf.extend_from_slice(authority.as_bytes());
        }
        let path_at = buf.len();
        if let Some(path) = path {
            buf.extend_from_slice(path.as_bytes());
        }
        let uri_end = buf.len();
        for (name, value) in headers {
            push(&mut buf, name.as_str().as_bytes());
            push(&mut buf, value.as_bytes());
        }
        Self {
            buf,
            uri_end,
            path_at,
            has_authority: authority.is_some(),
        }
    }

    /// The URI as it was sent (as `Uri`'s `Display` writes it).
    pub(crate) fn uri(&self) -> &str {
        text(&self.buf[..self.uri_end])
    }

    /// The URI's path and query (`/` if it had none).
    pub(crate) fn path_and_query(&self) -> &str {
        match text(&self.buf[self.path_at..self.uri_end]) {
            "" => "/",
            path => path,
        }
    }

    /// Whether the URI has an authority.
    pub(crate) fn has_authority(&self) -> bool {
        self.has_authority
    }

    /// The headers, in the map's order: each name (lowercase, as `HeaderName` keeps it) and
    /// its value's bytes.
    pub(crate) fn headers(&self) -> Headers<'_> {
        Headers {
            rest: &self.buf[self.uri_end..],
        }
    }

    /// The first value of header `name` (lowercase).
    pub(crate) fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// The headers of a [`HeadCopy`].
pub(crate) struct Headers<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let name = take(&mut self.rest)?;
        let value = take(&mut self.rest)?;
        Some((text(name), value))
    }
}

/// Appends `bytes` with its length before it.
fn push(buf: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&bytes[..len as usize]);
}

/// Takes one length-prefixed run off the front of `rest`.
fn take<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, tail) = rest.split_first_chunk::<4>()?;
    let len = u32::from_ne_bytes(*len) as usize;
    let (run, tail) = tail.split_at_checked(len)?;
    *rest = tail;
    Some(run)
}

/// Text this module copied from a `&str` (a URI's parts, a header's name).
fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_reads_back_as_the_request_was() {
        let uri: Uri = "https://billing.internal:8443/v1/charges?id=7"
            .parse()
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        headers.append("x-tag", "a".parse().unwrap());
        headers.append("x-tag", "b".parse().unwrap());
        headers.insert("x-bin", http::HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        let copy = HeadCopy::of(&uri, &headers);
        assert_eq!(copy.uri(), uri.to_string());
        assert_eq!(copy.path_and_query(), "/v1/charges?id=7");
        assert!(copy.has_authority());
        let read: Vec<_> = copy.headers().collect();
        let want: Vec<_> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        assert_eq!(read, want);
        assert_eq!(copy.header("x-tag"), Some(&b"a"[..]));
        assert_eq!(copy.header("x-none"), None);
    }

    #[test]
    fn a_path_only_uri_has_no_authority() {
        let copy = HeadCopy::of(&Uri::from_static("/orders"), &HeaderMap::new());
        assert_eq!(copy.uri(), "/orders");
        assert!(!copy.has_authority());
        assert_eq!(copy.headers().count(), 0);
        let copy = HeadCopy::of(&Uri::from_static("*"), &HeaderMap::new());
        assert_eq!(copy.uri(), "*");
    }
}
