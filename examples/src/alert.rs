//! A webhook-style notifier: the alert hooks of rampart (a breaker opening, a dead letter given
//! up) wired to an HTTP endpoint, as a pager or a chat hook would be.
//!
//! The hooks are synchronous and run on a request's task, so [`Webhook::post`] only spawns the
//! delivery: a slow or failing endpoint never holds a request up. A delivery that fails is
//! reported on stderr (a real notifier would retry, or count it).

use std::{
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::Full;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rampart::{circuit_breaker::Transition, dead_letter::DeadLetter};

/// Posts alerts as JSON to one URL. Cheap to clone.
#[derive(Clone)]
pub struct Webhook {
    url: Uri,
    client: Client<HttpConnector, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
    failed: Arc<AtomicU64>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// A notifier posting to `url` (plain HTTP), from the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn new(url: Uri) -> Self {
        Self {
            url,
            client: Client::builder(TokioExecutor::new()).build_http(),
            runtime: tokio::runtime::Handle::current(),
            failed: Arc::default(),
        }
    }

    /// Posts `json` with `x-rampart-event: event`, in the background.
    pub fn post(&self, event: &'static str, json: String) {
        let request = Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-rampart-event", event)
            .body(Full::new(Bytes::from(json)));
        let (client, failed) = (self.client.clone(), self.failed.clone());
        self.runtime.spawn(async move {
            let delivered = match request {
                Ok(request) => client
                    .request(request)
                    .await
                    .is_ok_and(|res| res.status().is_success()),
                Err(_) => false,
            };
            if !delivered {
                failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("alert {event} not delivered");
            }
        });
    }

    /// Alerts that could not be delivered so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The alert for a breaker opening (for
    /// [`on_open`](rampart::circuit_breaker::CircuitBreakerConfigBuilder::on_open)):
    /// `circuit_breaker.opened`, with the breaker, the reason and the open time.
    pub fn breaker_opened(&self) -> impl Fn(&Transition) + Send + Sync + 'static {
        let hook = self.clone();
        move |t| {
            let mut json = format!(
                "{{\"breaker\":\"{}\",\"from\":\"{}\",\"reason\":\"{}\"",
                t.breaker.escape_default(),
                t.from.as_str(),
                t.reason.as_str()
            );
            if let Some(open_for) = t.open_for {
                let _ = write!(json, ",\"open_for_ms\":{}", open_for.as_millis());
            }
            json.push('}');
            hook.post("circuit_breaker.opened", json);
        }
    }

    /// The alert for a dead letter given up (for
    /// [`on_give_up`](rampart::dead_letter::RedriveBuilder::on_give_up)):
    /// `dead_letter.given_up`, with the record's JSON (redacted as stored).
    pub fn given_up(&self) -> impl Fn(&DeadLetter) + Send + Sync + 'static {
        let hook = self.clone();
        move |r| hook.post("dead_letter.given_up", r.to_json())
    }
}
