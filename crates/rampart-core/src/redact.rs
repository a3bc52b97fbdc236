//! Keeping secrets out of what rampart writes down: records at rest, error texts, log lines
//! and the CLI's output. Written once, used by every layer and store that shows a URL, a
//! header or an error.
//!
//! - [`connection_url`]: a store's connection URL (`redis://user:pass@host/0`, a NATS server
//!   list) without its credentials, query or fragment, for descriptions and errors.
//! - [`request_uri`]: a request's URI for a record: the user info dropped, the query's keys kept
//!   and their values masked (but for the keys a [`QueryPolicy`] keeps).
//! - [`uri_path`]: the path alone, for log lines.
//! - [`text`]: an error text with every URL in it redacted as [`request_uri`] does with every
//!   value masked (transport errors often quote the URL they failed on).
//! - [`is_credential_header`]: the headers that carry credentials, by name.
//!
//! ```
//! use rampart_core::redact::{self, QueryPolicy};
//!
//! assert_eq!(
//!     redact::connection_url("redis://app:p@ss/w?rd@db.internal:6380/2?x=1"),
//!     "redis://db.internal:6380/2"
//! );
//! let (uri, masked) = redact::request_uri(
//!     "https://user:pw@api.example/v1/hooks?token=abc&page=2",
//!     &QueryPolicy::default().keep("page"),
//! );
//! assert_eq!(uri, "https://api.example/v1/hooks?token=[redacted]&page=2");
//! assert!(masked);
//! assert_eq!(
//!     redact::text("error sending request for url (http://u:pw@h/x?sig=s3cr3t)"),
//!     "error sending request for url (http://h/x?sig=[redacted])"
//! );
//! assert!(redact::is_credential_header("X-Api-Key"));
//! assert!(!redact::is_credential_header("idempotency-key"));
//! ```

use std::borrow::Cow;

/// What a masked value reads as.
pub const REDACTED: &str = "[redacted]";

/// Header names that carry credentials, lowercase: always redacted. [`is_credential_header`]
/// also recognises names by what they contain (`token`, `secret`, `password`, …).
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "apikey",
    "x-auth-token",
    "x-amz-security-token",
    "x-goog-api-key",
    "x-functions-key",
    "ocp-apim-subscription-key",
    "private-token",
    "x-vault-token",
];

/// Parts of header names that mark a credential (`x-refresh-token`, `x-client-secret`,
/// `x-db-password`, `x-session-id`, …).
const CREDENTIAL_PARTS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "api-key",
    "apikey",
    "api_key",
    "session",
    "credential",
    "signature",
];

/// `true` if a header called `name` (any case) carries credentials: one of
/// [`CREDENTIAL_HEADERS`], or a name containing `token`, `secret`, `password`, `passwd`,
/// `api-key`, `apikey`, `api_key`, `session`, `credential` or `signature`.
pub fn is_credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    CREDENTIAL_HEADERS.contains(&name.as_str()) || CREDENTIAL_PARTS.iter().any(|p| name.contains(p))
}

/// Which query values a record keeps: by default none (every value is masked, the keys are
/// kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryPolicy {
    keep: Vec<String>,
    keep_all: bool,
}

impl QueryPolicy {
    /// Every value masked: the default.
    pub fn mask_all() -> Self {
        Self::default()
    }

    /// Every value kept: for services whose queries never carry secrets.
    pub fn keep_all() -> Self {
        Self {
            keep: Vec::new(),
            keep_all: true,
        }
    }

    /// Keeps the values of the key `name` (compared without regard to case).
    pub fn keep(mut self, name: impl Into<String>) -> Self {
        self.keep.push(name.into().to_ascii_lowercase());
        self
    }

    /// `true` if the value of `key` is kept.
    pub fn keeps(&self, key: &str) -> bool {
        self.keep_all || self.keep.iter().any(|k| k.eq_ignore_ascii_case(key))
    }
}

