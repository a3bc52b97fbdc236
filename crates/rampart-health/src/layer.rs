//! [`SuccessRateLayer`]: feeds a [`SuccessRate`] from a service's results.

use http::Response;
use rampart_core::classify::{Classify, Outcome, Record};
use tower_layer::Layer;

use crate::{service::SuccessRateService, success_rate::SuccessRate};

/// Records every call of the wrapped service in a [`SuccessRate`]: by default an error or an
/// HTTP response with a `5xx` status is a failure, and any other response a success
/// ([`ServerErrors`]). Any rampart-core [`Classify`] can take its place
/// ([`classifier`](Self::classifier)): `GrpcClassifier` for gRPC (the outcome is then recorded
/// when the response stream ends), `HttpClassifier` to also count `408`/`429` as failures and
/// ignore other `4xx`. Ignored outcomes and calls dropped before they finish count neither way.
///
/// The layer adds no failure of its own: responses and errors pass through untouched. Its
/// state is the tracker, shared by every service the layer makes.
///
/// ```
/// use axum::{Router, routing::get};
/// use rampart_health::{HealthRegistry, SuccessRate, SuccessRateLayer};
///
/// let rate = SuccessRate::new();
/// let registry = HealthRegistry::new();
/// registry.success_rate("http", rate.clone());
///
/// let app: Router = Router::new()
///     .route("/orders", get(|| async { "[]" }))
///     .layer(SuccessRateLayer::new(rate))
///     // after the layer, so the health routes are not counted:
///     .merge(registry.router());
/// # let _ = app;
/// ```
#[derive(Debug, Clone)]
pub struct SuccessRateLayer<C = ServerErrors> {
    rate: SuccessRate,
    classifier: C,
}

impl SuccessRateLayer {
    /// A layer recording into `rate`, judging with [`ServerErrors`].
    pub fn new(rate: SuccessRate) -> Self {
        Self {
            rate,
            classifier: ServerErrors,
        }
    }
}

impl<C> SuccessRateLayer<C> {
    /// Judges calls with `classifier` instead.
    pub fn classifier<C2>(self, classifier: C2) -> SuccessRateLayer<C2> {
        SuccessRateLayer {
            rate: self.rate,
            classifier,
        }
    }

    /// The tracker calls are recorded in.
    pub fn success_rate(&self) -> &SuccessRate {
        &self.rate
    }
}

impl<S, C: Clone> Layer<S> for SuccessRateLayer<C> {
    type Service = SuccessRateService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        SuccessRateService::new(inner, self.rate.clone(), self.classifier.clone())
    }
}

/// The default classifier of [`SuccessRateLayer`]: a service error or an HTTP response with a
/// `5xx` status is a failure; every other response (`4xx` included: the caller's mistake, not
/// this service's) is a success.
///
/// ```
/// use rampart_core::classify::{Classify, Outcome};
/// use rampart_health::ServerErrors;
///
/// let res = |s: u16| http::Response::builder().status(s).body(()).unwrap();
/// let outcome = |s| ServerErrors.outcome_of(Ok::<_, &()>(&res(s))).unwrap();
/// assert!(outcome(503).is_failure());
/// assert!(outcome(404).is_success());
/// assert!(ServerErrors.outcome_of(Err::<&http::Response<()>, _>(&())).unwrap().is_failure());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerErrors;

impl ServerErrors {
    fn outcome<B, E>(result: Result<&Response<B>, &E>) -> Outcome {
        match result {
            Ok(res) if !res.status().is_server_error() => Outcome::Success,
            Ok(_) | Err(_) => Outcome::TRANSIENT,
        }
    }
}

impl<B: 'static, E: 'static> Classify<Response<B>, E> for ServerErrors {
    type Response<R: Record> = Response<B>;

    fn outcome_of(&self, result: Result<&Response<B>, &E>) -> Option<Outcome> {
        Some(Self::outcome(result))
    }

    fn classify<R: Record>(
        &self,
        result: Result<Response<B>, E>,
        recorder: R,
    ) -> Result<Response<B>, E> {
        recorder.record(Self::outcome(result.as_ref()));
        result
    }

    fn classify_now<R: Record>(
        &self,
        result: Result<Response<B>, E>,
    ) -> Result<(Outcome, Result<Response<B>, E>), Result<Response<B>, E>> {
        Ok((Self::outcome(result.as_ref()), result))
    }
}
