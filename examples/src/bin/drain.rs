//! Queue for later, drained on recovery: orders sent while the upstream is down are answered
//! `202 Accepted` and parked in SQLite; a drain worker delivers them, each exactly once, when
//! the upstream's circuit breaker lets calls through again.
//!
//! The breaker opening and any order given up are posted to a loopback "pager" endpoint,
//! which prints them.
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
    alert::Webhook,
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

    // A pager on loopback: where the alerts go (the breaker opening, an order given up).
    let pager = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let alerts = Webhook::new(format!("http://{}/alerts", pager.local_addr()?).parse()?);
    let app = axum::Router::new().route(
        "/alerts",
        axum::routing::post(|headers: axum::http::HeaderMap, body: String| async move {
            let event = headers
                .get("x-rampart-event")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_owned();
            let head: String = body.chars().take(100).collect();
            println!("  pager <- {event}: {head}");
        }),
    );
    tokio::spawn(async move { axum::serve(pager, app).await });

    let started = std::time::Instant::now();
    let report = queue_for_later::run(
        store.clone(),
        &upstream,
        200,
        Duration::from_secs(2),
        Duration::from_secs(30),
        &alerts,
    )
    .await?;
    println!(
        "\n{} orders sent while the upstream was down: {} answered 202 Accepted, {} 201, {} lost",
        report.sent, report.accepted, report.created, report.lost
    );
    println!(
        "the drain delivered {} once the breaker let calls through ({} probes failed before); {:.1} s in all",
        report.drained,
        report.redrives_failed,
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
