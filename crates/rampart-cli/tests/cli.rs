#![allow(clippy::unwrap_used)]
//! The `rampart` binary against real stores: an SQLite file filled through the library, a
//! real axum server for redrives, and (when it answers) a real Redis.

use std::{
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Output,
    sync::{Arc, Mutex},
    time::Duration,
};

use assert_cmd::Command;
use rampart_dead_letter::{
    DeadLetter, DeadLetterStore, Filter, Query, SqliteStore, State, conformance,
};

/// Runs `f` to completion on a fresh runtime.
fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A temporary SQLite store holding `records`; the file is closed when this returns.
struct Db {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Db {
    fn with(records: &[DeadLetter]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dlq.db");
        let store = SqliteStore::open(&path).unwrap();
        block_on(store.append_batch(records)).unwrap();
        drop(store);
        Db { _dir: dir, path }
    }

    fn url(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    /// Every record now in the file, in id order.
    fn records(&self) -> Vec<DeadLetter> {
        read_all(&self.path)
    }
}

fn read_all(path: &Path) -> Vec<DeadLetter> {
    let store = SqliteStore::open(path).unwrap();
    block_on(store.list(&Query::new(Filter::all(), 10_000))).unwrap()
}

/// Records 0..n of the conformance suite: services `a`/`b`, kinds transient/timeout/
/// circuit_open, record 0 delivered and record 1 given up.
fn sample(n: u32) -> Vec<DeadLetter> {
    let mut records: Vec<DeadLetter> = (0..n).map(conformance::record).collect();
    records[0].state = State::Delivered;
    records[1].state = State::GivenUp;
    records
}

/// `rampart --store URL ARGS…`, with no store in the environment.
fn rampart(store: &str, args: &[&str]) -> Output {
    Command::cargo_bin("rampart")
        .unwrap()
        .env_remove("RAMPART_STORE")
        .arg("--store")
        .arg(store)
        .args(args)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[track_caller]
fn assert_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// An error is one line on stderr, names the store and says why; nothing on stdout.
#[track_caller]
fn assert_one_line_error(o: &Output, code: i32, needles: &[&str]) {
    assert_code(o, code);
    let err = stderr(o);
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} missing in {err:?}");
    }
    assert!(
        !err.contains("panicked") && !err.contains("StoreError {"),
        "{err}"
    );
    assert!(o.stdout.is_empty(), "{}", stdout(o));
}

#[test]
fn list_prints_a_table_in_id_order() {
    let records = sample(5);
    let db = Db::with(&records);
    let o = rampart(&db.url(), &["dlq", "list"]);
    assert_code(&o, 0);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ID", "STATE", "KIND", "STATUS", "ATTEMPTS", "REDRIVES", "AGE", "METHOD", "URI"
        ]
    );
    assert_eq!(lines.len(), 6, "{out}");
    for (line, r) in lines[1..].iter().zip(&records) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[0], r.id.to_string());
        assert_eq!(cells[1], r.state.as_str());
        assert_eq!(cells[2], r.failure.kind.as_str());
        assert_eq!(
            cells[3],
            r.failure.status.map_or("-".into(), |s| s.to_string())
        );
        assert_eq!(cells[4..6], ["3", "0"]);
        assert!(cells[6].ends_with('s'), "age {}", cells[6]);
        assert_eq!(cells[7..], ["POST", r.target.uri.as_str()]);
    }
}

#[test]
fn list_json_reads_back_as_the_records_and_filters_apply() {
    let records = sample(6);
    let db = Db::with(&records);

    let o = rampart(&db.url(), &["dlq", "list", "--json"]);
    assert_code(&o, 0);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let back: Vec<DeadLetter> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|v| DeadLetter::from_json(v.to_string().as_bytes()).unwrap())
        .collect();
    assert_eq!(back, records);
    assert_eq!(json[0]["v"], 1);
    assert_eq!(json[0]["target"]["headers"][2]["redacted"], true);

    let ids = |args: &[&str]| -> Vec<String> {
        let o = rampart(&db.url(), &[&["dlq", "list", "--json"], args].concat());
        assert_code(&o, 0);
        let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        json.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let id = |i: usize| records[i].id.to_string();
    assert_eq!(ids(&["--state", "pending"]), [id(2), id(3), id(4), id(5)]);
    assert_eq!(ids(&["--state", "given_up"]), [id(1)]);
    assert_eq!(ids(&["--kind", "timeout"]), [id(1), id(4)]);
    assert_eq!(
        ids(&["--service", "b", "--state", "pending"]),
        [id(3), id(5)]
    );
    assert!(ids(&["--kind", "fatal"]).is_empty());

    // Paging: a full page says where the next one starts.
    let o = rampart(&db.url(), &["dlq", "list", "--json", "--limit", "4"]);
    assert!(
        stderr(&o).contains(&format!("--after {}", id(3))),
        "{}",
        stderr(&o)
    );
    assert_eq!(ids(&["--limit", "4", "--after", &id(3)]), [id(4), id(5)]);
}

