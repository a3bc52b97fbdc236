//! A durable workflow step, crashed and rerun: every effect once.
//!
//! ```text
//! cargo run -p rampart-examples --bin workflow
//! ```
//!
//! Order 42's job has four steps (reserve stock, charge the card, create the shipment, send
//! the email), each a `POST` through the recommended client stack with a deterministic
//! idempotency key (SHA-256 of the job, the operation and its parameters). The job runs in a
//! child process (this binary with `--job ADDR`); the effects server holds back the
//! shipment's answer once it is created, and the child is killed with `SIGKILL` right then.
//! The job is run again from the start: the first three steps are answered from the server's
//! idempotency records, the email is sent, and the ledger shows each effect once.
#![allow(clippy::print_stdout)]

use std::{net::SocketAddr, process::Command, time::Duration};

use rampart::core::error::BoxError;
use rampart_examples::workflow::{EffectsServer, Job, Ledger, run, step_key};

fn print(ledger: &Ledger) {
    for (op, n) in &ledger.calls {
        let effects = ledger.effects.get(op).copied().unwrap_or(0);
        println!("  {op:<16} calls {n}  effects {effects}");
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let job = Job::order("order-42");
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, addr] = args.as_slice()
        && flag == "--job"
    {
        let addr: SocketAddr = addr.parse()?;
        for (op, status) in run(addr, &job).await? {
            println!("  [job {}] {op}: {status}", std::process::id());
        }
        return Ok(());
    }

    let server = EffectsServer::default();
    let addr = server.serve().await?;
    println!("effects server on {addr}; the job's keys:");
    for step in &job.steps {
        println!("  {:<16} {}", step.op, step_key(&job.id, step));
    }
    let shipped = server.hold_after("create_shipment");
    let mut first = Command::new(std::env::current_exe()?)
        .args(["--job", &addr.to_string()])
        .spawn()?;
    tokio::time::timeout(Duration::from_secs(60), shipped.notified()).await?;
    first.kill()?;
    println!(
        "\nthe shipment exists; job process {} killed (SIGKILL): {:?}",
        first.id(),
        first.wait()?
    );
    print(&server.ledger());

    server.release();
    println!("\nthe job, run again from the start:");
    let status = tokio::task::spawn_blocking(move || {
        Command::new(std::env::current_exe()?)
            .args(["--job", &addr.to_string()])
            .status()
    })
    .await??;
    println!("rerun: {status}");
    print(&server.ledger());
    Ok(())
}
