//! One record's redrive: re-read and claim it (a compare-and-set that takes a lease), rebuild
//! and send its request within the lease, judge the answer (a gRPC answer by its trailers),
//! and record the outcome with another compare-and-set.

use std::{future::poll_fn, pin::pin, sync::Arc};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use rampart_core::{
    classify::ClassifyResponse,
    error::BoxError,
    rejection::{Rejected, RejectionKind},
};
use tower::ServiceExt as _;
use tower_service::Service;

use super::{
    builder::Inner,
    outcome::{RedriveOutcome, Skip},
};
use crate::{
    kind::{error_kind, outcome_kind, trailers_failure},
    record::{DeadLetter, DeadLetterId, Failure, Lease, ParkReason, State},
    store::{StoreError, StoreErrorKind},
};

/// Rebuilds the request of `record`; `Err` if it cannot be resent whole.
pub fn rebuild<B: From<Bytes>>(
    record: &DeadLetter,
    key_header: &HeaderName,
) -> Result<Request<B>, String> {
    if record.target.body.truncated {
        return Err("the body was truncated when it was recorded; it cannot be resent".into());
    }
    if record.target.query_redacted {
        return Err(
            "query values were redacted when it was recorded, so its URI is not the \
                    one sent; keep the values of the keys it needs (the layer's keep_query) to \
                    redrive such requests"
                .into(),
        );
    }
    let mut req = Request::builder()
        .method(record.target.method.as_str())
        .uri(record.target.uri.as_str());
    for h in record.target.headers.iter().filter(|h| !h.redacted) {
        req = req.header(h.name.as_str(), h.value.0.as_ref());
    }
    let mut req = req
        .body(B::from(record.target.body.data.0.clone()))
        .map_err(|e| format!("the recorded request is not valid HTTP: {e}"))?;
    if let Some(key) = &record.idempotency_key
        && !req.headers().contains_key(key_header)
    {
        let v = HeaderValue::from_str(key)
            .map_err(|_| format!("the recorded idempotency key {key:?} is not a header value"))?;
        req.headers_mut().insert(key_header.clone(), v);
    }
    Ok(req)
}