#[test]
fn list_of_nothing_says_so_on_stderr() {
    let db = Db::with(&sample(3));
    let o = rampart(&db.url(), &["dlq", "list", "--kind", "bulkhead_full"]);
    assert_code(&o, 0);
    assert!(o.stdout.is_empty());
    assert!(
        stderr(&o).contains("no dead letters (kind=bulkhead_full)"),
        "{}",
        stderr(&o)
    );
    let o = rampart(&db.url(), &["dlq", "list", "--json", "--kind", "fatal"]);
    assert_eq!(stdout(&o), "[]\n");
}

#[test]
fn show_prints_one_record_or_a_clear_error() {
    let records = sample(3);
    let db = Db::with(&records);
    let r = &records[2];

    let o = rampart(&db.url(), &["dlq", "show", &r.id.to_string()]);
    assert_code(&o, 0);
    let out = stdout(&o);
    for expected in [
        r.id.to_string().as_str(),
        "request        POST http://127.0.0.1:9/orders/2",
        "idempotency    key-2",
        "failure        circuit_open",
        "caused by: cause",
        "x-binary: c3 28 ff (not UTF-8; hex)",
        "authorization: [redacted]",
        r.target.body.sha256.as_deref().unwrap(),
        "{\"order\":2}",
        "Z (",
    ] {
        assert!(out.contains(expected), "{expected:?} missing in:\n{out}");
    }

    let o = rampart(&db.url(), &["dlq", "show", "--json", &r.id.to_string()]);
    assert_code(&o, 0);
    assert_eq!(&DeadLetter::from_json(&o.stdout).unwrap(), r);

    let unknown = rampart_dead_letter::DeadLetterId::new().to_string();
    let o = rampart(&db.url(), &["dlq", "show", &unknown]);
    assert_one_line_error(
        &o,
        1,
        &[
            &db.url(),
            "no such record",
            &format!("no dead letter with id {unknown}"),
        ],
    );

    let o = rampart(&db.url(), &["dlq", "show", "42"]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("not a dead-letter id"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn stats_count_by_state_and_kind() {
    let db = Db::with(&sample(7));
    let o = rampart(&db.url(), &["dlq", "stats", "--json"]);
    assert_code(&o, 0);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["total"], 7);
    assert_eq!(s["backlog"], 5);
    assert_eq!(
        s["by_state"],
        serde_json::json!({"pending": 5, "redriving": 0, "delivered": 1, "given_up": 1})
    );
    // i % 3: 0, 3, 6 transient; 1, 4 timeout; 2, 5 circuit_open.
    assert_eq!(
        s["by_kind"],
        serde_json::json!({
            "transient": 3, "fatal": 0, "circuit_open": 2, "bulkhead_full": 0, "timeout": 2
        })
    );
    // The oldest pending record is record 2, which first failed 98 s before the others.
    let age = s["oldest_pending_age_secs"].as_u64().unwrap();
    assert!((98..120).contains(&age), "{age}");

    let o = rampart(&db.url(), &["dlq", "stats"]);
    assert_code(&o, 0);
    let out = stdout(&o);
    for expected in [
        "total            7\n",
        "backlog          5\n",
        "  pending        5\n",
        "  given_up       1\n",
        "  timeout        2\n",
        "(first failed 1m",
    ] {
        assert!(out.contains(expected), "{expected:?} missing in:\n{out}");
    }
}

#[test]
fn stats_errors_groups_the_pending_backlog_by_normalised_message() {
    let mut records = sample(7);
    for (i, r) in records.iter_mut().enumerate() {
        r.failure.chain = if i < 5 {
            vec![
                format!("connect to 10.0.0.{i}:443"),
                "connection refused".into(),
            ]
        } else {
            vec!["response status 503".into()]
        };
    }
    // Records 0 and 1 are delivered and given up: not in the backlog.
    let db = Db::with(&records);
    let o = rampart(&db.url(), &["dlq", "stats", "--errors", "5", "--json"]);
    assert_code(&o, 0);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let top = s["top_errors"].as_array().unwrap();
    assert_eq!(top.len(), 2, "{top:?}");
    assert_eq!(top[0]["message"], "connect to <addr>: connection refused");
    assert_eq!(top[0]["count"], 3);
    assert_eq!(top[0]["example"], records[2].id.to_string());
    assert_eq!(top[1]["message"], "response status 503");
    assert_eq!(top[1]["count"], 2);

    let o = rampart(&db.url(), &["dlq", "stats", "--errors", "1"]);
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("top errors (pending)\n"), "{out}");
    assert!(
        out.contains("connect to <addr>: connection refused"),
        "{out}"
    );
    assert!(
        !out.contains("response status 503"),
        "only the top one: {out}"
    );
}

#[test]
fn purge_refuses_without_yes_and_removes_exactly_the_matches_with_it() {
    let mut records = sample(6);
    records[4].state = State::Delivered;
    let db = Db::with(&records);

    let o = rampart(&db.url(), &["dlq", "purge", "--state", "delivered"]);
    assert_one_line_error(
        &o,
        2,
        &[
            "--yes",
            "2 records (state=delivered)",
            "nothing was removed",
        ],
    );
    assert_eq!(db.records().len(), 6);

    let o = rampart(
        &db.url(),
        &["dlq", "purge", "--yes", "--state", "delivered"],
    );
    assert_code(&o, 0);
    assert_eq!(
        stdout(&o),
        format!("removed 2 records (state=delivered) from {}\n", db.url())
    );
    let left = db.records();
    assert_eq!(left.len(), 4);
    assert!(left.iter().all(|r| r.state != State::Delivered));

    let o = rampart(&db.url(), &["dlq", "purge", "--yes", "--kind", "timeout"]);
    assert_code(&o, 0);
    assert!(
        stdout(&o).starts_with("removed 1 record (kind=timeout)"),
        "{}",
        stdout(&o)
    );
    assert_eq!(db.records().len(), 3);
}

#[test]
fn the_store_can_come_from_the_environment() {
    let db = Db::with(&sample(2));
    let o = Command::cargo_bin("rampart")
        .unwrap()
        .env("RAMPART_STORE", db.path.as_os_str()) // a bare path ending in .db
        .args(["dlq", "stats", "--json"])
        .output()
        .unwrap();
    assert_code(&o, 0);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["total"], 2);

    let o = Command::cargo_bin("rampart")
        .unwrap()
        .env_remove("RAMPART_STORE")
        .args(["dlq", "stats"])
        .output()
        .unwrap();
    assert_one_line_error(&o, 2, &["no dead-letter store given", "RAMPART_STORE"]);
}

