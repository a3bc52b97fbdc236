//! A durable workflow step: a multi-step job whose external calls go through the recommended
//! client stack with **deterministic idempotency keys**, so that a job rerun after a crash
//! repeats no effect. The `workflow` example runs it (and kills it); `tests/tests/workflow.rs`
//! kills the job's process with `SIGKILL` mid-way and reruns it: every effect once.
//!
//! The key of a step is the SHA-256 of the job's id, the operation and its parameters
//! (canonical JSON: objects with their keys sorted), in hex. The same job with the same
//! parameters makes the same keys in any process, on any day, so the server's idempotency
//! layer recognises a rerun's call as the one it already did and answers it from its record;
//! the job needs no journal of its own to be safe. (A journal still saves the calls: a
//! rerun here sends every step again and gets the replays.)
//!
//! Trade-offs, named:
//!
//! - A step whose parameters change between runs (a timestamp, a random number) makes a new
//!   key and is done again: everything a step sends must come from the job's input.
//! - The server must keep its records longer than a job may take to be rerun (the
//!   idempotency layer's TTL).
//! - A step that was cut while the server was still running it finds the key taken (`409`)
//!   until the server finishes or its lease expires: the stack retries it.

use rampart::core::header::IDEMPOTENCY_KEY;
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    extract::{Path, State},
    http::HeaderMap,
    routing::post,
};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use rampart::core::sync::lock;
use rampart::{
    core::error::BoxError,
    dead_letter::{DeadLetterStore, MemoryStore},
};
use rampart_idempotency::{IdempotencyLayer, KeyPolicy, MemoryStore as KeyStore};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

use crate::stack::{self, Settings};

/// One step of a job: an operation and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The operation (`reserve_stock`, `charge_card`, …): the path it is posted to.
    pub op: &'static str,
    /// Its parameters, sent as the JSON body.
    pub params: serde_json::Value,
}

/// A job: an id and its steps, done in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The job's id (an order number): part of every key.
    pub id: String,
    /// The steps.
    pub steps: Vec<Step>,
}

impl Job {
    /// The example's job: fulfil order `id` in four steps.
    pub fn order(id: &str) -> Self {
        let step = |op, params| Step { op, params };
        Self {
            id: id.to_owned(),
            steps: vec![
                step("reserve_stock", serde_json::json!({"sku": "A1", "qty": 2})),
                step(
                    "charge_card",
                    serde_json::json!({"amount": 4200, "currency": "EUR"}),
                ),
                step(
                    "create_shipment",
                    serde_json::json!({"to": {"city": "Lyon", "street": "1 rue X"}}),
                ),
                step(
                    "send_email",
                    serde_json::json!({"template": "shipped", "to": "ada@example.com"}),
                ),
            ],
        }
    }
}

/// The deterministic idempotency key of `step` of job `job`: SHA-256 over the job id, the
/// operation and the canonical JSON of the parameters, each followed by a NUL (so that no two
/// different triples hash the same bytes), in lowercase hex.
pub fn step_key(job: &str, step: &Step) -> String {
    let mut hash = Sha256::new();
    hash.update(job.as_bytes());
    hash.update([0]);
    hash.update(step.op.as_bytes());
    hash.update([0]);
    hash.update(canonical_json(&step.params).as_bytes());
    hash.update([0]);
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// `value` as JSON with every object's keys sorted, whatever map serde_json was built with.
fn canonical_json(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(map) => {
            let sorted: BTreeMap<&String, String> =
                map.iter().map(|(k, v)| (k, canonical_json(v))).collect();
            let fields: Vec<String> = sorted
                .into_iter()
                .map(|(k, v)| format!("{}:{v}", serde_json::Value::from(k.as_str())))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        serde_json::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

/// Runs `job` against the effects server at `addr`, step after step, through the recommended
/// client stack (retries, breaker, timeouts; parking a step that finally fails in memory).
/// Returns the steps' statuses; stops at the first step that does not succeed.
pub async fn run(addr: SocketAddr, job: &Job) -> Result<Vec<(&'static str, u16)>, BoxError> {
    let store: Arc<dyn DeadLetterStore> = Arc::new(MemoryStore::bounded(1_000)?);
    let settings = Settings {
        attempt_timeout: Duration::from_secs(5),
        total_timeout: Duration::from_secs(20),
        ..Settings::default()
    };
    let (client, _) = stack::client(store, &settings, |_| {})?;
    let mut done = Vec::new();
    for step in &job.steps {
        let req = Request::post(format!("http://{addr}/effects/{}", step.op))
            .header(IDEMPOTENCY_KEY, step_key(&job.id, step))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(&step.params)?)))?;
        let res = client.clone().oneshot(req).await?;
        let status = res.status();
        done.push((step.op, status.as_u16()));
        if !status.is_success() {
            return Err(format!("step {} answered {status}", step.op).into());
        }
    }
    Ok(done)
}

