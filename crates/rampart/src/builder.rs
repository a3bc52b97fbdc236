//! [`ServiceBuilderExt`]: rampart's layers as `ServiceBuilder` methods.

use tower::ServiceBuilder;
#[cfg(any(
    feature = "circuit-breaker",
    feature = "bulkhead",
    feature = "rate-limit",
    feature = "retry",
    feature = "dead-letter",
    feature = "timeout",
    feature = "fallback",
    feature = "idempotency",
    feature = "health",
    feature = "tonic"
))]
use tower::layer::util::Stack;

#[cfg(feature = "bulkhead")]
use rampart_bulkhead::{BulkheadLayer, KeyedBulkheadLayer};
#[cfg(feature = "circuit-breaker")]
use rampart_circuit_breaker::{CircuitBreakerLayer, KeyedCircuitBreakerLayer};
#[cfg(feature = "dead-letter")]
use rampart_dead_letter::DeadLetterLayer;
#[cfg(feature = "fallback")]
use rampart_fallback::FallbackLayer;
#[cfg(feature = "health")]
use rampart_health::SuccessRateLayer;
#[cfg(feature = "idempotency")]
use rampart_idempotency::{IdempotencyKeyLayer, IdempotencyLayer};
#[cfg(feature = "retry")]
use rampart_retry::RetryLayer;
#[cfg(feature = "timeout")]
use rampart_timeout::TimeoutLayer;

mod sealed {
    pub trait Sealed<L> {}
    impl<L> Sealed<L> for tower::ServiceBuilder<L> {}
}