#[test]
fn bad_store_urls_are_one_line_errors_naming_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.db");
    let missing_url = format!("sqlite:{}", missing.display());
    for (url, needles) in [
        (
            "postgres://admin:hunter2@db/x",
            vec![
                "postgres://db/x",
                "unknown store scheme \"postgres\"",
                "sqlite:PATH",
            ],
        ),
        ("sqlite:", vec!["no file path"]),
        ("dlq", vec!["neither a URL nor a path"]),
        (&missing_url, vec![missing_url.as_str(), "no such file"]),
    ] {
        let o = rampart(url, &["dlq", "list"]);
        assert_one_line_error(&o, 1, &needles);
        assert!(!stderr(&o).contains("hunter2"));
    }
    // A mistyped path does not leave an empty store behind.
    assert!(!missing.exists());
}

#[cfg(feature = "redis")]
#[test]
fn an_unreachable_redis_is_a_one_line_error_in_bounded_time() {
    let start = std::time::Instant::now();
    let o = rampart("redis://127.0.0.1:1", &["dlq", "stats"]);
    let took = start.elapsed();
    assert_one_line_error(&o, 1, &["redis://127.0.0.1:1", "unavailable"]);
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

/// What the test server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    idempotency_key: Option<String>,
    authorization: bool,
    body: String,
}

