//! [`ByHost`]: one breaker (or bulkhead partition) per `host:port` of a reqwest request.

use http::uri::Authority;
use rampart_core::key::KeyExtractor;
use reqwest::Request;

/// Keys a reqwest request by its URL's `host:port`, the port made explicit: `http://a.example/`
/// and `http://a.example:80/` share a key, `https://a.example/` (port 443) has another.
///
/// The key is an [`http::uri::Authority`], the key type of rampart-core's
/// [`ByAuthority`](rampart_core::key::ByAuthority), so a registry's handle is looked up the
/// same way for both. A URL without a host (none that reqwest sends) has no key: such
/// requests share the fallback instance.
///
/// For another key, any [`KeyExtractor`] over `reqwest::Request` works, e.g.
/// [`key_fn`](rampart_core::key::key_fn)`(|req: &reqwest::Request| …)`.
///
/// ```
/// use rampart_core::key::KeyExtractor;
/// use rampart_reqwest::ByHost;
///
/// let req = reqwest::Request::new(http::Method::GET, "http://API.example.com/v1".parse().unwrap());
/// assert_eq!(ByHost.extract(&req).unwrap(), "api.example.com:80");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ByHost;

impl KeyExtractor<Request> for ByHost {
    type Key = Authority;

    fn extract(&self, req: &Request) -> Option<Authority> {
        authority_of(req.url())
    }
}

/// `host:port` of `url`, the port made explicit.
pub(crate) fn authority_of(url: &reqwest::Url) -> Option<Authority> {
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    Authority::try_from(format!("{host}:{port}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(url: &str) -> Option<Authority> {
        ByHost.extract(&Request::new(http::Method::GET, url.parse().unwrap()))
    }

    #[test]
    fn host_and_port_with_the_default_port_made_explicit() {
        assert_eq!(key("http://a.example/x").unwrap(), "a.example:80");
        assert_eq!(key("http://a.example:80/y").unwrap(), "a.example:80");
        assert_eq!(key("https://a.example/").unwrap(), "a.example:443");
        assert_eq!(key("http://127.0.0.1:8080/").unwrap(), "127.0.0.1:8080");
        assert_eq!(key("http://[::1]:9/").unwrap(), "[::1]:9");
        assert!(key("data:text/plain,hi").is_none());
    }
}