/// Splits `scheme://rest` (`None` for a text without one).
fn split_scheme(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let valid = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((scheme, rest))
}

/// A connection URL, or a comma-separated list of them, without credentials, query or
/// fragment. A password may hold `/ ? # , @`: everything up to the last `@` of each URL is
/// taken for user info (a path with an `@` in it loses its start too, which shows less, never
/// more). A text without `scheme://` is cut at its last `@` the same way.
pub fn connection_url(url: &str) -> String {
    if split_scheme(url).is_none() {
        return match url.rsplit_once('@') {
            Some((_, host)) => host.to_owned(),
            None => url.to_owned(),
        };
    }
    // A list: a new URL starts at each `,scheme://`.
    let mut starts = vec![0];
    for (i, _) in url.match_indices(',') {
        let next = url[i + 1..].trim_start();
        if split_scheme(next).is_some_and(|(scheme, _)| !scheme.contains(['@', '/', ':'])) {
            starts.push(i + 1);
        }
    }
    starts.push(url.len() + 1);
    let segments: Vec<&str> = starts.windows(2).map(|w| &url[w[0]..w[1] - 1]).collect();
    // A password may itself hold `,scheme://`: a segment with no `@` before one that has one
    // may be the start of its user info, so it is taken with it (hiding a host at worst).
    let mut out = Vec::new();
    let mut pending: Option<usize> = None;
    let mut offset = 0;
    for (i, seg) in segments.iter().enumerate() {
        let start = *pending.get_or_insert(offset);
        offset += seg.len() + 1;
        let later_has_at = segments[i + 1..].iter().any(|s| s.contains('@'));
        if !seg.contains('@') && later_has_at {
            continue;
        }
        out.push(one_connection_url(url[start..offset - 1].trim()));
        pending = None;
    }
    out.join(",")
}

fn one_connection_url(url: &str) -> String {
    let Some((scheme, rest)) = split_scheme(url) else {
        return connection_url(url);
    };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    format!("{scheme}://{rest}")
}

/// A request URI for a record: the user info dropped (a `user:pass@` reqwest kept in the URL),
/// the fragment dropped, and every query value masked but the ones `policy` keeps. The second
/// value says whether a value was masked (the URI is then not the one sent).
pub fn request_uri(uri: &str, policy: &QueryPolicy) -> (String, bool) {
    let (prefix, rest) = match split_scheme(uri) {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(end);
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            (format!("{scheme}://{host}"), tail)
        }
        None => (String::new(), uri),
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let mut out = prefix;
    out.push_str(path);
    let mut masked = false;
    if let Some(query) = query {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((key, value)) if !value.is_empty() && !policy.keeps(key) => {
                    out.push_str(key);
                    out.push('=');
                    out.push_str(REDACTED);
                    masked = true;
                }
                _ => out.push_str(pair),
            }
        }
    }
    (out, masked)
}

