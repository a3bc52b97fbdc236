//! [`SuccessRateService`].

use std::task::{Context, Poll};

use rampart_core::classify::Classify;
use tower_service::Service;

use crate::{
    future::{Recorder, ResponseFuture},
    success_rate::SuccessRate,
};

/// A service that records each call's outcome in a [`SuccessRate`]; made by
/// [`SuccessRateLayer`](crate::SuccessRateLayer).
#[derive(Debug, Clone)]
pub struct SuccessRateService<S, C> {
    inner: S,
    rate: SuccessRate,
    classifier: C,
}

impl<S, C> SuccessRateService<S, C> {
    pub(crate) fn new(inner: S, rate: SuccessRate, classifier: C) -> Self {
        Self {
            inner,
            rate,
            classifier,
        }
    }

    rampart_core::inner_service_accessors!();
}

impl<S, C, Req> Service<Req> for SuccessRateService<S, C>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error>,
{
    type Response = C::Response<Recorder>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        ResponseFuture::new(
            self.inner.call(req),
            self.rate.clone(),
            self.classifier.clone(),
        )
    }
}
