//! [`Shared`]: what every service of one [`DeadLetterLayer`](crate::DeadLetterLayer) shares
//! (its stores and settings), how a failed request becomes a record (redaction, body limit,
//! key, attempts), and parking it (primary, then secondary).

use std::{error::Error, sync::Arc, time::SystemTime};

use bytes::Bytes;
use http::{HeaderName, Response, StatusCode};
use rampart_core::{
    attempt::AttemptCounter,
    body::ReplayBody,
    classify::ClassifyResponse,
    error::BoxError,
    redact::{QueryPolicy, REDACTED, is_credential_header},
};

use crate::{
    head::HeadCopy,
    kind::{ParkOn, error_kind, outcome_kind},
    record::{
        DeadLetter, DeadLetterId, Failure, Header, ParkReason, Payload, RecordedBody, Target,
    },
    store::{DeadLetterStore, StoreError},
};

/// The label of a record the secondary store took because the primary failed: the primary's
/// description. See [`RedriveBuilder::primary`](crate::RedriveBuilder::primary).
pub const FALLBACK_FROM: &str = "rampart.fallback_from";

/// Where a parked record went.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kept {
    pub(crate) id: DeadLetterId,
    /// The store that kept it survives a crash of the process.
    pub(crate) durable: bool,
}

/// What every service of one layer shares.
pub(crate) struct Shared {
    pub(crate) write_failures: crate::WriteFailures,
    pub(crate) service: String,
    pub(crate) primary: Arc<dyn DeadLetterStore>,
    pub(crate) secondary: Option<Arc<dyn DeadLetterStore>>,
    pub(crate) park_on: ParkOn,
    pub(crate) redact: Vec<HeaderName>,
    pub(crate) keep_headers: Vec<HeaderName>,
    pub(crate) query: QueryPolicy,
    pub(crate) max_body: usize,
    pub(crate) key_header: HeaderName,
    pub(crate) classifier: Arc<dyn ClassifyResponse>,
    pub(crate) base_uri: Option<http::Uri>,
    pub(crate) on_park: Option<ParkHook>,
    pub(crate) on_park_failed: Option<ParkFailedHook>,
}

/// The alert for a record kept: the record, and whether the store that kept it is durable.
pub(crate) type ParkHook = Arc<dyn Fn(&DeadLetter, bool) + Send + Sync>;
/// The alert for a record no store kept: the record, and every store's error.
pub(crate) type ParkFailedHook = Arc<dyn Fn(&DeadLetter, &[StoreError]) + Send + Sync>;

/// What is kept of a request while it is in flight, to record it if it fails.
pub(crate) struct Snapshot {
    method: http::Method,
    /// The URI and headers, copied into one buffer (not cloned: see [`HeadCopy`]).
    head: HeadCopy,
    body: RecordedBodyParts,
    started: SystemTime,
    attempts: AttemptCounter,
}

enum RecordedBodyParts {
    Whole(Bytes),
    Prefix(Bytes),
}

impl Snapshot {
    /// Keeps what is needed to record the request, and makes sure an [`AttemptCounter`] is in
    /// its extensions for a retry layer inside to fill in: the caller's, if it put one there
    /// (so that it reads the count too), else a new one.
    pub(crate) fn of<B>(parts: &mut http::request::Parts, body: &ReplayBody<B>) -> Self {
        let attempts = match parts.extensions.get::<AttemptCounter>() {
            Some(counter) => counter.clone(),
            None => {
                let counter = AttemptCounter::new();
                parts.extensions.insert(counter.clone());
                counter
            }
        };
        let body = match body {
            ReplayBody::Buffered { data, .. } => {
                RecordedBodyParts::Whole(data.clone().unwrap_or_default())
            }
            ReplayBody::Streaming { prefix, .. } | ReplayBody::Failed { prefix, .. } => {
                RecordedBodyParts::Prefix(prefix.clone().unwrap_or_default())
            }
        };
        Self {
            method: parts.method.clone(),
            head: HeadCopy::of(&parts.uri, &parts.headers),
            body,
            started: SystemTime::now(),
            attempts,
        }
    }
}

