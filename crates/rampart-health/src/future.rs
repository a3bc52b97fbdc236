//! [`ResponseFuture`] and the [`Recorder`] of outcomes known only at the end of a stream.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;
use rampart_core::classify::{Classify, Outcome, Record};

use crate::success_rate::SuccessRate;

pin_project! {
    /// The response future of [`SuccessRateService`](crate::SuccessRateService): the inner
    /// call, recorded when it completes. Dropped before it completes, it records nothing.
    pub struct ResponseFuture<F, C> {
        #[pin]
        inner: F,
        state: Option<(SuccessRate, C)>,
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn new(inner: F, rate: SuccessRate, classifier: C) -> Self {
        Self {
            inner,
            state: Some((rate, classifier)),
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("done", &self.state.is_none())
            .finish_non_exhaustive()
    }
}

impl<F, C, Res, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Res, E>>,
    C: Classify<Res, E>,
{
    type Output = Result<C::Response<Recorder>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let (rate, classifier) = this
            .state
            .take()
            .expect("ResponseFuture polled after completion");
        Poll::Ready(match classifier.classify_now::<Recorder>(result) {
            Ok((outcome, response)) => {
                record(&rate, outcome);
                response
            }
            // Known only when the response stream ends (gRPC trailers).
            Err(result) => classifier.classify(result, Recorder { rate }),
        })
    }
}

fn record(rate: &SuccessRate, outcome: Outcome) {
    match outcome {
        Outcome::Success => rate.record(true),
        Outcome::Failure(_) => rate.record(false),
        Outcome::Ignored => {}
    }
}

/// Records the outcome of a call whose response stream had to end first (a gRPC response
/// with its status in the trailers), carried in that response's body. Dropped without
/// recording (the body was dropped early), it records nothing.
pub struct Recorder {
    rate: SuccessRate,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Record for Recorder {
    fn record(self, outcome: Outcome) {
        record(&self.rate, outcome);
    }
}
