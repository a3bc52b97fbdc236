//! Shared helpers of the end-to-end tests in `tests/`: real servers on loopback, a real HTTP
//! client, and the URLs of the external services (Redis, NATS) some tests need.
//!
//! # External services
//!
//! Tests that need Redis or NATS read the URL from the environment ([`redis_url`],
//! [`nats_url`]). When the service does not answer, the test prints a loud `SKIP` line and
//! returns early, unless `RAMPART_REQUIRE_SERVICES=1` (CI sets it), in which case it fails.
//!
//! ```no_run
//! #[tokio::test]
//! async fn stores_in_redis() {
//!     let Some(url) = rampart_tests::redis_url() else { return };
//!     // … connect to `url` …
//! # let _ = url;
//! }
//! ```

use std::{
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::Router;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

/// Serves `router` on `127.0.0.1:0` in a background task; returns the address it listens on.
///
/// The server lives as long as the test's runtime.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("axum server");
    });
    addr
}

/// The HTTP/1 client the tests send requests with.
pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// A real HTTP/1 client (hyper-util's legacy client) that opens a new connection for every
/// request, so that the server builds a fresh clone of its service stack each time.
pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

/// The env variable that turns a missing external service from a skip into a failure.
pub const REQUIRE_SERVICES: &str = "RAMPART_REQUIRE_SERVICES";

/// The Redis URL (`REDIS_URL`, default `redis://127.0.0.1:6379`) if Redis answers; see
/// [`service_url`].
pub fn redis_url() -> Option<String> {
    service_url("Redis", "REDIS_URL", "redis://127.0.0.1:6379")
}

/// The NATS URL (`NATS_URL`, default `nats://127.0.0.1:4222`) if NATS answers; see
/// [`service_url`].
pub fn nats_url() -> Option<String> {
    service_url("NATS", "NATS_URL", "nats://127.0.0.1:4222")
}

/// The URL of an external service, read from `env_var` (or `default`), if a TCP connection to
/// its host and port succeeds within a second (a URL without a port gets `default`'s port).
///
/// If it does not, prints a loud `SKIP` line to stderr and returns `None`; with
/// `RAMPART_REQUIRE_SERVICES=1` it panics instead, so CI can't pass by skipping.
pub fn service_url(name: &str, env_var: &str, default: &str) -> Option<String> {
    let url = std::env::var(env_var).unwrap_or_else(|_| default.to_owned());
    // A URL without a port uses the default URL's port (`redis://localhost` → 6379).
    let default_port = host_port(default)
        .and_then(|hp| hp.rsplit_once(':'))
        .map(|(_, p)| p);
    let reachable = host_port(&url)
        .map(|hp| match (hp.rsplit_once(':'), default_port) {
            (Some((_, p)), _) if !p.ends_with(']') => hp.to_owned(),
            (_, Some(port)) => format!("{hp}:{port}"),
            _ => hp.to_owned(),
        })
        .and_then(|hp| hp.to_socket_addrs().ok())
        .into_iter()
        .flatten()
        .any(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok());
    if reachable {
        return Some(url);
    }
    let msg = format!("{name} is not reachable at {url} (set {env_var})");
    if std::env::var(REQUIRE_SERVICES).is_ok_and(|v| v == "1") {
        panic!("{msg}, and {REQUIRE_SERVICES}=1");
    }
    eprintln!("\n********** SKIP: {msg}; this test did not run **********\n");
    None
}

/// `host:port` of a URL such as `redis://user:pw@127.0.0.1:6379/0`.
fn host_port(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    (!host_port.is_empty()).then_some(host_port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_of_urls() {
        assert_eq!(host_port("redis://127.0.0.1:6379"), Some("127.0.0.1:6379"));
        assert_eq!(
            host_port("redis://user:pw@localhost:6380/2"),
            Some("localhost:6380")
        );
        assert_eq!(
            host_port("nats://127.0.0.1:4222?x=1"),
            Some("127.0.0.1:4222")
        );
        assert_eq!(host_port("redis://"), None);
    }

    const ABSENT: &str = "a service absent on purpose (service_url's own test)";

    #[test]
    fn an_absent_service_is_skipped_unless_required() {
        // Port 1 on loopback: nothing listens there.
        if std::env::var(REQUIRE_SERVICES).is_ok_and(|v| v == "1") {
            let r = std::panic::catch_unwind(|| {
                service_url(ABSENT, "RAMPART_TESTS_UNSET_VAR", "tcp://127.0.0.1:1")
            });
            assert!(r.is_err(), "must fail when services are required");
        } else {
            assert_eq!(
                service_url(ABSENT, "RAMPART_TESTS_UNSET_VAR", "tcp://127.0.0.1:1"),
                None
            );
        }
    }
}

/// A loopback TCP proxy (to Redis, NATS, …) that can be cut: while cut, it closes every connection,
/// open or new.
#[derive(Debug)]
pub struct Proxy {
    /// Where it listens: connect here instead of to Redis.
    pub addr: SocketAddr,
    /// Set to cut every connection, open or new; clear to let them through again.
    pub cut: Arc<AtomicBool>,
}

/// The address a service listens on, from its URL (`scheme://[auth@]host[:port][/…]`), with
/// `default_port` if it names none: what a [`Proxy`] forwards to.
pub fn service_addr(url: &str, default_port: u16) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let host_port = if host_port.contains(':') && !host_port.ends_with(']') {
        host_port.to_owned()
    } else {
        format!("{host_port}:{default_port}")
    };
    host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("no address for {url:?}"))
}

/// The address of the Redis at `url`.
pub fn redis_addr(url: &str) -> SocketAddr {
    service_addr(url, 6379)
}

/// The address of the NATS server at `url`.
pub fn nats_addr(url: &str) -> SocketAddr {
    service_addr(url, 4222)
}

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards to `to`.
    pub async fn start(to: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("a bound address");
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if flag.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    tokio::pin!(copy);
                    loop {
                        tokio::select! {
                            _ = &mut copy => return,
                            () = tokio::time::sleep(Duration::from_millis(10)) => {
                                if flag.load(Ordering::SeqCst) {
                                    return; // both ends dropped
                                }
                            }
                        }
                    }
                });
            }
        });
        Self { addr, cut }
    }
}
