//! [`StoredResponse`]: what is kept of a response to replay it, and its byte encoding for
//! stores that keep bytes ([`StoredResponse::encode`] / [`StoredResponse::decode`]).
//!
//! # What is stored
//!
//! The status, the headers, the whole body and the trailers, if any. Left out: the hop-by-hop
//! headers (`Connection` and every header it names, `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`,
//! `Transfer-Encoding`, `Upgrade`), which describe one connection and not the response;
//! `Set-Cookie` unless the layer is told to keep it (a session cookie minted for one caller
//! must not be handed to whoever replays the key); and any header the layer is told to
//! exclude.

use std::fmt;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use crate::headers::{IDEMPOTENCY_STORED, IDEMPOTENT_REPLAYED};

/// A response as the store keeps it, to be replayed.
///
/// ```
/// use bytes::Bytes;
/// use rampart_idempotency::StoredResponse;
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("content-type", "application/json".parse().unwrap());
/// let stored = StoredResponse::new(http::StatusCode::CREATED, headers, Bytes::from("{\"id\":7}"));
/// let bytes = stored.encode();
/// assert_eq!(bytes.len(), stored.encoded_len());
/// assert_eq!(StoredResponse::decode(&bytes).unwrap(), stored);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

impl StoredResponse {
    /// A response with `status`, `headers` (already filtered: stored as given) and `body`.
    pub fn new(status: StatusCode, headers: HeaderMap, body: Bytes) -> Self {
        Self {
            status,
            headers,
            body,
            trailers: None,
        }
    }

    /// The same response, with trailers.
    pub fn with_trailers(mut self, trailers: HeaderMap) -> Self {
        self.trailers = Some(trailers);
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The trailers, if the response had any.
    pub fn trailers(&self) -> Option<&HeaderMap> {
        self.trailers.as_ref()
    }

    /// The parts: status, headers, body, trailers.
    pub fn into_parts(self) -> (StatusCode, HeaderMap, Bytes, Option<HeaderMap>) {
        (self.status, self.headers, self.body, self.trailers)
    }

    /// A copy that owns its bytes: the body and every header value in allocations of their
    /// own. A body or header read from a connection is a slice of that connection's read
    /// buffer (8 KiB or more); a response kept for its retention as such a slice would keep
    /// the whole buffer alive, so a store of 50 000 small responses would hold hundreds of
    /// megabytes while counting a few. The memory store keeps this copy; a store that
    /// encodes ([`encode`](Self::encode)) copies anyway.
    pub(crate) fn compacted(&self) -> Self {
        fn headers(map: &HeaderMap) -> HeaderMap {
            let mut out = HeaderMap::with_capacity(map.len());
            for (name, value) in map {
                let mut copy =
                    HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
                copy.set_sensitive(value.is_sensitive());
                out.append(name.clone(), copy);
            }
            out
        }
        Self {
            status: self.status,
            headers: headers(&self.headers),
            body: Bytes::copy_from_slice(&self.body),
            trailers: self.trailers.as_ref().map(headers),
        }
    }

    /// The length of [`encode`](Self::encode)'s output, without encoding: what a store
    /// counts against a size limit.
    pub fn encoded_len(&self) -> usize {
        MAGIC.len()
            + 2
            + headers_len(&self.headers)
            + 1
            + self.trailers.as_ref().map_or(0, headers_len)
            + 8
            + self.body.len()
    }

    /// The response as bytes, in a versioned binary format: `rir\x01`, the status (u16), the
    /// headers, a trailers flag (u8) and the trailers if it is 1, the body's length (u64) and
    /// the body. A header block is a count (u32), then per value the name's length (u16), the
    /// name, the value's length (u32) and the value. Integers are big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.status.as_u16().to_be_bytes());
        encode_headers(&mut out, &self.headers);
        match &self.trailers {
            None => out.push(0),
            Some(t) => {
                out.push(1);
                encode_headers(&mut out, t);
            }
        }
        out.extend_from_slice(&(self.body.len() as u64).to_be_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    /// A response from [`encode`](Self::encode)'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        if r.take(MAGIC.len())? != MAGIC {
            return Err(DecodeError("not a stored response (bad magic or version)"));
        }
        let status = StatusCode::from_u16(r.u16()?).map_err(|_| DecodeError("bad status"))?;
        let headers = decode_headers(&mut r)?;
        let trailers = match r.u8()? {
            0 => None,
            1 => Some(decode_headers(&mut r)?),
            _ => return Err(DecodeError("bad trailers flag")),
        };
        let len = usize::try_from(r.u64()?).map_err(|_| DecodeError("body too long"))?;
        let body = Bytes::copy_from_slice(r.take(len)?);
        if !r.0.is_empty() {
            return Err(DecodeError("bytes after the body"));
        }
        Ok(Self {
            status,
            headers,
            body,
            trailers,
        })
    }
}

const MAGIC: &[u8; 4] = b"rir\x01";

fn headers_len(h: &HeaderMap) -> usize {
    4 + h
        .iter()
        .map(|(n, v)| 2 + n.as_str().len() + 4 + v.len())
        .sum::<usize>()
}

