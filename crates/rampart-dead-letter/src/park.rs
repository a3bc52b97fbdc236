//! [`Parker`]: parking a request that finally failed, outside tower.

use std::{error::Error, fmt, sync::Arc, time::SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};
use rampart_core::body::ReplayBody;

use crate::{
    layer::DeadLetterLayer,
    record::{DeadLetter, DeadLetterId, Failure, ParkReason},
    shared::{Final, Shared, Snapshot},
    store::StoreError,
};

impl<M> DeadLetterLayer<M> {
    /// A [`Parker`] with this layer's configuration and stores, for adapters that are not tower
    /// services. Every clone of the layer and of the parker shares the stores.
    pub fn parker(&self) -> Parker {
        Parker {
            shared: self.shared.clone(),
        }
    }
}

/// Parks final failures the way a [`DeadLetterLayer`] does, outside tower. Made by
/// [`DeadLetterLayer::parker`].
///
/// For adapters that are not tower services (rampart-reqwest's `DeadLetterMiddleware`), so
/// that they park exactly as [`DeadLetterLayer`] does: the same failure kinds
/// (the layer's classifier and [`ParkOn`](crate::ParkOn)), the same record
/// (redaction, body limit, idempotency key, attempts), the same stores with the same fallback
/// to the secondary, and the same errors ([`Parked`](crate::Parked), [`ParkFailed`](crate::ParkFailed)).
///
/// ```
/// use std::{sync::Arc, time::SystemTime};
/// use rampart_dead_letter::{DeadLetterLayer, DeadLetterStore, Failure, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = Arc::new(MemoryStore::bounded(100).unwrap());
/// let parker = DeadLetterLayer::builder("webhooks", store.clone()).build().unwrap().parker();
///
/// // The request came back 503: a failure the layer parks.
/// let status = http::StatusCode::SERVICE_UNAVAILABLE;
/// let kind = parker.status_kind(status).expect("parked");
/// let mut headers = http::HeaderMap::new();
/// headers.insert("idempotency-key", "order-7".parse().unwrap());
/// let record = parker.record(
///     &http::Method::POST,
///     &"http://hooks.example/ping".parse().unwrap(),
///     headers,
///     Some(b"{}"),
///     Failure::from_status(kind, status),
///     3,
///     SystemTime::now(),
/// );
/// let id = parker.park(&record).await.unwrap();
/// let stored = store.get(id).await.unwrap().unwrap();
/// assert_eq!((stored.attempts, stored.idempotency_key.as_deref()), (3, Some("order-7")));
/// # }
/// ```
#[derive(Clone)]
pub struct Parker {
    shared: Arc<Shared>,
}

impl fmt::Debug for Parker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parker")
            .field("service", &self.shared.service)
            .finish_non_exhaustive()
    }
}

impl Parker {
    /// The name of the service every record carries.
    pub fn service(&self) -> &str {
        &self.shared.service
    }

    /// The most body bytes a record keeps.
    pub fn max_body(&self) -> usize {
        self.shared.max_body
    }

    /// The kind of a final response with `status` (and no headers), if the layer parks it (by
    /// its classifier and [`ParkOn`](crate::ParkOn)); `None` for a response to pass on as it is.
    pub fn status_kind(&self, status: StatusCode) -> Option<ParkReason> {
        self.shared.park_response(status, &http::HeaderMap::new())
    }

    /// The kind of a final response with `status` and `headers` (a gRPC answer's status is in
    /// its headers when it is trailers-only), if the layer parks it; `None` also for an answer
    /// whose head defers to its trailers.
    pub fn response_kind(
        &self,
        status: StatusCode,
        headers: &http::HeaderMap,
    ) -> Option<ParkReason> {
        self.shared.park_response(status, headers)
    }

