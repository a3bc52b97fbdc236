//! A reqwest-middleware client with the full rampart stack: dead letters (SQLite), retry with
//! one idempotency key per logical request, a circuit breaker per host, a bulkhead.
//!
//! ```text
//! cargo run -p rampart-examples --bin reqwest_client
//! ```
//!
//! It sends 12 orders to a loopback upstream that throws `503`s, `429`s with `Retry-After`,
//! and connection resets after the order was placed, then takes the upstream down for a
//! moment: the breaker opens, the failures are parked in `rampart-reqwest-example.db`, and
//! a redrive delivers them once the upstream is back. The middlewares drive the same policy
//! cores and stores as the tower layers (`rampart-reqwest`).
#![allow(clippy::print_stdout)]

use std::{sync::Arc, time::Duration};

use rampart::{
    bulkhead::BulkheadLayer,
    circuit_breaker::CircuitBreakerLayer,
    core::error::BoxError,
    dead_letter::{DEAD_LETTER_ID, DeadLetterLayer, DeadLetterStore, Parked, Redrive, SqliteStore},
    retry::{
        backoff::{Backoff, Delays, Jitter},
        policy::RetryPolicy,
    },
};
use rampart_examples::upstream::{Faults, Upstream};
use rampart_reqwest::{
    BulkheadMiddleware, CircuitBreakerMiddleware, DeadLetterMiddleware, RetryMiddleware, find,
};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let upstream = Upstream::start(
        Faults {
            server_error: 0.2,
            throttle: 0.05,
            slow: 0.0,
            slow_by: Duration::ZERO,
            reset_after_commit: 0.15,
        },
        11,
    )
    .await?;
    let db = "rampart-reqwest-example.db";
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{db}{suffix}"));
    }
    let store: Arc<dyn DeadLetterStore> = Arc::new(SqliteStore::open(db)?);

    let breaker = CircuitBreakerMiddleware::per_host(
        CircuitBreakerLayer::builder()
            .name("orders")
            .consecutive_failures(3)
            .open_duration(Duration::from_millis(300)),
    )?;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        // Outermost first: dead letters → retry → breaker → bulkhead.
        .with(DeadLetterMiddleware::new(
            DeadLetterLayer::builder("orders-client", store.clone()).build()?,
        ))
        .with(RetryMiddleware::new(
            RetryPolicy::builder()
                .max_attempts(4)
                .backoff(
                    Backoff::builder()
                        .delays(Delays::Exponential {
                            base: Duration::from_millis(20),
                            factor: 2.0,
                        })
                        .jitter(Jitter::Full)
                        .build()?,
                )
                .max_server_delay(Duration::from_secs(2))
                .build()?,
        ))
        .with(breaker)
        .with(BulkheadMiddleware::new(
            BulkheadLayer::builder()
                .name("orders")
                .max_concurrent(16)
                .layer()?,
        ))
        .build();

    println!(
        "reqwest-middleware client with the full stack → http://{}\n",
        upstream.addr()
    );
    for i in 1..=16 {
        if i == 13 {
            println!("  (the upstream goes down)");
            upstream.set_outage(true);
        }
        let sent = client
            .post(format!("http://{}/orders", upstream.addr()))
            .body(format!("{{\"item\":{i}}}"))
            .send()
            .await;
        match sent {
            Ok(res) => match res.headers().get(DEAD_LETTER_ID) {
                Some(id) => println!(
                    "  order {i:>2}: {}, parked as {}",
                    res.status(),
                    id.to_str()?
                ),
                None => println!("  order {i:>2}: {} {}", res.status(), res.text().await?),
            },
            Err(e) => match find::<Parked>(&e) {
                Some(p) => println!(
                    "  order {i:>2}: failed ({}), parked as {}",
                    p.kind(),
                    p.id()
                ),
                None => println!("  order {i:>2}: failed: {e}"),
            },
        }
    }

    upstream.set_outage(false);
    println!("\n  (the upstream is back: redrive what was parked)");
    let plain = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let redrive = Redrive::builder(store.clone(), plain).build()?;
    for _ in 0..5 {
        let s = redrive.all(|_| {}).await?;
        println!(
            "  redrive: {} delivered, {} failed again",
            s.delivered, s.failed
        );
        if s.failed == 0 {
            break;
        }
    }
    let effects = upstream.effects();
    println!(
        "\n  the upstream placed {} orders for {} keys (no order twice); records in {db}",
        effects.values().sum::<u32>(),
        effects.len(),
    );
    Ok(())
}
