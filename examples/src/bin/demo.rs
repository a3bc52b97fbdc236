//! The rampart demo: the full client stack against a flaky upstream, on the embedded
//! dead-letter store. No server to install: everything runs on loopback.
//!
//! ```text
//! cargo run -p rampart-examples --bin demo
//! ```
//!
//! It starts an upstream on `127.0.0.1` that fails the way real ones do (`503`s, `429` with
//! `Retry-After`, slow answers, connections dropped *after* the order was placed, and a full
//! outage window), then sends mixed `POST /orders` and `GET /inventory` requests through the
//! recommended stack: idempotency keys, dead letters (SQLite, `rampart-demo.db`), a total
//! deadline, retries, a circuit breaker, a bulkhead and per-attempt timeouts. It prints live
//! progress and every breaker transition, redrives what it parked once the upstream is back,
//! and ends with a summary: nothing lost, no order placed twice. It takes about 15 seconds.
#![allow(clippy::print_stdout)]

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Full;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rampart::core::sync::lock;
use rampart::{
    core::{attempt::AttemptCounter, error::BoxError},
    dead_letter::{DeadLetterStore, Redrive, SqliteStore, State, Summary},
};
use rampart_examples::{
    stack::{self, Settings},
    upstream::{Faults, Upstream},
};
use tower::ServiceExt;

/// Logical requests sent.
const REQUESTS: usize = 3_000;
/// Workers sending them.
const WORKERS: usize = 24;
/// Pause between two requests of one worker: about 300 requests per second in all.
const PACE: Duration = Duration::from_millis(80);
/// The outage window, from the start.
const OUTAGE: (Duration, Duration) = (Duration::from_secs(3), Duration::from_secs(6));
/// Redrive rounds at most (the upstream still misbehaves while it recovers).
const REDRIVE_ROUNDS: usize = 5;

