//! Durability under SIGKILL: every append the SQLite store acknowledged is in the file after
//! the process that made it was killed mid-write.
//!
//! The test re-runs its own binary as a child (`RAMPART_CRASH_CHILD=<db path>`, test filter
//! `crash_child`), which appends records from 8 tasks and prints `ack <id>` after each `append`
//! returned `Ok`. The parent kills it with SIGKILL after 300 acknowledgements, while it is
//! still writing, then reopens the file and reads every acknowledged record back.
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used)]

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc::{self, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

use rampart_dead_letter::{
    DeadLetter, DeadLetterId, DeadLetterStore, Failure, ParkReason, RecordedBody, SqliteStore,
    State, Target,
};

const CHILD_ENV: &str = "RAMPART_CRASH_CHILD";
const WRITERS: usize = 8;
const ACKS_BEFORE_KILL: usize = 300;
/// How long the whole test, and the child on its own, may take before giving up.
const LIMIT: Duration = Duration::from_secs(60);

fn record(task: usize, n: u64) -> DeadLetter {
    DeadLetter::new(
        format!("writer-{task}"),
        Target {
            method: "POST".into(),
            uri: format!("http://127.0.0.1:9/orders/{task}/{n}"),
            headers: Vec::new(),
            body: RecordedBody::whole(format!("{{\"task\":{task},\"n\":{n}}}").into()),
            query_redacted: false,
        },
        Failure::from_status(ParkReason::Transient, http::StatusCode::SERVICE_UNAVAILABLE),
    )
}

/// The child's work: append until killed (or until `LIMIT`, should the parent be gone), printing
/// each acknowledged id. Without `RAMPART_CRASH_CHILD` it is not a child and does nothing.
#[test]
fn crash_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = std::sync::Arc::new(SqliteStore::open(PathBuf::from(path)).unwrap());
        let started = Instant::now();
        let tasks: Vec<_> = (0..WRITERS)
            .map(|task| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut n = 0;
                    while started.elapsed() < LIMIT {
                        let r = record(task, n);
                        store.append(&r).await.unwrap();
                        // Written straight to stdout (not captured by the test harness), one
                        // line per write, only after `append` returned Ok.
                        let mut out = std::io::stdout().lock();
                        if writeln!(out, "ack {}", r.id)
                            .and_then(|()| out.flush())
                            .is_err()
                        {
                            return; // the parent is gone
                        }
                        n += 1;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}

/// Kills the child if the test fails before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_acknowledged_append_survives_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dlq.db");
    let deadline = Instant::now() + LIMIT;

    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });

    let mut acked: Vec<DeadLetterId> = Vec::new();
    let mut killed = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                if let Some(id) = line.unwrap().strip_prefix("ack ") {
                    acked.push(id.parse().unwrap());
                }
            }
            // The pipe closed: after the kill, every line the child wrote has been read.
            Err(RecvTimeoutError::Disconnected) if killed => break,
            Err(RecvTimeoutError::Disconnected) => {
                let status = child.0.wait().unwrap();
                panic!("the child exited by itself ({status}) before it was killed");
            }
            Err(RecvTimeoutError::Timeout) => panic!(
                "gave up after {LIMIT:?}: {} acknowledgements (killed: {killed})",
                acked.len(),
            ),
        }
        if !killed && acked.len() >= ACKS_BEFORE_KILL {
            child.0.kill().unwrap(); // SIGKILL
            let status = child.0.wait().unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt as _;
                assert_eq!(status.signal(), Some(9), "{status}");
            }
            #[cfg(not(unix))]
            assert!(!status.success());
            killed = true;
        }
    }
    assert!(acked.len() >= ACKS_BEFORE_KILL);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(&path).unwrap();
        for id in &acked {
            let got = store
                .get(*id)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("acknowledged record {id} was lost"));
            assert_eq!(got.id, *id);
            assert_eq!(got.state, State::Pending);
        }
        let stats = store.stats().await.unwrap();
        assert!(
            stats.total >= acked.len() as u64,
            "{} stored, {} acknowledged",
            stats.total,
            acked.len()
        );
        // The file is still usable after the crash.
        let after = record(99, 0);
        store.append(&after).await.unwrap();
        let got = store.get(after.id).await.unwrap().unwrap();
        assert_eq!((got.id, got.target), (after.id, after.target));
    });
}