    /// The kind of a final error, if the layer parks it (by
    /// [`error_kind`](crate::error_kind) and [`ParkOn`](crate::ParkOn)); `None` for an
    /// error to pass on as it is.
    pub fn error_kind(&self, err: &(dyn Error + 'static)) -> Option<ParkReason> {
        self.shared.park_error(err)
    }

    /// The record of a request that finally failed: its method, URI and headers (redacted as
    /// configured; the idempotency key read from the configured header), its body, how it
    /// failed, after how many attempts, and when the first attempt started.
    ///
    /// `body` is the whole body if it was held in memory (recorded up to
    /// [`max_body`](Self::max_body), marked truncated beyond), or `None` for a body that was
    /// streamed and is gone (recorded as truncated and empty: such a record cannot be
    /// redriven). `attempts` below 1 counts as 1.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        method: &Method,
        uri: &Uri,
        headers: HeaderMap,
        body: Option<&[u8]>,
        failure: Failure,
        attempts: u32,
        started: SystemTime,
    ) -> DeadLetter {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        parts.method = method.clone();
        parts.uri = uri.clone();
        parts.headers = headers;
        let max = self.shared.max_body;
        let body: ReplayBody<()> = match body {
            Some(b) if b.len() <= max => ReplayBody::Buffered {
                data: Some(Bytes::copy_from_slice(b)),
                trailers: None,
            },
            Some(b) => ReplayBody::Streaming {
                prefix: Some(Bytes::copy_from_slice(&b[..max])),
                rest: (),
            },
            None => ReplayBody::Streaming {
                prefix: None,
                rest: (),
            },
        };
        let snap = Snapshot::of(&mut parts, &body);
        let kind = failure.kind;
        // The layer's record, from a stand-in failure that is replaced at once: the caller
        // already described the failure, from a response or an error the layer never saw.
        let mut record =
            self.shared
                .record::<()>(snap, kind, &Final::Response(http::Response::new(())));
        record.failure = Failure {
            // Texts the caller wrote may quote a URL (a transport error does).
            chain: failure
                .chain
                .iter()
                .map(|c| rampart_core::redact::text(c).into_owned())
                .collect(),
            ..failure
        };
        record.attempts = attempts.max(1);
        if attempts > 1 {
            record.first_failed_at = crate::record::millis::truncate(started);
        }
        record
    }

    /// Parks `record` in the primary store, or in the secondary if the primary fails (logged
    /// at `warn`, counted in `rampart_dead_letter_fallbacks_total`). Every store's error, the
    /// primary's first, if none kept it: then answer with [`ParkFailed::new`](crate::ParkFailed::new), never drop the
    /// failure.
    pub async fn park(&self, record: &DeadLetter) -> Result<DeadLetterId, Vec<StoreError>> {
        self.shared.park(record).await.map(|kept| kept.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_core::error::BoxError;

    use crate::{FailedResponse, MemoryStore, ParkFailed, Parked, store::DeadLetterStore};

    fn parker(store: Arc<MemoryStore>) -> Parker {
        DeadLetterLayer::builder("svc", store)
            .max_body(4)
            .build()
            .unwrap()
            .parker()
    }

    #[tokio::test]
    async fn records_like_the_layer_and_truncates_past_the_limit() {
        let store = Arc::new(MemoryStore::bounded(10).unwrap());
        let p = parker(store.clone());
        assert_eq!(p.status_kind(StatusCode::OK), None);
        assert_eq!(
            p.status_kind(StatusCode::NOT_FOUND),
            None,
            "fatal: not parked"
        );
        let kind = p.status_kind(StatusCode::BAD_GATEWAY).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, "secret".parse().unwrap());
        let uri: Uri = "http://x.example/a".parse().unwrap();
        let whole = p.record(
            &Method::POST,
            &uri,
            headers,
            Some(b"1234"),
            Failure::from_status(kind, StatusCode::BAD_GATEWAY),
            1,
            SystemTime::now(),
        );
        assert!(!whole.target.body.truncated);
        assert_eq!(whole.target.headers[0].value.0, "[redacted]");
        assert_eq!(whole.failure.status, Some(502));
        let long = p.record(
            &Method::POST,
            &uri,
            HeaderMap::new(),
            Some(b"12345"),
            Failure::from_status(kind, StatusCode::BAD_GATEWAY),
            0,
            SystemTime::now(),
        );
        assert!(long.target.body.truncated);
        assert_eq!(long.target.body.data.0, "1234");
        assert_eq!(long.attempts, 1);
        let id = p.park(&long).await.unwrap();
        assert_eq!(store.get(id).await.unwrap().unwrap(), long);
    }

    #[test]
    fn errors_keep_their_source() {
        let io: BoxError = Box::new(std::io::Error::other("reset"));
        let e = Parked::new(DeadLetterId::new(), ParkReason::Transient, io);
        assert!(rampart_core::error::find::<std::io::Error>(&e).is_some());
        let e = ParkFailed::new(
            ParkReason::Transient,
            Box::new(FailedResponse::new(StatusCode::BAD_GATEWAY)),
            Vec::new(),
        );
        assert!(rampart_core::error::find::<FailedResponse>(&e).is_some());
    }
}
