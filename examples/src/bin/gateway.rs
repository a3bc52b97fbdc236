//! Gateway aggregation with partial failure, against loopback downstreams.
//!
//! ```text
//! cargo run -p rampart-examples --bin gateway
//! ```
//!
//! One dashboard request fans out to four downstreams, each behind its own timeout, breaker
//! and bulkhead: `profile` answers, `orders` fails with `500`, `stock` is slower than its own
//! 200 ms timeout, `recommendations` slower than the whole request's 800 ms deadline. The
//! answer comes at the deadline with the profile and the three others marked. After three
//! failures the `orders` and `stock` breakers are open, and the next answer marks them
//! `circuit_open` without calling them; `recommendations`, cut by the caller's deadline, is
//! not held against its downstream.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use rampart::core::error::BoxError;
use rampart_examples::gateway::{self, Gateway, PartConfig};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (addr, _) = gateway::downstreams().await?;

    let part = |name: &'static str, timeout: Duration| PartConfig {
        name,
        url: format!("http://{addr}/{name}"),
        timeout,
        max_concurrent: 10,
    };
    let gateway = Gateway::new(
        vec![
            part("profile", Duration::from_millis(500)),
            part("orders", Duration::from_millis(500)),
            part("stock", Duration::from_millis(200)),
            part("recommendations", Duration::from_secs(10)),
        ],
        Duration::from_millis(800),
    )?;
    for n in 1..=4 {
        let started = Instant::now();
        let res = gateway.answer().await;
        println!(
            "request {n}: {} in {:?}\n  {}",
            res.status(),
            started.elapsed(),
            res.body()
        );
    }
    for name in ["profile", "orders", "stock", "recommendations"] {
        let state = gateway.breaker(name).map_or("none", |b| b.state().as_str());
        println!("breaker {name}: {state}");
    }
    Ok(())
}