/// A request's final failure, as [`OnParked`](crate::OnParked) gets it.
#[derive(Debug)]
pub enum Final<ResB> {
    /// A failure response (e.g. the last `503`).
    Response(Response<ResB>),
    /// An error (a transport error, an open circuit, a timeout, …).
    Error(BoxError),
}

impl Shared {
    /// What a final response's head says: `Ok(Some(kind))` for a failure to park, `Ok(None)`
    /// for an answer to pass on, `Err(())` if only its trailers will tell.
    pub(crate) fn judge_head(
        &self,
        status: StatusCode,
        headers: &http::HeaderMap,
    ) -> Result<Option<ParkReason>, ()> {
        match self.classifier.outcome_of_head(status, headers) {
            Some(outcome) => Ok(outcome_kind(outcome).filter(|k| self.park_on.contains(*k))),
            None => Err(()),
        }
    }

    /// The kind of a final response, if it is a failure to park (an answer whose head defers
    /// to its trailers is not, by its head).
    pub(crate) fn park_response(
        &self,
        status: StatusCode,
        headers: &http::HeaderMap,
    ) -> Option<ParkReason> {
        self.judge_head(status, headers).ok().flatten()
    }

    /// The kind of a final error, if it is a failure to park.
    /// `true` if failures of `kind` are parked.
    pub(crate) fn parks(&self, kind: ParkReason) -> bool {
        self.park_on.contains(kind)
    }