const FAULTS: Faults = Faults {
    server_error: 0.06,
    throttle: 0.01,
    slow: 0.03,
    slow_by: Duration::from_millis(300),
    reset_after_commit: 0.04,
};

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    posts: AtomicU64,
    first_try: AtomicU64,
    after_retries: AtomicU64,
    parked: AtomicU64,
    failed_unparked: AtomicU64,
    transitions: Mutex<Vec<String>>,
    /// Orders the client saw placed (`201`).
    confirmed: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let db = PathBuf::from("rampart-demo.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let store: Arc<dyn DeadLetterStore> = Arc::new(SqliteStore::open(&db)?);
    let upstream = Upstream::start(FAULTS, 7).await?;
    let tally = Arc::new(Tally::default());
    let start = Instant::now();

    println!("rampart demo: {REQUESTS} requests through the full client stack");
    println!(
        "  upstream http://{} injects 503s, 429s, slow answers and resets after commit;",
        upstream.addr()
    );
    println!(
        "  it is down from {}s to {}s. Dead letters go to {}.\n",
        OUTAGE.0.as_secs(),
        OUTAGE.1.as_secs(),
        db.display()
    );

    let (client, handles) = stack::client(store.clone(), &Settings::default(), {
        let tally = tally.clone();
        move |t| {
            let line = format!("{} → {}", t.from, t.to);
            println!(
                "  {:>5.1}s  breaker {line} ({:?})",
                start.elapsed().as_secs_f64(),
                t.reason
            );
            lock(&tally.transitions).push(line);
        }
    })?;

    // The outage window.
    tokio::spawn({
        let upstream = upstream.clone();
        async move {
            tokio::time::sleep(OUTAGE.0).await;
            upstream.set_outage(true);
            println!("  {:>5.1}s  upstream DOWN", start.elapsed().as_secs_f64());
            tokio::time::sleep(OUTAGE.1 - OUTAGE.0).await;
            upstream.set_outage(false);
            println!("  {:>5.1}s  upstream back", start.elapsed().as_secs_f64());
        }
    });

    // Live progress, once a second.
    let progress = tokio::spawn({
        let tally = tally.clone();
        let handles = handles.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let ok = tally.first_try.load(Ordering::Relaxed)
                    + tally.after_retries.load(Ordering::Relaxed);
                println!(
                    "  {:>5.1}s  sent {:>5}  ok {:>5}  parked {:>4}  breaker {:<9} in flight {}",
                    start.elapsed().as_secs_f64(),
                    tally.sent.load(Ordering::Relaxed),
                    ok,
                    tally.parked.load(Ordering::Relaxed),
                    handles.breaker.state().to_string(),
                    handles.bulkhead.stats().active,
                );
            }
        }
    });

    // The traffic.
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (client, tally, next, addr) =
            (client.clone(), tally.clone(), next.clone(), upstream.addr());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= REQUESTS {
                    break;
                }
                let post = i % 10 < 7;
                let req = if post {
                    http::Request::post(format!("http://{addr}/orders"))
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(format!("{{\"item\":{i}}}"))))
                } else {
                    http::Request::get(format!("http://{addr}/inventory"))
                        .body(Full::new(Bytes::new()))
                };
                let Ok(mut req) = req else { continue };
                // The retry layer notes every attempt here; the dead-letter layer reads it too.
                let attempts = AttemptCounter::new();
                req.extensions_mut().insert(attempts.clone());
                tally.sent.fetch_add(1, Ordering::Relaxed);
                if post {
                    tally.posts.fetch_add(1, Ordering::Relaxed);
                }
                record(&tally, client.clone().oneshot(req).await, &attempts);
                tokio::time::sleep(PACE).await;
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    progress.abort();
    let sent_at = start.elapsed();

    // The upstream is back: redrive what was parked, through a plain client (a redrive that
    // fails again stays parked, it is not parked twice).
    let parked_total = store.stats().await?.total;
    println!(
        "\n  {:>5.1}s  all sent; redriving {parked_total} dead letters",
        sent_at.as_secs_f64()
    );
    let plain: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let redrive = Redrive::builder(store.clone(), plain)
        .concurrency(8)
        .max_redrives(REDRIVE_ROUNDS as u32)
        .build()?;
    let mut total = Summary::default();
    for round in 1..=REDRIVE_ROUNDS {
        let s = redrive.all(|_| {}).await?;
        println!(
            "  {:>5.1}s  redrive round {round}: {} delivered, {} failed again",
            start.elapsed().as_secs_f64(),
            s.delivered,
            s.failed
        );
        total.delivered += s.delivered;
        total.given_up += s.given_up;
        if s.failed == 0 {
            break;
        }
    }
    let stats = store.stats().await?;

    // The summary.
    let up = upstream.stats();
    let effects = upstream.effects();
    let executions: u64 = effects.values().map(|&n| u64::from(n)).sum();
    let duplicates = executions - effects.len() as u64;
    let confirmed = tally.confirmed.load(Ordering::Relaxed);
    let parked = tally.parked.load(Ordering::Relaxed);
    let unparked = tally.failed_unparked.load(Ordering::Relaxed);
    let transitions = lock(&tally.transitions).clone();
    let posts = tally.posts.load(Ordering::Relaxed);
    let first = tally.first_try.load(Ordering::Relaxed);
    let retried = tally.after_retries.load(Ordering::Relaxed);
    let bulkhead = handles.bulkhead.stats();
    let lost = tally.sent.load(Ordering::Relaxed) - first - retried - parked - unparked;

    println!("\n  summary after {:.1}s", start.elapsed().as_secs_f64());
    println!("  ─────────────────────────────────────────────────────────────");
    row(
        "requests",
        format!(
            "{REQUESTS} ({posts} POST /orders, {} GET)",
            REQUESTS as u64 - posts
        ),
    );
    row(
        "succeeded",
        format!(
            "{} ({first} first try, {retried} after retries)",
            first + retried
        ),
    );
    row(
        "attempts the upstream saw",
        format!(
            "{} ({} during the outage)",
            up.requests, up.outage_rejections
        ),
    );
    row(
        "faults injected",
        format!(
            "{} 503, {} 429, {} slow, {} resets after commit",
            up.server_errors, up.throttled, up.slow, up.resets
        ),
    );
    let count = |to: &str| transitions.iter().filter(|t| t.ends_with(to)).count();
    row(
        "breaker transitions",
        format!(
            "{} (opened {}×, half-open {}×, closed {}×)",
            transitions.len(),
            count("→ open"),
            count("→ half_open"),
            count("→ closed")
        ),
    );
    row("bulkhead rejections", bulkhead.rejected.to_string());
    row(
        "dead-lettered",
        format!(
            "{parked_total} → {} delivered by redrive, {} still pending, {} given up",
            total.delivered,
            stats.backlog(),
            stats.in_state(State::GivenUp)
        ),
    );
    row(
        "lost",
        format!(
            "{lost} (every request succeeded or was parked; {unparked} failed with a client error)"
        ),
    );
    row(
        "duplicate effects prevented",
        format!(
            "{} (retries answered from the idempotency store)",
            up.replays
        ),
    );
    row(
        "orders executed",
        format!(
            "{executions} for {} unique keys: {duplicates} duplicates",
            effects.len()
        ),
    );
    row(
        "orders confirmed to the client",
        format!("{confirmed} at once, the rest by redrive"),
    );
    println!("  ─────────────────────────────────────────────────────────────");
    println!("\n  Inspect what was parked (and redrive it, against a live upstream):");
    let store_arg = format!("--store sqlite:{}", db.display());
    println!("    cargo run -p rampart-cli -- dlq stats {store_arg}");
    println!("    cargo run -p rampart-cli -- dlq list {store_arg} --state delivered");
    println!("    cargo run -p rampart-cli -- dlq show <ID> {store_arg}");
    println!("    cargo run -p rampart-cli -- dlq redrive --all {store_arg}");
    Ok(())
}

fn row(name: &str, value: String) {
    println!("  {name:<32} {value}");
}

/// Counts one logical request's result.
fn record(
    tally: &Tally,
    result: Result<http::Response<rampart_examples::stack::Answer>, BoxError>,
    attempts: &AttemptCounter,
) {
    match result {
        Ok(res)
            if res
                .headers()
                .contains_key(rampart::dead_letter::DEAD_LETTER_ID) =>
        {
            tally.parked.fetch_add(1, Ordering::Relaxed);
        }
        Ok(res) if res.status().is_success() => {
            if attempts.get() > 1 {
                tally.after_retries.fetch_add(1, Ordering::Relaxed);
            } else {
                tally.first_try.fetch_add(1, Ordering::Relaxed);
            }
            if res.status() == StatusCode::CREATED {
                tally.confirmed.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(_) => {
            tally.failed_unparked.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            if rampart::core::error::find_in::<rampart::dead_letter::Parked>(&*e).is_some() {
                tally.parked.fetch_add(1, Ordering::Relaxed);
            } else {
                tally.failed_unparked.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