/// Redrives the record `id`: `Err` if the store failed for it (see [`RedriveOutcome::Errored`]; the
/// second field says whether the request had been sent).
pub(super) async fn redrive_record<S, B, ResB>(
    inner: Arc<Inner>,
    service: S,
    id: DeadLetterId,
) -> Result<RedriveOutcome, (StoreError, bool)>
where
    S: Service<Request<B>, Response = Response<ResB>> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: From<Bytes> + Send + 'static,
    ResB: Body + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    let store = &inner.store;
    // Read afresh: a page listed earlier may be minutes old.
    let record = match store.get(id).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            return Err((
                StoreError::new(store.describe(), StoreErrorKind::NotFound)
                    .with_source(format!("no dead letter {id}")),
                false,
            ));
        }
        Err(e) => return Err((e, false)),
    };
    let now = inner.now();
    if !record.is_claimable(now) {
        let why = match (&record.state, &record.lease) {
            (State::Redriving, Some(lease)) => Skip::Leased {
                owner: lease.owner.clone(),
                until: lease.until,
            },
            _ => Skip::Finished,
        };
        return Ok(RedriveOutcome::Skipped {
            state: record.state,
            why,
        });
    }
    if let Some(primary) = &inner.primary
        && record.labels.contains_key(crate::FALLBACK_FROM)
    {
        match primary.get(record.id).await {
            Ok(Some(_)) => {
                store.delete(record.id).await.map_err(|e| (e, false))?;
                tracing::info!(
                    target: "rampart::dead_letter", id = %record.id, primary = %primary.describe(),
                    "a fallback copy the primary also kept was removed; the primary's is sent"
                );
                return Ok(RedriveOutcome::Skipped {
                    state: record.state,
                    why: Skip::Duplicate,
                });
            }
            Ok(None) => {}
            Err(e) => return Err((e, false)),
        }
    }
    if !inner.allow_keyless && !replay_safe(&record, &inner.key_header) {
        tracing::info!(
            target: "rampart::dead_letter", id = %record.id, method = %record.target.method,
            "not redriven: a non-idempotent request without an idempotency key may have run"
        );
        return Ok(RedriveOutcome::Skipped {
            state: record.state,
            why: Skip::Unkeyed,
        });
    }
    let request = match rebuild::<B>(&record, &inner.key_header) {
        Ok(req) => req,
        Err(why) => {
            let failure = Failure {
                kind: record.failure.kind,
                status: None,
                chain: vec![format!("cannot redrive: {why}")],
            };
            return give_up(&inner, record, failure, false)
                .await
                .map_err(|e| (e, false));
        }
    };

    // Claim it: one compare-and-set, which only one of several redrives wins.
    let mut record = record;
    record.state = State::Redriving;
    record.lease = Some(Lease {
        owner: inner.owner.clone(),
        until: now + inner.lease,
    });
    record.updated_at = now;
    match store.update(&record).await {
        Ok(()) => record.revision += 1,
        Err(e) if e.kind() == StoreErrorKind::Stale => {
            return Ok(RedriveOutcome::Skipped {
                state: State::Redriving,
                why: Skip::Contended,
            });
        }
        Err(e) => return Err((e, false)),
    }
    tracing::debug!(target: "rampart::dead_letter", id = %record.id, "redriving");

    let sent = tokio::time::timeout(
        inner.send_timeout,
        send(service, request, &*inner.classifier),
    )
    .await;
    let failure = match sent {
        Ok(Ok((status, None))) => {
            return deliver(&inner, record, status).await.map_err(|e| (e, true));
        }
        Ok(Ok((_, Some(failure)))) => failure,
        Ok(Err(e)) => {
            if let Some(kind) = local_rejection(&*e) {
                return release(&inner, record, kind).await.map_err(|e| (e, false));
            }
            Failure::from_error(error_kind(&*e), &*e)
        }
        Err(_) => Failure {
            kind: ParkReason::Timeout,
            status: None,
            chain: vec![format!(
                "no answer within {:?} (four fifths of the redrive's lease)",
                inner.send_timeout
            )],
        },
    };
    record.redrive_count += 1;
    record.last_failed_at = inner.now();
    if record.redrive_count >= inner.max_redrives {
        return give_up(&inner, record, failure, true)
            .await
            .map_err(|e| (e, true));
    }
    record.failure = failure.clone();
    record.state = State::Pending;
    record.lease = None;
    record.updated_at = record.last_failed_at;
    write_outcome(&inner, &record)
        .await
        .map_err(|e| (e, true))?;
    tracing::info!(
        target: "rampart::dead_letter",
        id = %record.id, redrives = record.redrive_count, kind = %failure.kind,
        "redrive failed; dead letter pending again"
    );
    inner.count("failed");
    Ok(RedriveOutcome::Failed { failure })
}

/// The kind of `err` if a layer of the redrive's own service refused the request before it
/// went out (an open circuit, a full bulkhead, a rate limit or budget); a deadline is not one,
/// it may have been sent.
fn local_rejection(err: &(dyn std::error::Error + 'static)) -> Option<RejectionKind> {
    Rejected::find(err).map(|r| r.kind()).filter(|k| {
        matches!(
            k,
            RejectionKind::CircuitOpen
                | RejectionKind::BulkheadFull
                | RejectionKind::RateLimited
                | RejectionKind::BudgetExhausted
        )
    })
}

/// Gives a claimed `record` back as it was (`pending`, no redrive counted): it was refused
/// locally, never sent.
async fn release(
    inner: &Inner,
    mut record: DeadLetter,
    kind: RejectionKind,
) -> Result<RedriveOutcome, StoreError> {
    record.state = State::Pending;
    record.lease = None;
    record.updated_at = inner.now();
    write_outcome(inner, &record).await?;
    tracing::debug!(
        target: "rampart::dead_letter", id = %record.id, %kind,
        "redrive refused by a layer of its own service; dead letter released"
    );
    inner.count("rejected");
    Ok(RedriveOutcome::Skipped {
        state: State::Pending,
        why: Skip::Rejected { kind },
    })
}

/// Sends `request` and judges the answer: its status, and `Some` failure if it is one.
async fn send<S, B, ResB>(
    service: S,
    request: Request<B>,
    classifier: &dyn ClassifyResponse,
) -> Result<(StatusCode, Option<Failure>), BoxError>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    ResB: Body,
    ResB::Error: Into<BoxError>,
{
    let res = service.oneshot(request).await.map_err(Into::into)?;
    let status = res.status();
    let head = classifier.outcome_of_head(status, res.headers());
    if let Some(kind) = head.and_then(outcome_kind) {
        return Ok((status, Some(Failure::from_status(kind, status))));
    }
    if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
        // The request did not reach what it was for: a redirect the service did not follow.
        let to = res
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map_or_else(String::new, |l| {
                format!(" to {}", rampart_core::redact::text(l))
            });
        return Ok((
            status,
            Some(Failure {
                kind: ParkReason::Fatal,
                status: Some(status.as_u16()),
                chain: vec![format!(
                    "response status {status}: redirected{to}, and the redirect was not followed"
                )],
            }),
        ));
    }
    if head.is_some() {
        return Ok((status, None));
    }
    // An answer whose head defers (a gRPC stream): the outcome comes in the trailers, after
    // the messages. Read (and drop) the messages to get there.
    let mut body = pin!(res.into_body());
    while let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(Into::into)?;
        if let Ok(trailers) = frame.into_trailers() {
            return Ok((
                status,
                trailers_failure(classifier, status, Some(&trailers)),
            ));
        }
    }
    Ok((status, trailers_failure(classifier, status, None)))
}

