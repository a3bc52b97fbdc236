//! Connecting, for both stores: the URL checked (its password never shown), a
//! `ConnectionManager` with one quick retry, the whole bounded by the timeouts; and
//! [`describe`], the address a store names itself by.

use std::time::Duration;

use redis::{
    Client, ConnectionAddr, ConnectionInfo, RedisError,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

/// Why a connect failed, before each store maps it to its own error kinds.
#[derive(Debug)]
pub(crate) enum ConnectFailure {
    /// The URL did not parse: the message says what was expected.
    BadUrl(String),
    /// Redis answered with an error (refused, bad credentials, …).
    Redis(RedisError),
    /// No answer within this long.
    TimedOut(Duration),
}

/// The name of a store before it has connected: the URL without credentials, and the prefix.
pub(crate) fn early_name(url: &str, prefix: &str) -> String {
    format!(
        "{} (prefix {prefix})",
        rampart_core::redact::connection_url(url)
    )
}

/// Opens `url` and connects, within `connect_timeout + response_timeout`; each operation may
/// then take `response_timeout`. Returns the connection and the store's [`describe`] name.
pub(crate) async fn connect(
    url: &str,
    prefix: &str,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<(ConnectionManager, String), (String, ConnectFailure)> {
    let client = Client::open(url).map_err(|e| {
        (
            early_name(url, prefix),
            ConnectFailure::BadUrl(format!(
                "not a usable Redis URL ({e}); expected \
                 redis://[[user]:password@]host[:port][/db] or redis+unix:///path"
            )),
        )
    })?;
    let describe = describe(client.get_connection_info(), prefix);
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(response_timeout))
        // One quick retry: an operation is bounded by the response timeout anyway, and a
        // store that is down should say so at once rather than after a long backoff.
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    let limit = connect_timeout.saturating_add(response_timeout);
    match tokio::time::timeout(limit, ConnectionManager::new_with_config(client, config)).await {
        Ok(Ok(conn)) => Ok((conn, describe)),
        Ok(Err(e)) => Err((describe, ConnectFailure::Redis(e))),
        Err(_) => Err((describe, ConnectFailure::TimedOut(limit))),
    }
}

/// `redis://host:port/db (prefix …)`: the address without credentials.
pub(crate) fn describe(info: &ConnectionInfo, prefix: &str) -> String {
    let db = info.redis_settings().db();
    let bracket = |host: &str| {
        if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        }
    };
    let addr = match info.addr() {
        ConnectionAddr::Tcp(host, port) => format!("redis://{}:{port}/{db}", bracket(host)),
        ConnectionAddr::TcpTls { host, port, .. } => {
            format!("rediss://{}:{port}/{db}", bracket(host))
        }
        ConnectionAddr::Unix(path) => format!("redis+unix://{}?db={db}", path.display()),
        _ => format!("redis (db {db})"),
    };
    format!("{addr} (prefix {prefix})")
}

/// Loads `scripts` into Redis (so that each operation is one `EVALSHA`), within `limit`. (The
/// dead-letter store loads its own, in one step with its check of the keys' types.)
#[cfg(any(feature = "idempotency", feature = "rate-limit", feature = "breaker"))]
pub(crate) async fn load_scripts<'a>(
    conn: &mut ConnectionManager,
    scripts: impl IntoIterator<Item = &'a redis::Script>,
    limit: Duration,
) -> Result<(), ConnectFailure> {
    let load = async {
        for script in scripts {
            script.load_async(conn).await?;
        }
        Ok::<_, RedisError>(())
    };
    match tokio::time::timeout(limit, load).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ConnectFailure::Redis(e)),
        Err(_) => Err(ConnectFailure::TimedOut(limit)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_has_no_credentials() {
        let client = Client::open("redis://user:s3cret@127.0.0.1:6380/3").unwrap();
        let d = describe(client.get_connection_info(), "p");
        assert_eq!(d, "redis://127.0.0.1:6380/3 (prefix p)");
        let client = Client::open("redis://[::1]:6379").unwrap();
        assert_eq!(
            describe(client.get_connection_info(), "p"),
            "redis://[::1]:6379/0 (prefix p)"
        );
        assert_eq!(
            early_name("redis://u:s3cret@h:1/0", "p"),
            format!(
                "{} (prefix p)",
                rampart_core::redact::connection_url("redis://u:s3cret@h:1/0")
            )
        );
    }
}
