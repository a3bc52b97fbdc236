//! What both stores do to connect: the server URLs read (credentials never shown) and a
//! key-value bucket opened, or created with the store's settings.

use std::str::FromStr as _;

use async_nats::{
    ServerAddr,
    jetstream::{self, kv::Store, stream},
};
use rampart_core::error::chain_line;

/// The servers of `url` (several separated by commas), and how to name them in logs
/// (`nats://host:port,…`, no credentials); else a message saying what was expected.
pub(crate) fn addrs(url: &str) -> Result<(Vec<ServerAddr>, String), String> {
    let mut addrs = Vec::new();
    for part in url.split(',').map(str::trim) {
        let addr = ServerAddr::from_str(part).map_err(|e| {
            format!(
                "not a NATS URL: {:?} ({}); expected nats://[user:password@]host[:port] \
                 (several separated by commas)",
                rampart_core::redact::connection_url(part),
                rampart_core::redact::text(&e.to_string())
            )
        })?;
        addrs.push(addr);
    }
    let describe = addrs
        .iter()
        .map(|a| {
            let host = a.host();
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.to_owned()
            };
            format!("{}://{host}:{}", a.scheme(), a.port())
        })
        .collect::<Vec<_>>()
        .join(",");
    Ok((addrs, describe))
}

/// Opens key-value bucket `bucket`, or creates it as the stream `config` describes (and then
/// opens it); the error's text says why not.
pub(crate) async fn open_bucket(
    jetstream: &jetstream::Context,
    bucket: &str,
    config: stream::Config,
) -> Result<Store, String> {
    if let Ok(kv) = jetstream.get_key_value(bucket).await {
        return Ok(kv);
    }
    match jetstream.create_stream(config).await {
        Ok(_) => jetstream
            .get_key_value(bucket)
            .await
            .map_err(|e| e.to_string()),
        // Created by another process meanwhile, or refused: open it, or say why not.
        Err(create) => jetstream
            .get_key_value(bucket)
            .await
            .map_err(|_| chain_line(&create)),
    }
}