/// The path of `uri` alone (no scheme, host, user info, query or fragment): what log lines
/// show of a request.
pub fn uri_path(uri: &str) -> &str {
    let rest = match split_scheme(uri) {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => uri,
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    match &rest[..end] {
        "" => "/",
        path => path,
    }
}

/// `text` with every URL in it (`scheme://…`, up to a space, a quote or a bracket) redacted as
/// [`request_uri`] does with every query value masked.
pub fn text(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // Back over the scheme.
        let start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[at..]
            .find(|c: char| {
                c.is_whitespace()
                    || matches!(
                        c,
                        '"' | '\'' | '<' | '>' | '(' | ')' | '[' | ']' | '{' | '}' | '`'
                    )
            })
            .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        if start == at {
            // `://` with no scheme before it: not a URL.
            out.push_str(&rest[at..at + 3]);
            rest = &rest[at + 3..];
            continue;
        }
        out.push_str(&request_uri(&rest[start..end], &QueryPolicy::mask_all()).0);
        rest = &rest[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_urls_lose_credentials_with_any_character_in_the_password() {
        for (url, shown) in [
            (
                "redis://user:s3cret@db.example:6380/2",
                "redis://db.example:6380/2",
            ),
            ("redis://:s3cret@h/0?x=1", "redis://h/0"),
            ("redis://:pa/ss@h:1/0", "redis://h:1/0"),
            ("redis://:pa?ss@h:1", "redis://h:1"),
            ("redis://:pa#ss@h:1", "redis://h:1"),
            ("redis://:pa,ss@h:1", "redis://h:1"),
            ("redis://:p@ss@h:1", "redis://h:1"),
            (
                "redis+unix:///run/redis.sock?pass=s3cret",
                "redis+unix:///run/redis.sock",
            ),
            (
                "nats://a:x@n1:4222,nats://b:y@n2:4222",
                "nats://n1:4222,nats://n2:4222",
            ),
            ("nats://a:x,nats://@n1:4222", "nats://n1:4222"),
            ("nats://a:x,nats://y@n1:4222", "nats://n1:4222"),
            ("pw@host:1", "host:1"),
            ("user:pa/ss@host:1", "host:1"),
            ("h:4222", "h:4222"),
            ("not a url", "not a url"),
        ] {
            let got = connection_url(url);
            assert_eq!(got, shown, "{url}");
            for secret in ["s3cret", "pa", "ss", ":x", ":y", "pw"] {
                if url.contains(secret) && !shown.contains(secret) {
                    assert!(!got.contains(secret), "{url} → {got}");
                }
            }
        }
    }

    #[test]
    fn request_uris_keep_keys_and_mask_values() {
        let all = QueryPolicy::default();
        assert_eq!(
            request_uri("http://h/p?token=abc&flag&empty=", &all),
            ("http://h/p?token=[redacted]&flag&empty=".into(), true)
        );
        assert_eq!(
            request_uri("http://u:p@h:8080/p#frag", &all),
            ("http://h:8080/p".into(), false)
        );
        assert_eq!(
            request_uri("/orders?id=7", &QueryPolicy::keep_all()),
            ("/orders?id=7".into(), false)
        );
        let some = QueryPolicy::default().keep("Page");
        assert_eq!(
            request_uri("https://s3.example/o?X-Amz-Signature=f00&page=2", &some).0,
            "https://s3.example/o?X-Amz-Signature=[redacted]&page=2"
        );
    }

    #[test]
    fn texts_lose_every_secret_of_every_url() {
        let t = text(
            "connect to redis://:pw@db:6379/0 failed; then https://a:b@h/x?api_key=K1 (twice: \
             'https://h/y?sig=K2')",
        );
        for secret in ["pw", "a:b", "K1", "K2"] {
            assert!(!t.contains(secret), "{t}");
        }
        assert!(t.contains("https://h/x?api_key=[redacted]"), "{t}");
        assert_eq!(text("no url here"), "no url here");
        assert_eq!(text("odd :// text"), "odd :// text");
    }

    #[test]
    fn paths_alone_for_logs() {
        assert_eq!(uri_path("https://u:p@h/a/b?t=1#f"), "/a/b");
        assert_eq!(uri_path("https://h"), "/");
        assert_eq!(uri_path("/x?y"), "/x");
    }

    #[test]
    fn credential_headers_by_name_and_by_part() {
        for h in [
            "Authorization",
            "cookie",
            "X-Api-Key",
            "Api-Key",
            "X-Auth-Token",
            "X-Amz-Security-Token",
            "x-refresh-token",
            "x-client-secret",
            "X-Hub-Signature-256",
        ] {
            assert!(is_credential_header(h), "{h}");
        }
        for h in ["content-type", "idempotency-key", "x-request-id", "accept"] {
            assert!(!is_credential_header(h), "{h}");
        }
    }
}