/// An axum server on 127.0.0.1:0 that records every request; `/fail/…` answers 503, the
/// rest 200. It runs on `rt` while the test thread waits for the CLI.
fn server(rt: &tokio::runtime::Runtime) -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    use axum::{body::Bytes, http::HeaderMap, http::StatusCode, http::Uri, routing::post};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let handler = move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(Seen {
                path: uri.path().to_owned(),
                idempotency_key: headers
                    .get("idempotency-key")
                    .map(|v| v.to_str().unwrap().to_owned()),
                authorization: headers.contains_key("authorization"),
                body: String::from_utf8(body.to_vec()).unwrap(),
            });
            if uri.path().starts_with("/fail/") {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            }
        }
    };
    let app = axum::Router::new()
        .route("/orders/{n}", post(handler.clone()))
        .route("/fail/{n}", post(handler.clone()))
        .route("/alerts", post(handler));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Records 0..n aimed at `addr`, under `path` (`orders` or `fail`).
fn aimed_at(addr: SocketAddr, path: &str, range: std::ops::Range<u32>) -> Vec<DeadLetter> {
    range
        .map(|i| {
            let mut r = conformance::record(i);
            r.target.uri = format!("http://{addr}/{path}/{i}");
            r
        })
        .collect()
}

#[test]
fn redrive_all_delivers_with_the_original_idempotency_keys() {
    let rt = multi_thread_runtime();
    let (addr, seen) = server(&rt);
    let mut records = aimed_at(addr, "orders", 0..6);
    records[5].state = State::Delivered; // not pending: left alone
    let db = Db::with(&records);

    let o = rampart(
        &db.url(),
        &[
            "dlq",
            "redrive",
            "--all",
            "--rate",
            "200",
            "--concurrency",
            "2",
        ],
    );
    assert_code(&o, 0);
    assert_eq!(
        stdout(&o),
        format!(
            "redrive of {}: 5 delivered, 0 failed (pending again), 0 given up, 0 skipped\n",
            db.url()
        )
    );

    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(seen.len(), 5, "{seen:?}");
    for (s, i) in seen.iter().zip(0..) {
        assert_eq!(s.path, format!("/orders/{i}"));
        assert_eq!(
            s.idempotency_key.as_deref(),
            Some(format!("key-{i}").as_str())
        );
        assert_eq!(s.body, format!("{{\"order\":{i}}}"));
        assert!(!s.authorization, "a redacted header was sent");
    }
    let after = db.records();
    assert!(
        after.iter().all(|r| r.state == State::Delivered),
        "{after:?}"
    );
    assert!(after[..5].iter().all(|r| r.redrive_count == 1));
    assert_eq!(after[5].redrive_count, 0);
}

#[test]
fn redrive_failures_exit_3_and_are_given_up_after_max_redrives() {
    let rt = multi_thread_runtime();
    let (addr, seen) = server(&rt);
    let mut records = aimed_at(addr, "orders", 0..2);
    records.extend(aimed_at(addr, "fail", 2..4));
    let db = Db::with(&records);

    // First pass: two delivered, two fail and are pending again.
    let o = rampart(&db.url(), &["dlq", "redrive", "--all", "--json"]);
    assert_code(&o, 3);
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["delivered"], 2);
    assert_eq!(summary["failed"], 2);
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "failed   {}  transient: response status 503",
            records[2].id
        )),
        "{err}"
    );

    // By id, with a maximum of 2 redrives: the second failure gives it up.
    let id = records[3].id.to_string();
    let o = rampart(&db.url(), &["dlq", "redrive", &id, "--max-redrives", "2"]);
    assert_code(&o, 3);
    assert!(
        stdout(&o).contains("0 failed (pending again), 1 given up"),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains(&format!("given up {id}")),
        "{}",
        stderr(&o)
    );

    // A filter selects pending records only: record 2 (service `a`, like delivered record 0),
    // still failing.
    let o = rampart(&db.url(), &["dlq", "redrive", "--service", "a", "-q"]);
    assert_code(&o, 3);
    assert!(
        stdout(&o).contains("0 delivered, 1 failed"),
        "{}",
        stdout(&o)
    );
    assert!(o.stderr.is_empty(), "--quiet: {}", stderr(&o));

    // A given-up record is skipped, not sent: exit 0.
    let o = rampart(&db.url(), &["dlq", "redrive", &id]);
    assert_code(&o, 0);
    assert!(stdout(&o).contains("1 skipped"), "{}", stdout(&o));

    let after = db.records();
    let states: Vec<(State, u32)> = after.iter().map(|r| (r.state, r.redrive_count)).collect();
    assert_eq!(
        states,
        [
            (State::Delivered, 1),
            (State::Delivered, 1),
            (State::Pending, 2),
            (State::GivenUp, 2)
        ]
    );
    assert_eq!(seen.lock().unwrap().len(), 2 + 2 + 1 + 1);

    let o = rampart(
        &db.url(),
        &[
            "dlq",
            "redrive",
            &rampart_dead_letter::DeadLetterId::new().to_string(),
        ],
    );
    assert_one_line_error(&o, 1, &["no dead letter with id"]);
}