fn encode_headers(out: &mut Vec<u8>, h: &HeaderMap) {
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    for (name, value) in h {
        // Header names are short (hyper refuses names over 64 KiB).
        out.extend_from_slice(&(name.as_str().len() as u16).to_be_bytes());
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
}

fn decode_headers(r: &mut Reader<'_>) -> Result<HeaderMap, DecodeError> {
    let count = r.u32()? as usize;
    // Each header takes at least 6 bytes: refuse a count the input cannot hold before
    // reserving anything.
    if count > r.0.len() / 6 {
        return Err(DecodeError("header count larger than the input"));
    }
    let mut h = HeaderMap::with_capacity(count);
    for _ in 0..count {
        let n = usize::from(r.u16()?);
        let name =
            HeaderName::from_bytes(r.take(n)?).map_err(|_| DecodeError("bad header name"))?;
        let n = r.u32()? as usize;
        let value =
            HeaderValue::from_bytes(r.take(n)?).map_err(|_| DecodeError("bad header value"))?;
        h.append(name, value);
    }
    Ok(h)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_be_bytes)
    }
}

/// Bytes that are not an encoded [`StoredResponse`]. A store reports it as
/// [`StoreErrorKind::Corrupt`](crate::StoreErrorKind::Corrupt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeError(&'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot decode stored response: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// `true` for headers that describe a connection rather than a response.
fn hop_by_hop(name: &HeaderName) -> bool {
    *name == header::CONNECTION
        || *name == header::TE
        || *name == header::TRAILER
        || *name == header::TRANSFER_ENCODING
        || *name == header::UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str().starts_with("proxy-")
}

/// The headers of `headers` that are stored: see the [module docs](self).
pub(crate) fn storable_headers(
    headers: &HeaderMap,
    keep_set_cookie: bool,
    exclude: &[HeaderName],
) -> HeaderMap {
    // Headers named by `Connection` are hop-by-hop too (RFC 9110, 7.6.1).
    let named: Vec<&str> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let drop = hop_by_hop(name)
            || (!keep_set_cookie && *name == header::SET_COOKIE)
            || *name == IDEMPOTENT_REPLAYED
            || *name == IDEMPOTENCY_STORED
            || exclude.contains(name)
            || named.iter().any(|t| t.eq_ignore_ascii_case(name.as_str()));
        if !drop {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredResponse {
        let mut h = HeaderMap::new();
        h.append("content-type", HeaderValue::from_static("application/json"));
        h.append("x-multi", HeaderValue::from_static("one"));
        h.append("x-multi", HeaderValue::from_static("two"));
        h.append(
            "x-binary",
            HeaderValue::from_bytes(&[0xc3, 0x28, 0xff]).unwrap(),
        );
        let mut t = HeaderMap::new();
        t.append("x-checksum", HeaderValue::from_static("abc"));
        StoredResponse::new(StatusCode::CREATED, h, Bytes::from_static(b"{\"id\":1}"))
            .with_trailers(t)
    }

    #[test]
    fn encoding_round_trips_every_part() {
        for r in [
            sample(),
            StoredResponse::new(StatusCode::NO_CONTENT, HeaderMap::new(), Bytes::new()),
        ] {
            let bytes = r.encode();
            assert_eq!(bytes.len(), r.encoded_len());
            let back = StoredResponse::decode(&bytes).unwrap();
            assert_eq!(back, r);
            let order: Vec<_> = back.headers().get_all("x-multi").iter().collect();
            assert!(
                order.is_empty() || order == ["one", "two"],
                "values keep their order"
            );
        }
    }

    #[test]
    fn decoding_refuses_bad_input() {
        let good = sample().encode();
        assert!(StoredResponse::decode(b"").is_err());
        assert!(StoredResponse::decode(b"xyz\x01").is_err());
        for cut in 0..good.len() {
            assert!(
                StoredResponse::decode(&good[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(StoredResponse::decode(&extra).is_err());
        let mut bad_status = good.clone();
        bad_status[4..6].copy_from_slice(&1000u16.to_be_bytes());
        assert!(StoredResponse::decode(&bad_status).is_err());
        // A huge header count is refused without allocating for it.
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&200u16.to_be_bytes());
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        let err = StoredResponse::decode(&huge).unwrap_err();
        assert!(err.to_string().contains("header count"), "{err}");
    }

    #[test]
    fn hop_by_hop_and_set_cookie_are_not_stored() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("connection", "keep-alive, x-conn-specific"),
            ("keep-alive", "timeout=5"),
            ("proxy-authenticate", "Basic"),
            ("proxy-connection", "close"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("x-conn-specific", "1"),
            ("set-cookie", "session=abc"),
            ("idempotent-replayed", "true"),
            ("x-internal", "secret"),
            ("content-type", "text/plain"),
            ("location", "/charges/1"),
        ] {
            h.append(n, HeaderValue::from_static(v));
        }
        let exclude = [HeaderName::from_static("x-internal")];
        let kept = storable_headers(&h, false, &exclude);
        let names: Vec<_> = kept.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["content-type", "location"]);
        let kept = storable_headers(&h, true, &[]);
        assert_eq!(kept["set-cookie"], "session=abc");
        assert_eq!(kept["x-internal"], "secret");
    }
}
