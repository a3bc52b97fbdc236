//! [`DeadLetterBody`]: the response body of a [`DeadLetterService`](crate::DeadLetterService),
//! which sees a gRPC failure that only its trailers report.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::StatusCode;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::{
    record::{Failure, ParkReason},
    shared::{Final, Shared, Snapshot},
};

pin_project! {
    /// The response body of a [`DeadLetterService`](crate::DeadLetterService): the inner body,
    /// watched for a gRPC failure in its trailers.
    ///
    /// A gRPC server that has sent messages reports a failure in the trailers, after the head
    /// (`200`, no `grpc-status`) is on its way to the caller. The layer cannot answer differently
    /// by then, but it can still keep the request: when such a response's trailers carry a failing
    /// `grpc-status` (or the body ends without one, or fails mid-stream), the request is parked in
    /// the background. The frames reach the caller unchanged.
    ///
    /// Trade-offs: the record is written after the caller has its answer, so a store failure
    /// cannot be reported to it (it is logged at `error`, counted in
    /// `rampart_dead_letter_park_failures_total` and in the layer's
    /// [`WriteFailures`](crate::WriteFailures)); it needs a tokio runtime (without one, it is
    /// logged and not parked); a caller that drops the body before its end parks nothing (it gave
    /// up on the answer). Only answers whose head the layer's classifier defers to the trailers
    /// are watched (with the default [`DeadLetterClassifier`](crate::DeadLetterClassifier):
    /// gRPC answers with no `grpc-status` in their head); every other body passes through with no
    /// work.
    pub struct DeadLetterBody<B> {
        #[pin]
        inner: B,
        watch: Option<Box<Watch>>,
    }
}

/// What a watched body needs to park its request.
pub(crate) struct Watch {
    pub(crate) shared: Arc<Shared>,
    pub(crate) snap: Snapshot,
}

impl<B> DeadLetterBody<B> {
    /// `inner`, passed through.
    pub(crate) fn plain(inner: B) -> Self {
        Self { inner, watch: None }
    }

    /// `inner`, watched.
    pub(crate) fn watched(inner: B, watch: Watch) -> Self {
        Self {
            inner,
            watch: Some(Box::new(watch)),
        }
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The inner body, unwatched from now on.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Default> Default for DeadLetterBody<B> {
    fn default() -> Self {
        Self::plain(B::default())
    }
}

impl<B> std::fmt::Debug for DeadLetterBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterBody")
            .field("watched", &self.watch.is_some())
            .finish_non_exhaustive()
    }
}

impl<B> Body for DeadLetterBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(watch) = this.watch.as_ref() {
            let classifier = &*watch.shared.classifier;
            let failure = match &frame {
                Some(Ok(f)) => f
                    .trailers_ref()
                    .map(|t| crate::kind::trailers_failure(classifier, StatusCode::OK, Some(t))),
                Some(Err(e)) => Some(Some(Failure {
                    kind: ParkReason::Transient,
                    status: Some(200),
                    chain: vec![
                        rampart_core::redact::text(&format!("the gRPC response body failed: {e}"))
                            .into_owned(),
                    ],
                })),
                None => Some(crate::kind::trailers_failure(
                    classifier,
                    StatusCode::OK,
                    None,
                )),
            };
            // The end of the stream (trailers, an error, or the end): judged once.
            if let Some(failure) = failure
                && let Some(watch) = this.watch.take()
                && let Some(failure) = failure
            {
                park_late(*watch, failure);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Parks the request of a watched body whose trailers reported `failure`, in the background.
fn park_late(watch: Watch, failure: Failure) {
    let Watch { shared, snap } = watch;
    if !shared.parks(failure.kind) {
        return;
    }
    let kind = failure.kind;
    let mut record = shared.record::<()>(snap, kind, &Final::Response(http::Response::new(())));
    record.failure = failure;
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(async move {
                // Logged, counted and noted in the write failures by `park` itself.
                let _ = shared.park(&record).await;
            });
        }
        Err(_) => tracing::error!(
            target: "rampart::dead_letter", id = %record.id, kind = %kind,
            "a gRPC failure reported in the trailers could not be parked: no tokio runtime"
        ),
    }
}