/// Adds rampart's layers to [`tower::ServiceBuilder`] as named methods, the way tower-http's
/// `ServiceBuilderExt` does, so a stack reads as a list of policies.
///
/// Each method is `.layer(…)` with a name: the order of calls is the order of layers, the first
/// being the outermost.
///
/// This trait is sealed: it is implemented for `ServiceBuilder` only.
///
/// A breaker outside a bulkhead (the recommended order) must not count the bulkhead's
/// rejections, which are the caller's own overload, as the dependency's failures: give it
/// `.ignore_rejections()`. Here the bulkhead is full (one call at a time, no waiting) and
/// rejects 20 calls in a row, and the breaker stays closed:
///
/// ```
/// use rampart::{
///     ServiceBuilderExt, bulkhead::BulkheadLayer,
///     circuit_breaker::{CircuitBreakerLayer, State},
/// };
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let breaker = CircuitBreakerLayer::builder()
///     .name("billing")
///     .consecutive_failures(3)
///     .layer()
///     .unwrap()
///     .ignore_rejections(); // a full bulkhead is not the dependency failing
/// let breaker_state = breaker.handle();
/// let bulkhead = BulkheadLayer::builder().name("billing").max_concurrent(1).layer().unwrap();
/// let mut svc = ServiceBuilder::new()
///     .circuit_breaker(breaker) // outermost
///     .bulkhead(bulkhead)
///     .service(service_fn(|req: u32| async move {
///         if req == 0 { std::future::pending::<()>().await }
///         Ok::<_, std::io::Error>(req)
///     }));
///
/// let busy = svc.ready().await.unwrap().call(0); // holds the one permit
/// # let busy = tokio::spawn(busy);
/// # tokio::task::yield_now().await;
/// for _ in 0..20 {
///     assert!(svc.ready().await.unwrap().call(1).await.is_err()); // bulkhead full
/// }
/// assert_eq!(breaker_state.state(), State::Closed);
/// # busy.abort();
/// # }
/// ```
///
/// [`circuit_breaker`](Self::circuit_breaker) does not add `.ignore_rejections()` itself: it
/// changes the breaker's classifier to one that reads rampart's rejection type
/// (`PolicyError`), which only a breaker over a rampart layer sees; the type of any other
/// stack would no longer fit.
pub trait ServiceBuilderExt<L>: sealed::Sealed<L> + Sized {
    /// Adds a circuit breaker. Every service built from this builder, and every clone of them,
    /// shares the layer's one breaker.
    #[cfg(feature = "circuit-breaker")]
    fn circuit_breaker<C>(
        self,
        layer: CircuitBreakerLayer<C>,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<C>, L>>;

    /// Adds one circuit breaker per key (per host, tenant, route, …), from a
    /// [`KeyedCircuitBreakerLayer`].
    #[cfg(feature = "circuit-breaker")]
    fn keyed_circuit_breaker<X, K, C>(
        self,
        layer: KeyedCircuitBreakerLayer<X, K, C>,
    ) -> ServiceBuilder<Stack<KeyedCircuitBreakerLayer<X, K, C>, L>>;

    /// Adds a bulkhead. Every service built from this builder, and every clone of them, shares
    /// the layer's one set of permits.
    #[cfg(feature = "bulkhead")]
    fn bulkhead<P, H>(
        self,
        layer: BulkheadLayer<P, H>,
    ) -> ServiceBuilder<Stack<BulkheadLayer<P, H>, L>>;

    /// Adds one bulkhead partition per key (per tenant, per host, …), from a
    /// [`KeyedBulkheadLayer`].
    #[cfg(feature = "bulkhead")]
    fn keyed_bulkhead<X, K, P, H>(
        self,
        layer: KeyedBulkheadLayer<X, K, P, H>,
    ) -> ServiceBuilder<Stack<KeyedBulkheadLayer<X, K, P, H>, L>>;

    /// Limits the rate of calls ([`RateLimitLayer`](rampart_rate_limit::RateLimitLayer)): every
    /// service built from this builder shares the layer's limit. (Named `rate_limits`, not
    /// `rate_limit`: tower's `ServiceBuilder::rate_limit` builds tower's own, per-service one.)
    #[cfg(feature = "rate-limit")]
    fn rate_limits<RL, RC>(
        self,
        layer: rampart_rate_limit::RateLimitLayer<RL, RC>,
    ) -> ServiceBuilder<Stack<rampart_rate_limit::RateLimitLayer<RL, RC>, L>>;

    /// Retries failed calls ([`RetryLayer`]): put it outside the circuit breaker, so that each
    /// attempt is judged and an open breaker fails attempts fast. (Named `retries`, not
    /// `retry`: tower's `ServiceBuilder::retry` takes a tower retry policy.)
    #[cfg(feature = "retry")]
    fn retries<C, H, R, A>(
        self,
        layer: RetryLayer<C, H, R, A>,
    ) -> ServiceBuilder<Stack<RetryLayer<C, H, R, A>, L>>;

    /// Parks every request that finally fails in a dead-letter store. Call it first (outermost)
    /// in a client stack, inside the idempotency-key layer and outside the retries: see
    /// [`crate::dead_letter`].
    #[cfg(feature = "dead-letter")]
    fn dead_letter<M>(
        self,
        layer: DeadLetterLayer<M>,
    ) -> ServiceBuilder<Stack<DeadLetterLayer<M>, L>>;

    /// Times calls out by operation class. Outside the retries it is the total deadline (the
    /// retries keep to it); inside them, a per-attempt timeout. See [`crate::timeout`].
    #[cfg(feature = "timeout")]
    fn timeouts(self, layer: TimeoutLayer) -> ServiceBuilder<Stack<TimeoutLayer, L>>;

    /// Answers failures from the last good response, a static response or a function. Put it
    /// outside the layers whose failures it stands in for. See [`crate::fallback`].
    #[cfg(feature = "fallback")]
    fn fallback<K>(self, layer: FallbackLayer<K>) -> ServiceBuilder<Stack<FallbackLayer<K>, L>>;

    /// Server side: runs each keyed request once and replays its response to retries. See
    /// [`crate::idempotency`].
    #[cfg(feature = "idempotency")]
    fn idempotency(self, layer: IdempotencyLayer) -> ServiceBuilder<Stack<IdempotencyLayer, L>>;

    /// Client side: one `Idempotency-Key` per logical request ([`IdempotencyKeyLayer`]). Call
    /// it first (outermost) in a client stack, outside the dead letters and the retries, so
    /// that every attempt and every redrive of a request carries its one key. The other half
    /// of [`idempotency`](Self::idempotency).
    ///
    /// ```
    /// use rampart::{ServiceBuilderExt, idempotency::IdempotencyKeyLayer};
    /// use tower::{ServiceBuilder, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let svc = ServiceBuilder::new()
    ///     .idempotency_keys(IdempotencyKeyLayer::new())
    ///     .service(service_fn(|req: http::Request<()>| async move {
    ///         Ok::<_, std::convert::Infallible>(req.headers().contains_key("idempotency-key"))
    ///     }));
    /// let post = http::Request::post("/orders").body(()).unwrap();
    /// assert!(svc.oneshot(post).await.unwrap());
    /// # }
    /// ```
    #[cfg(feature = "idempotency")]
    fn idempotency_keys<M>(
        self,
        layer: IdempotencyKeyLayer<M>,
    ) -> ServiceBuilder<Stack<IdempotencyKeyLayer<M>, L>>;

    /// Feeds a health [`SuccessRate`](rampart_health::SuccessRate) window with every call's
    /// outcome (a `5xx` or an error is a failure by default). See [`crate::health`].
    #[cfg(feature = "health")]
    fn success_rate<C>(
        self,
        layer: SuccessRateLayer<C>,
    ) -> ServiceBuilder<Stack<SuccessRateLayer<C>, L>>;

    /// Turns rampart rejections from the layers added after this one into `tonic::Status`es
    /// (`UNAVAILABLE` with `grpc-retry-pushback-ms` for an open circuit, `RESOURCE_EXHAUSTED`
    /// for a full bulkhead), so tonic clients and
    /// servers report them as such instead of `UNKNOWN`. Call it before (outside) the
    /// rampart layers. See [`crate::tonic`].
    #[cfg(feature = "tonic")]
    fn rejections_as_status(self) -> ServiceBuilder<Stack<crate::tonic::MapRejectionLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "rate-limit")]
    fn rate_limits<RL, RC>(
        self,
        layer: rampart_rate_limit::RateLimitLayer<RL, RC>,
    ) -> ServiceBuilder<Stack<rampart_rate_limit::RateLimitLayer<RL, RC>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "circuit-breaker")]
    fn circuit_breaker<C>(
        self,
        layer: CircuitBreakerLayer<C>,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<C>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "circuit-breaker")]
    fn keyed_circuit_breaker<X, K, C>(
        self,
        layer: KeyedCircuitBreakerLayer<X, K, C>,
    ) -> ServiceBuilder<Stack<KeyedCircuitBreakerLayer<X, K, C>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "bulkhead")]
    fn bulkhead<P, H>(
        self,
        layer: BulkheadLayer<P, H>,
    ) -> ServiceBuilder<Stack<BulkheadLayer<P, H>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "bulkhead")]
    fn keyed_bulkhead<X, K, P, H>(
        self,
        layer: KeyedBulkheadLayer<X, K, P, H>,
    ) -> ServiceBuilder<Stack<KeyedBulkheadLayer<X, K, P, H>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "retry")]
    fn retries<C, H, R, A>(
        self,
        layer: RetryLayer<C, H, R, A>,
    ) -> ServiceBuilder<Stack<RetryLayer<C, H, R, A>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "dead-letter")]
    fn dead_letter<M>(
        self,
        layer: DeadLetterLayer<M>,
    ) -> ServiceBuilder<Stack<DeadLetterLayer<M>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "timeout")]
    fn timeouts(self, layer: TimeoutLayer) -> ServiceBuilder<Stack<TimeoutLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "fallback")]
    fn fallback<K>(self, layer: FallbackLayer<K>) -> ServiceBuilder<Stack<FallbackLayer<K>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "idempotency")]
    fn idempotency(self, layer: IdempotencyLayer) -> ServiceBuilder<Stack<IdempotencyLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "idempotency")]
    fn idempotency_keys<M>(
        self,
        layer: IdempotencyKeyLayer<M>,
    ) -> ServiceBuilder<Stack<IdempotencyKeyLayer<M>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "health")]
    fn success_rate<C>(
        self,
        layer: SuccessRateLayer<C>,
    ) -> ServiceBuilder<Stack<SuccessRateLayer<C>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "tonic")]
    fn rejections_as_status(self) -> ServiceBuilder<Stack<crate::tonic::MapRejectionLayer, L>> {
        self.layer(crate::tonic::MapRejectionLayer::new())
    }
}
