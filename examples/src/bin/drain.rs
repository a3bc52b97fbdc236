//! Queue for later, drained on recovery: orders sent while the upstream is down are answered
//! `202 Accepted` and parked in SQLite; a drain worker delivers them, each exactly once, when
//! the upstream's circuit breaker lets calls through again.
//!
//! ```text
//! cargo run -p rampart-examples --bin drain
//! ```
#![allow(clippy::print_stdout)]

use std::{sync::Arc, time::Duration};

use rampart::{
    core::error::BoxError,
    dead_letter::{DeadLetterStore, SqliteStore},
};
use rampart_examples::{
    queue_for_later,
    upstream::{Faults, Upstream},
};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let path = std::env::temp_dir().join(format!("rampart-drain-{}.db", std::process::id()));
    let store: Arc<dyn DeadLetterStore> = Arc::new(SqliteStore::open(&path)?);
    let upstream = Upstream::start(Faults::NONE, 7).await?;
    println!(
        "upstream on {}, down for the first 2 s; dead letters in {}",
        upstream.addr(),
        path.display()
    );

    let started = std::time::Instant::now();
    let report = queue_for_later::run(
        store.clone(),
        &upstream,
        200,
        Duration::from_secs(2),
        Duration::from_secs(30),
        |r| {
            println!(
                "ALERT: order {} given up after {} redrives",
                r.id, r.redrive_count
            )
        },
    )
    .await?;
    println!(
        "\n{} orders sent while the upstream was down: {} answered 202 Accepted, {} 201, {} lost",
        report.sent, report.accepted, report.created, report.lost
    );
    println!(
        "the drain delivered {} once the breaker let calls through; {:.1} s in all",
        report.drained,
        started.elapsed().as_secs_f64()
    );
    println!(
        "orders placed twice: {}; orders never placed: {}",
        report.duplicated, report.missing
    );
    drop(store);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(())
}