    pub(crate) fn park_error(&self, err: &(dyn Error + 'static)) -> Option<ParkReason> {
        Some(error_kind(err)).filter(|k| self.park_on.contains(*k))
    }

    pub(crate) fn record<ResB>(
        &self,
        snap: Snapshot,
        kind: ParkReason,
        failure: &Final<ResB>,
    ) -> DeadLetter {
        let failure = match failure {
            Final::Response(res) => {
                let mut f = Failure::from_status(kind, res.status());
                if let Some(code) = res.headers().get("grpc-status") {
                    let message = res
                        .headers()
                        .get("grpc-message")
                        .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned());
                    f.chain = vec![format!(
                        "grpc-status {}{}",
                        String::from_utf8_lossy(code.as_bytes()),
                        message
                            .map(|m| format!(": {}", rampart_core::redact::text(&m)))
                            .unwrap_or_default()
                    )];
                }
                f
            }
            Final::Error(e) => Failure::from_error(kind, &**e),
        };
        // Noted by a rampart retry layer inside; none means one attempt.
        let attempts = snap.attempts.get().max(1);
        let key = snap
            .head
            .header(self.key_header.as_str())
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned);
        let headers = snap
            .head
            .headers()
            .map(|(name, value)| {
                let listed = |list: &[HeaderName]| list.iter().any(|h| h.as_str() == name);
                let redacted = listed(&self.redact)
                    || (is_credential_header(name) && !listed(&self.keep_headers));
                Header {
                    name: name.to_owned(),
                    value: Payload(if redacted {
                        Bytes::from_static(REDACTED.as_bytes())
                    } else {
                        Bytes::copy_from_slice(value)
                    }),
                    redacted,
                }
            })
            .collect();
        let body = match snap.body {
            // Copied: the body read from a connection is a slice of its read buffer, which a
            // record kept in memory (or waiting for a slow store) would otherwise keep whole.
            RecordedBodyParts::Whole(b) => RecordedBody::whole(Bytes::copy_from_slice(&b)),
            RecordedBodyParts::Prefix(b) => {
                let kept = b.len().min(self.max_body);
                RecordedBody::truncated(Bytes::copy_from_slice(&b[..kept]))
            }
        };
        let sent = match &self.base_uri {
            Some(base) if !snap.head.has_authority() => format!(
                "{}://{}{}",
                base.scheme_str().unwrap_or("http"),
                base.authority().map_or("", |a| a.as_str()),
                snap.head.path_and_query()
            ),
            _ => snap.head.uri().to_owned(),
        };
        let (uri, query_redacted) = rampart_core::redact::request_uri(&sent, &self.query);
        let mut record = DeadLetter::new(
            self.service.clone(),
            Target {
                method: snap.method.as_str().to_owned(),
                uri,
                headers,
                body,
                query_redacted,
            },
            failure,
        );
        record.idempotency_key = key;
        record.attempts = attempts;
        // With retries, the first failure came after the call started; without, it is now.
        if attempts > 1 {
            record.first_failed_at = crate::record::millis::truncate(snap.started);
        }
        record
    }

    /// Parks `record`: in the primary store, else the secondary. Every store's error if none
    /// kept it.
    pub(crate) async fn park(&self, record: &DeadLetter) -> Result<Kept, Vec<StoreError>> {
        let labels = [
            (rampart_core::registry::INSTANCE_LABEL, self.service.clone()),
            ("kind", record.failure.kind.as_str().to_owned()),
        ];
        let primary = match self.primary.append(record).await {
            Ok(()) => {
                tracing::info!(
                    target: "rampart::dead_letter",
                    id = %record.id, kind = %record.failure.kind,
                    path = rampart_core::redact::uri_path(&record.target.uri),
                    attempts = record.attempts, "request dead-lettered"
                );
                metrics::counter!("rampart_dead_letter_parked_total", &labels).increment(1);
                let durable = self.primary.is_durable();
                if let Some(hook) = &self.on_park {
                    hook(record, durable);
                }
                return Ok(Kept {
                    id: record.id,
                    durable,
                });
            }
            Err(e) => e,
        };
        let failed = |store: &dyn DeadLetterStore, e: &StoreError, kept_elsewhere: bool| {
            self.write_failures.note(crate::WriteFailure {
                at: SystemTime::now(),
                store: store.describe(),
                error: e.to_string(),
                kept_elsewhere,
            });
        };
        let Some(secondary) = &self.secondary else {
            failed(&*self.primary, &primary, false);
            tracing::error!(
                target: "rampart::dead_letter",
                id = %record.id, error = %primary, "dead letter could not be stored"
            );
            metrics::counter!("rampart_dead_letter_park_failures_total", &labels).increment(1);
            let errors = vec![primary];
            if let Some(hook) = &self.on_park_failed {
                hook(record, &errors);
            }
            return Err(errors);
        };
        // The primary may have stored it after all (an append that timed out on its way
        // back): the copy says where it came from, for a redrive to find the twin.
        let mut copy = record.clone();
        copy.labels
            .insert(FALLBACK_FROM.to_owned(), self.primary.describe());
        match secondary.append(&copy).await {
            Ok(()) => {
                failed(&*self.primary, &primary, true);
                tracing::warn!(
                    target: "rampart::dead_letter",
                    id = %record.id, error = %primary, fallback = %secondary.describe(),
                    "primary dead-letter store failed; record kept in the secondary store"
                );
                metrics::counter!("rampart_dead_letter_fallbacks_total", &labels).increment(1);
                metrics::counter!("rampart_dead_letter_parked_total", &labels).increment(1);
                let durable = secondary.is_durable();
                if let Some(hook) = &self.on_park {
                    hook(&copy, durable);
                }
                Ok(Kept {
                    id: record.id,
                    durable,
                })
            }
            Err(second) => {
                failed(&*self.primary, &primary, false);
                failed(&**secondary, &second, false);
                tracing::error!(
                    target: "rampart::dead_letter",
                    id = %record.id, primary = %primary, secondary = %second,
                    "dead letter could not be stored in either store"
                );
                metrics::counter!("rampart_dead_letter_park_failures_total", &labels).increment(1);
                let errors = vec![primary, second];
                if let Some(hook) = &self.on_park_failed {
                    hook(record, &errors);
                }
                Err(errors)
            }
        }
    }
}
