//! The payments API pipeline of the write-ups: priority bulkhead 10/5/2, timeout classes,
//! success-rate and dead-letter-backlog health, over loopback.
//!
//! ```text
//! cargo run -p rampart-examples --bin pipeline
//! ```
//!
//! 1. With the work held, 4 `bulk`, 7 `normal` and 14 `critical` calls arrive: bulk gets 2,
//!    normal 5, critical its 10 and the 3 shared; the other 5 are refused at once (`503`).
//! 2. A report that takes 1.5 s is cut at its class's 1 s (`504`); a plain call keeps its 2 s.
//! 3. The payment processor is down: payments are parked and accepted (`202`); past the
//!    backlog threshold, health says degraded; after a run of failing calls, unhealthy.
//! 4. Exports spend a daily credit budget: once it cannot cover one more, `429` until midnight.
#![allow(clippy::print_stdout)]

use rampart::core::header::IDEMPOTENCY_KEY;
use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use rampart::{
    core::error::BoxError,
    dead_letter::{DeadLetterStore, SqliteStore},
};
use rampart_examples::pipeline::{self, PRIORITY, Settings};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let processor = pipeline::processor_down().await?;
    let mut settings = Settings::new(processor);
    settings.backlog_threshold = 5;
    settings.health_cache = Duration::ZERO;
    let path = std::env::temp_dir().join(format!("rampart-pipeline-{}.db", std::process::id()));
    let store: Arc<dyn DeadLetterStore> = Arc::new(SqliteStore::open(&path)?);
    let (app, handles) = pipeline::app(&settings, store)?;
    let addr = pipeline::serve(app).await?;
    println!("payments API on http://{addr}\n");
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let send = |method: &'static str, path: String, class: Option<&'static str>| {
        let client = client.clone();
        async move {
            let mut req = Request::builder()
                .method(method)
                .uri(format!("http://{addr}{path}"));
            if let Some(class) = class {
                req = req.header(&PRIORITY, class);
            }
            if method == "POST" && path.starts_with("/payments") {
                req = req.header(IDEMPOTENCY_KEY, format!("key-{path}"));
            }
            let res = client
                .request(req.body(Full::new(Bytes::from_static(b"{}")))?)
                .await?;
            let status = res.status();
            res.into_body().collect().await?;
            Ok::<_, BoxError>(status)
        }
    };

    println!("1. priority classes, with the work held");
    handles.gate.send_replace(false);
    let mut held = Vec::new();
    for (class, n) in [("bulk", 4), ("normal", 7), ("critical", 14)] {
        let calls: Vec<_> = (0..n)
            .map(|_| tokio::spawn(send("GET", "/work".into(), Some(class))))
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let refused = calls.iter().filter(|c| c.is_finished()).count();
        println!(
            "   {class:<8} sent {n:>2}: {:>2} held, {refused} refused at once",
            n - refused
        );
        held.extend(calls);
    }
    handles.gate.send_replace(true);
    for call in held {
        call.await??;
    }
    println!(
        "   bulkhead: {} refused in all\n",
        handles.bulkhead.stats().rejected
    );

    println!("2. timeout classes");
    println!(
        "   GET /reports/daily (class report, 1 s; takes 1.5 s): {}",
        send("GET", "/reports/daily".into(), None).await?
    );
    println!(
        "   GET /work (class request, 2 s): {}\n",
        send("GET", "/work".into(), None).await?
    );

    println!("3. health");
    for n in 0..6 {
        let status = send("POST", format!("/payments?n={n}"), None).await?;
        println!("   POST /payments #{n}: {status}");
    }
    println!("   health: {}", handles.health.check().await.status);
    for _ in 0..30 {
        send("GET", "/fail".into(), None).await?;
    }
    println!(
        "   after 30 failing calls: {}\n",
        handles.health.check().await.status
    );

    println!("4. credits: 500 a day, 100 reserved per export, 80 used");
    for n in 1..=7 {
        let status = send("POST", "/exports".into(), None).await?;
        let spent = handles.credits.stats().spent;
        println!("   export #{n}: {status} ({spent} credits spent)");
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    Ok(())
}