#[test]
fn a_given_up_record_is_posted_to_the_alert_webhook() {
    let rt = multi_thread_runtime();
    let (addr, seen) = server(&rt);
    let records = aimed_at(addr, "fail", 0..2);
    let db = Db::with(&records);
    let webhook = format!("http://{addr}/alerts");
    let o = rampart(
        &db.url(),
        &[
            "dlq",
            "redrive",
            "--all",
            "--max-redrives",
            "1",
            "--alert-webhook",
            &webhook,
            "-q",
        ],
    );
    assert_code(&o, 3);
    assert!(stdout(&o).contains("2 given up"), "{}", stdout(&o));
    let alerts: Vec<Seen> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path == "/alerts")
        .cloned()
        .collect();
    assert_eq!(alerts.len(), 2, "one alert per record given up");
    let mut ids: Vec<String> = alerts
        .iter()
        .map(|a| {
            let r = DeadLetter::from_json(a.body.as_bytes()).unwrap();
            assert_eq!(r.state, State::GivenUp);
            r.id.to_string()
        })
        .collect();
    ids.sort();
    let mut want: Vec<String> = records.iter().map(|r| r.id.to_string()).collect();
    want.sort();
    assert_eq!(ids, want);

    // A webhook that fails is reported, and the run is not a success.
    let more = aimed_at(addr, "fail", 2..3);
    let db = Db::with(&more);
    let broken = format!("http://{addr}/fail/alerts");
    let o = rampart(
        &db.url(),
        &[
            "dlq",
            "redrive",
            "--all",
            "--max-redrives",
            "1",
            "--alert-webhook",
            &broken,
            "-q",
        ],
    );
    assert_code(&o, 3);
    assert!(
        stderr(&o).contains(&format!("alert for given-up {} not delivered", more[0].id)),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("503"), "{}", stderr(&o));

    // A webhook the plain-HTTP client cannot reach is refused before anything is sent.
    let o = rampart(
        &db.url(),
        &[
            "dlq",
            "redrive",
            "--all",
            "--alert-webhook",
            "https://pager.example/hook",
        ],
    );
    assert_one_line_error(&o, 2, &["--alert-webhook must be a plain http:// URL"]);
    assert_eq!(db.records()[0].redrive_count, 1, "nothing sent again");
}

#[test]
fn redrive_refuses_https_targets_before_sending_anything() {
    let mut records = sample(4);
    records[3].target.uri = "https://billing.example/charge".into();
    let db = Db::with(&records);

    let o = rampart(&db.url(), &["dlq", "redrive", "--all"]);
    assert_one_line_error(
        &o,
        1,
        &[
            "refusing to redrive: 1 of the 2 selected records",
            "plain http only",
            &records[3].id.to_string(),
            "nothing was sent",
        ],
    );
    assert_eq!(db.records(), records);

    let o = rampart(&db.url(), &["dlq", "redrive", &records[3].id.to_string()]);
    assert_one_line_error(&o, 1, &["cannot redrive", "plain http only"]);
    assert_eq!(db.records(), records);
}

#[test]
fn a_redrive_with_bad_settings_names_the_setting() {
    let db = Db::with(&sample(3));
    let o = rampart(&db.url(), &["dlq", "redrive", "--all", "--rate", "0"]);
    assert_one_line_error(&o, 2, &["rate"]);
}

