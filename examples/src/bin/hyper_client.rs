//! A hyper-util client with the recommended stack: idempotency keys, dead letters (in memory
//! here), a total deadline, retries, a circuit breaker, a bulkhead and per-attempt timeouts.
//!
//! ```text
//! cargo run -p rampart-examples --bin hyper_client
//! ```
//!
//! It sends 12 orders to a loopback upstream that throws `503`s, `429`s and connection resets
//! after the order was placed, and prints what became of each: placed at once, placed after
//! retries (with the replayed answer when a reset hid the first one), or parked as a dead
//! letter. The stack itself is `rampart_examples::stack::client`, which says why each layer
//! sits where it does.
#![allow(clippy::print_stdout)]

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rampart::{
    core::{
        attempt::AttemptCounter,
        error::{BoxError, find_in},
    },
    dead_letter::{DeadLetterStore, MemoryStore, Parked},
};
use rampart_examples::{
    stack::{self, Settings},
    upstream::{Faults, Upstream},
};
use tower::ServiceExt;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let upstream = Upstream::start(
        Faults {
            server_error: 0.25,
            throttle: 0.05,
            slow: 0.0,
            slow_by: Duration::ZERO,
            reset_after_commit: 0.15,
        },
        3,
    )
    .await?;
    let store: Arc<dyn DeadLetterStore> = Arc::new(MemoryStore::bounded(1_000)?);
    let (client, _handles) = stack::client(store.clone(), &Settings::default(), |_| {})?;

    println!(
        "hyper-util client with the full stack → http://{}\n",
        upstream.addr()
    );
    for i in 1..=12 {
        let mut req = http::Request::post(format!("http://{}/orders", upstream.addr()))
            .body(Full::new(Bytes::from(format!("{{\"item\":{i}}}"))))?;
        // The retry layer notes every attempt in it (the dead-letter layer reads the same one).
        let counter = AttemptCounter::new();
        req.extensions_mut().insert(counter.clone());
        match client.clone().oneshot(req).await {
            Ok(res) => {
                let attempts = counter.get().max(1);
                let replayed = res.headers().contains_key("idempotent-replayed");
                let parked = res
                    .headers()
                    .get(rampart::dead_letter::DEAD_LETTER_ID)
                    .map(|v| v.to_str().unwrap_or("").to_owned());
                let status = res.status();
                let body = res.into_body().collect().await?.to_bytes();
                match parked {
                    Some(id) => println!(
                        "  order {i:>2}: {status} after {attempts} attempts, parked as {id}"
                    ),
                    None => println!(
                        "  order {i:>2}: {status} after {attempts} attempt(s){}  {}",
                        if replayed { ", replayed" } else { "" },
                        String::from_utf8_lossy(&body)
                    ),
                }
            }
            Err(e) => match find_in::<Parked>(&*e) {
                Some(p) => println!(
                    "  order {i:>2}: failed ({}), parked as {}",
                    p.kind(),
                    p.id()
                ),
                None => println!("  order {i:>2}: failed: {e}"),
            },
        }
    }
    let effects = upstream.effects();
    println!(
        "\n  the upstream placed {} orders for {} keys; {} parked for a redrive",
        effects.values().sum::<u32>(),
        effects.len(),
        store.stats().await?.total
    );
    Ok(())
}
