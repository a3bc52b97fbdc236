//! The rampart demo: a flaky HTTP server, called through a client-side circuit breaker.
//!
//! ```text
//! cargo run -p rampart-examples --bin demo
//! ```
//!
//! It starts an axum server on `127.0.0.1:0` that is healthy, then fails with `500` for a
//! while, then recovers. A hyper client stacked with a `CircuitBreakerLayer` calls it every
//! 100 ms and prints a timeline: each call's result, each breaker transition as it happens,
//! and the final stats. It finishes by itself in about three seconds and talks to nothing but
//! loopback.
#![allow(clippy::print_stdout)]

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State as AxumState, http::StatusCode, routing::get};
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use rampart::{
    ServiceBuilderExt,
    circuit_breaker::{BreakerError, CircuitBreakerLayer, OpenDuration, State, Transition},
    core::{classify::HttpClassifier, clock::Instant},
};
use tower::{ServiceBuilder, ServiceExt};

/// Time between two calls.
const TICK: Duration = Duration::from_millis(100);
/// Calls before the server starts failing.
const HEALTHY_CALLS: usize = 4;
/// How long the server fails.
const OUTAGE: Duration = Duration::from_millis(1500);
/// Successful calls after the breaker closed again before the demo ends.
const CALLS_AFTER_RECOVERY: usize = 3;
/// A hard stop, whatever happens.
const MAX_CALLS: usize = 80;

/// The flaky server's switch and call counter.
#[derive(Clone, Default)]
struct Server {
    failing: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

async fn handler(AxumState(server): AxumState<Server>) -> (StatusCode, &'static str) {
    server.calls.fetch_add(1, Ordering::SeqCst);
    if server.failing.load(Ordering::SeqCst) {
        (StatusCode::INTERNAL_SERVER_ERROR, "database on fire")
    } else {
        (StatusCode::OK, "ok")
    }
}

async fn start_server(server: Server) -> Result<SocketAddr, Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/inventory", get(handler))
        .with_state(server);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            println!("server error: {e}");
        }
    });
    Ok(addr)
}

/// A duration in whole milliseconds, rounded up.
fn ms(d: Duration) -> String {
    format!("{} ms", d.as_micros().div_ceil(1000))
}

fn stamp(start: Instant, at: Instant) -> String {
    format!("[{:>6.3}s]", at.duration_since(start).as_secs_f64())
}

fn print_transition(start: Instant, t: &Transition) {
    let open_for = t
        .open_for
        .map(|d| format!(", open for {}", ms(d)))
        .unwrap_or_default();
    println!(
        "{}     *** breaker {}: {} -> {} ({}{open_for})",
        stamp(start, t.at),
        t.breaker,
        t.from.as_str(),
        t.to.as_str(),
        t.reason.as_str(),
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let server = Server::default();
    let addr = start_server(server.clone()).await?;

    // The breaker: trips when half of the last 10 calls failed (once it has seen 4), stays open
    // 500 ms, doubling after each failed probe, and closes after 2 successful probes.
    let breaker = CircuitBreakerLayer::builder()
        .name("inventory")
        .count_window(10)
        .minimum_calls(4)
        .failure_rate_threshold(50.0)
        .open_duration_policy(OpenDuration::Exponential {
            base: Duration::from_millis(500),
            multiplier: 2.0,
            max: Duration::from_secs(5),
            jitter: 0.0,
        })
        // Called synchronously on every transition, so the timeline stays in order.
        .on_transition(move |t| print_transition(start, t))
        .layer()?
        .classifier(HttpClassifier::new()); // 5xx, 408, 429 and transport errors are failures
    let handle = breaker.handle();

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let svc = ServiceBuilder::new()
        .circuit_breaker(breaker)
        .service(client);
    let uri: http::Uri = format!("http://{addr}/inventory").parse()?;

    println!("rampart demo: a flaky server behind a client-side circuit breaker");
    println!("server on http://{addr}/inventory; one call every {TICK:?}");
    println!(
        "breaker \"inventory\": opens at 50 % failures over the last 10 calls (at least 4), \
         open 500 ms then doubling, 2 successful probes to close\n"
    );

    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut outage_started: Option<Instant> = None;
    let mut recovered = false;
    let mut ok_after_recovery = 0;

    for n in 1..=MAX_CALLS {
        ticker.tick().await;
        let now = Instant::now();

        // The server's script: healthy, then an outage, then healthy again.
        if n == HEALTHY_CALLS + 1 {
            server.failing.store(true, Ordering::SeqCst);
            outage_started = Some(now);
            println!("{}     --- server starts failing ---", stamp(start, now));
        }
        if !recovered && outage_started.is_some_and(|t| now.duration_since(t) >= OUTAGE) {
            server.failing.store(false, Ordering::SeqCst);
            recovered = true;
            println!("{}     --- server recovered ---", stamp(start, now));
        }

        let probing = handle.state() != State::Closed;
        let req = http::Request::get(uri.clone()).body(Empty::new())?;
        let line = match svc.clone().oneshot(req).await {
            Ok(res) if res.status().is_success() => {
                if recovered && handle.state() == State::Closed {
                    ok_after_recovery += 1;
                }
                format!("{} ok", res.status().as_u16())
            }
            Ok(res) => format!("{} server error", res.status().as_u16()),
            Err(BreakerError::Rejected(open)) => match open.retry_after() {
                Some(d) => format!(
                    "rejected: circuit open, retry after {} (server not called)",
                    ms(d)
                ),
                None => "rejected: circuit open (server not called)".to_owned(),
            },
            Err(BreakerError::Inner(e)) => format!("transport error: {e}"),
        };
        let probe = if probing && !line.starts_with("rejected") {
            " (probe)"
        } else {
            ""
        };
        println!("{} #{n:<3} {line}{probe}", stamp(start, Instant::now()));

        if ok_after_recovery >= CALLS_AFTER_RECOVERY {
            break;
        }
    }

    let stats = handle.stats();
    println!("\nfinal state: {}", stats.state.as_str());
    println!(
        "calls made by the client: {}, reached the server: {}",
        stats.calls + stats.rejections,
        server.calls.load(Ordering::SeqCst)
    );
    println!(
        "breaker stats: {} successes, {} failures, {} rejected without calling the server",
        stats.successes, stats.failures, stats.rejections
    );
    if stats.state != State::Closed {
        return Err("the breaker did not close again".into());
    }
    Ok(())
}
