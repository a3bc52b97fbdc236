//! Per-user isolation and a batch that survives bad items, against a loopback upstream.
//!
//! ```text
//! cargo run -p rampart-examples --bin per_user
//! ```
//!
//! First, alice, bob and mallory each make 20 calls through one circuit breaker per user
//! (keyed by `x-user`); mallory's calls fail, so her breaker opens after three and refuses the
//! rest without sending them, while alice and bob see no failure at all. Then a batch of 20
//! items, two of them bad: each item is its own call through a dead-letter layer, so the two
//! are parked in SQLite (to be redriven later) and the other 18 are done.
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use rampart::core::sync::lock;
use rampart::{core::error::BoxError, dead_letter::SqliteStore};
use rampart_examples::per_user;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (addr, received) = per_user::upstream(&["mallory"], &[7, 13]).await?;
    println!("upstream on {addr}: mallory's calls fail, items 7 and 13 are bad\n");

    let report = per_user::isolate(addr, &["alice", "bob", "mallory"], 20).await?;
    println!("user      ok  failed  refused  breaker   calls the upstream saw");
    let seen = lock(&received).clone();
    for (user, r) in &report {
        println!(
            "{user:<8} {:>3}  {:>6}  {:>7}  {:<8}  {}",
            r.ok,
            r.failed,
            r.rejected,
            r.breaker.map_or("none", |s| s.as_str()),
            seen.get(user).copied().unwrap_or(0)
        );
    }

    let path = std::env::temp_dir().join(format!("rampart-batch-{}.db", std::process::id()));
    let store = Arc::new(SqliteStore::open(&path)?);
    let batch = per_user::batch(addr, store.clone(), 0..20).await?;
    println!(
        "\nbatch of 20: {} done, {} parked ({}), {} left with the caller",
        batch.done.len(),
        batch.parked.len(),
        batch
            .parked
            .iter()
            .map(|(n, id)| format!("item {n} as {id}"))
            .collect::<Vec<_>>()
            .join(", "),
        batch.failed.len()
    );
    drop(store);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(())
}
