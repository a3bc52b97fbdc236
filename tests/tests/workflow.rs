//! A durable workflow step, crashed for real: the job runs in a child process (this test
//! binary, re-run as `workflow_child`), the effects server here holds back the third step's
//! answer once its work is done, and the child is killed with `SIGKILL` at that moment. The job
//! is run again from the start: every step is sent again with the same deterministic key, the
//! server replays what it did, and every effect is done exactly once.

#![cfg(unix)]
#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::{
    net::SocketAddr,
    os::unix::process::ExitStatusExt,
    process::{Command, Stdio},
    time::Duration,
};

use rampart_examples::workflow::{EffectsServer, Job, run};

/// Where the child finds the effects server.
const ADDR_VAR: &str = "RAMPART_WORKFLOW_ADDR";

/// This binary again, running only [`workflow_child`] against `addr`.
fn child(addr: SocketAddr) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["workflow_child", "--exact", "--ignored", "--nocapture"])
        .env(ADDR_VAR, addr.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    cmd
}

/// The job's process: runs order 42's job against the server the parent named. Ignored in a
/// normal run; the parent runs it with `--ignored`.
#[test]
#[ignore = "the child process of the_job_rerun_after_a_sigkill_repeats_no_effect"]
fn workflow_child() {
    let addr: SocketAddr = std::env::var(ADDR_VAR)
        .expect("run by the parent test, which sets the address")
        .parse()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let steps = rt.block_on(run(addr, &Job::order("order-42"))).unwrap();
    assert_eq!(steps.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_rerun_after_a_sigkill_repeats_no_effect() {
    let server = EffectsServer::default();
    let addr = server.serve().await.unwrap();
    let shipped = server.hold_after("create_shipment");

    // First run: killed once the shipment exists but before the job hears of it.
    let mut first = child(addr).spawn().unwrap();
    tokio::time::timeout(Duration::from_secs(60), shipped.notified())
        .await
        .expect("the job reached its third step");
    first.kill().unwrap(); // SIGKILL
    let status = first.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "killed, not finished: {status:?}");
    let ledger = server.ledger();
    assert_eq!(
        ledger.effects.get("create_shipment"),
        Some(&1),
        "{ledger:?}"
    );
    assert_eq!(ledger.effects.get("send_email"), None, "never reached");

    // Second run, from the start, with nothing held back.
    server.release();
    let status = tokio::task::spawn_blocking(move || child(addr).status().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "the rerun finished: {status:?}");

    let ledger = server.ledger();
    for op in [
        "reserve_stock",
        "charge_card",
        "create_shipment",
        "send_email",
    ] {
        assert_eq!(
            ledger.effects.get(op),
            Some(&1),
            "{op} done once: {ledger:?}"
        );
    }
    for op in ["reserve_stock", "charge_card", "create_shipment"] {
        assert_eq!(
            ledger.calls.get(op),
            Some(&2),
            "{op} was sent again and replayed: {ledger:?}"
        );
    }
    assert_eq!(ledger.calls.get("send_email"), Some(&1));
}