/// `true` if sending `record` again cannot do its work twice unnoticed: its method is
/// idempotent (RFC 9110: GET, HEAD, OPTIONS, TRACE, PUT, DELETE), or it carries an idempotency
/// key (recorded, or in its headers) that a server-side layer can deduplicate on.
fn replay_safe(record: &DeadLetter, key_header: &HeaderName) -> bool {
    let idempotent = matches!(
        record.target.method.as_str(),
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    );
    idempotent
        || record.idempotency_key.is_some()
        || record
            .target
            .headers
            .iter()
            .any(|h| !h.redacted && h.name.eq_ignore_ascii_case(key_header.as_str()))
}

async fn deliver(
    inner: &Inner,
    mut record: DeadLetter,
    status: StatusCode,
) -> Result<RedriveOutcome, StoreError> {
    record.redrive_count += 1;
    record.state = State::Delivered;
    record.lease = None;
    record.updated_at = inner.now();
    write_outcome(inner, &record).await?;
    tracing::info!(
        target: "rampart::dead_letter",
        id = %record.id, status = status.as_u16(), "dead letter delivered"
    );
    inner.count("delivered");
    Ok(RedriveOutcome::Delivered {
        status: status.as_u16(),
    })
}

/// Gives `record` up; `claimed` if this redrive holds its lease (else it was never sent).
async fn give_up(
    inner: &Inner,
    mut record: DeadLetter,
    failure: Failure,
    claimed: bool,
) -> Result<RedriveOutcome, StoreError> {
    record.failure = failure.clone();
    record.state = State::GivenUp;
    record.lease = None;
    record.updated_at = inner.now();
    match write_outcome(inner, &record).await {
        Ok(()) => {}
        // Not claimed yet (a record that cannot be resent), and another redrive got there
        // first: it decides.
        Err(e) if e.kind() == StoreErrorKind::Stale && !claimed => {
            return Ok(RedriveOutcome::Skipped {
                state: State::Pending,
                why: Skip::Contended,
            });
        }
        Err(e) => return Err(e),
    }
    tracing::warn!(
        target: "rampart::dead_letter",
        id = %record.id, redrives = record.redrive_count, reason = ?failure.chain.first(),
        "dead letter given up"
    );
    inner.count("given_up");
    if let Some(alert) = &inner.on_give_up {
        alert(&record);
    }
    Ok(RedriveOutcome::GivenUp { failure })
}

/// Records the outcome of a claimed record: a compare-and-set on the claim's revision, which
/// fails only if the lease ran out and another redrive took the record over.
async fn write_outcome(inner: &Inner, record: &DeadLetter) -> Result<(), StoreError> {
    inner.store.update(record).await.inspect_err(|e| {
        if e.kind() == StoreErrorKind::Stale {
            tracing::warn!(
                target: "rampart::dead_letter",
                id = %record.id, lease = ?inner.lease, error = %e,
                "the record changed while it was being redriven (its lease ran out and another \
                 redrive took it): this outcome is not recorded"
            );
        }
    })
}