/// The same commands against a real Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`),
/// skipped loudly when it does not answer, unless `RAMPART_REQUIRE_SERVICES=1`.
#[cfg(feature = "redis")]
#[test]
fn list_stats_and_purge_work_on_redis() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!(
        "rampart-cli-test:{}",
        rampart_dead_letter::DeadLetterId::new()
    );
    // One runtime for every call: the store's connection lives on it.
    let rt = multi_thread_runtime();
    let store = match rt.block_on(
        rampart_redis::RedisDeadLetterStore::builder(url.as_str())
            .prefix(prefix.as_str())
            .connect(),
    ) {
        Ok(store) => store,
        Err(e) if std::env::var("RAMPART_REQUIRE_SERVICES").is_ok_and(|v| v == "1") => {
            panic!("Redis is not reachable at {url}: {e}, and RAMPART_REQUIRE_SERVICES=1")
        }
        Err(e) => {
            eprintln!("\n********** SKIP: Redis is not reachable at {url} ({e}) **********\n");
            return;
        }
    };
    let records = sample(4);
    rt.block_on(store.append_batch(&records)).unwrap();
    let cli_url = format!("{url}?prefix={prefix}");

    let o = rampart(&cli_url, &["dlq", "list", "--json"]);
    assert_code(&o, 0);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 4);
    assert_eq!(json[3]["id"], records[3].id.to_string());

    let o = rampart(&cli_url, &["dlq", "stats", "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["backlog"], 2);

    let o = rampart(&cli_url, &["dlq", "purge", "--yes", "--state", "given_up"]);
    assert_code(&o, 0);
    assert!(stdout(&o).starts_with("removed 1 record"), "{}", stdout(&o));
    assert_eq!(rt.block_on(store.stats()).unwrap().total, 3);
    rt.block_on(store.destroy()).unwrap();
}

#[cfg(feature = "nats")]
#[test]
fn an_unreachable_nats_is_a_one_line_error_in_bounded_time() {
    let start = std::time::Instant::now();
    let o = rampart("nats://127.0.0.1:1", &["dlq", "stats"]);
    let took = start.elapsed();
    assert_one_line_error(&o, 1, &["nats://127.0.0.1:1", "unavailable"]);
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

/// The same commands against a real NATS with JetStream (`NATS_URL`, default
/// `nats://127.0.0.1:4222`), skipped loudly when it does not answer, unless
/// `RAMPART_REQUIRE_SERVICES=1`.
#[cfg(feature = "nats")]
#[test]
fn list_stats_and_purge_work_on_nats() {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let bucket = format!(
        "rampart_cli_test_{}",
        rampart_dead_letter::DeadLetterId::new().as_uuid().simple()
    );
    // One runtime for every call: the store's connection lives on it.
    let rt = multi_thread_runtime();
    let store = match rt.block_on(
        rampart_nats::NatsDeadLetterStore::builder(url.as_str())
            .bucket(bucket.as_str())
            .connect(),
    ) {
        Ok(store) => store,
        Err(e) if std::env::var("RAMPART_REQUIRE_SERVICES").is_ok_and(|v| v == "1") => {
            panic!("NATS is not reachable at {url}: {e}, and RAMPART_REQUIRE_SERVICES=1")
        }
        Err(e) => {
            eprintln!("\n********** SKIP: NATS is not reachable at {url} ({e}) **********\n");
            return;
        }
    };
    let records = sample(4);
    rt.block_on(store.append_batch(&records)).unwrap();
    let cli_url = format!("{url}?bucket={bucket}");

    let o = rampart(&cli_url, &["dlq", "list", "--json"]);
    assert_code(&o, 0);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 4);
    assert_eq!(json[3]["id"], records[3].id.to_string());

    let o = rampart(
        &cli_url,
        &["dlq", "show", &records[2].id.to_string(), "--json"],
    );
    assert_code(&o, 0);
    assert_eq!(DeadLetter::from_json(&o.stdout).unwrap(), records[2]);

    let o = rampart(&cli_url, &["dlq", "purge", "--yes", "--state", "delivered"]);
    assert_code(&o, 0);
    assert!(stdout(&o).starts_with("removed 1 record"), "{}", stdout(&o));
    assert_eq!(rt.block_on(store.stats()).unwrap().total, 3);
    rt.block_on(store.destroy()).unwrap();
}