/// What the effects server saw, per operation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Times each operation's work was done.
    pub effects: BTreeMap<String, u64>,
    /// Calls that reached the server, replays included.
    pub calls: BTreeMap<String, u64>,
}

/// An operation whose answer is held back, and the signal that its work is done.
type Hold = (String, Arc<tokio::sync::Notify>);

/// The effects server's shared state.
#[derive(Debug, Clone, Default)]
pub struct EffectsServer {
    ledger: Arc<Mutex<Ledger>>,
    /// An operation whose answer is held back after its work is done, with a signal that it
    /// was: the moment to kill the job in.
    hold: Arc<Mutex<Option<Hold>>>,
}

impl EffectsServer {
    /// What the server saw so far.
    pub fn ledger(&self) -> Ledger {
        lock(&self.ledger).clone()
    }

    /// Holds back the answer of `op` once its work is done (for 30 s), notifying the returned
    /// `Notify` when the work is done.
    pub fn hold_after(&self, op: &str) -> Arc<tokio::sync::Notify> {
        let done = Arc::new(tokio::sync::Notify::new());
        *lock(&self.hold) = Some((op.to_owned(), done.clone()));
        done
    }

    /// Stops holding answers back.
    pub fn release(&self) {
        *lock(&self.hold) = None;
    }

    /// Serves `POST /effects/{op}` on `127.0.0.1:0` behind a server-side idempotency layer
    /// (keys required): each call that runs the handler does the work once.
    pub async fn serve(&self) -> std::io::Result<SocketAddr> {
        let idempotency = IdempotencyLayer::builder(Arc::new(
            KeyStore::bounded(100_000).map_err(std::io::Error::other)?,
        ))
        .name("effects")
        .policy(KeyPolicy::Required)
        .build()
        .map_err(std::io::Error::other)?;
        let seen = self.clone();
        let app = Router::new()
            .route("/effects/{op}", post(effect))
            .with_state(self.clone())
            .layer(idempotency)
            // Outside the idempotency layer: every call counts, replays included; a held
            // answer is held after the layer has stored it.
            .layer(axum::middleware::from_fn(
                move |Path(op): Path<String>,
                      req: axum::extract::Request,
                      next: axum::middleware::Next| {
                    let seen = seen.clone();
                    async move {
                        *lock(&seen.ledger).calls.entry(op.clone()).or_default() += 1;
                        let res = next.run(req).await;
                        let held = lock(&seen.hold)
                            .as_ref()
                            .filter(|(h, _)| *h == op)
                            .map(|(_, done)| done.clone());
                        if let Some(done) = held {
                            done.notify_one();
                            tokio::time::sleep(Duration::from_secs(30)).await;
                        }
                        res
                    }
                },
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(addr)
    }
}

/// The work: counted once per call that gets here (the idempotency layer lets a key through
/// once). Done without an await, so that a cancelled request never leaves it half done.
async fn effect(
    State(server): State<EffectsServer>,
    Path(op): Path<String>,
    _headers: HeaderMap,
) -> StatusCode {
    *lock(&server.ledger).effects.entry(op).or_default() += 1;
    StatusCode::CREATED
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_depends_on_the_job_the_operation_and_the_parameters_not_on_their_order() {
        let job = Job::order("order-42");
        let step = &job.steps[0];
        let key = step_key("order-42", step);
        assert_eq!(key.len(), 64);
        assert_eq!(key, step_key("order-42", &step.clone()), "deterministic");
        assert_ne!(key, step_key("order-43", step), "another job");
        let reordered = Step {
            op: step.op,
            params: serde_json::from_str(r#"{"qty": 2, "sku": "A1"}"#).unwrap_or_default(),
        };
        assert_eq!(
            key,
            step_key("order-42", &reordered),
            "key order does not matter"
        );
        let other = Step {
            op: step.op,
            params: serde_json::json!({"sku": "A1", "qty": 3}),
        };
        assert_ne!(key, step_key("order-42", &other), "other parameters");
        // The separators keep ("ab", "c") and ("a", "bc") apart.
        let a = Step {
            op: "c",
            params: serde_json::Value::Null,
        };
        let b = Step {
            op: "bc",
            params: serde_json::Value::Null,
        };
        assert_ne!(step_key("ab", &a), step_key("a", &b));
    }

    #[test]
    fn canonical_json_sorts_nested_objects() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"b": {"y": 1, "x": [ {"d": 1, "c": 2} ]}, "a": "s"}"#)
                .unwrap_or_default();
        assert_eq!(
            canonical_json(&v),
            r#"{"a":"s","b":{"x":[{"c":2,"d":1}],"y":1}}"#
        );
    }
}
