//! The recommended client stack, as the demo and the end-to-end chaos test build it.
//!
//! The layers, outermost first, and why each sits where it does: the README's [recommended
//! client stack](https://github.com/rampart-rs/rampart#the-recommended-client-stack) table, the one copy.
//!
//! Swap the breaker and the retry, and one logical request counts once however many attempts
//! failed, and an open breaker's rejection is retried at once; put the dead-letter layer
//! inside the retries, and every failed attempt is parked.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rampart::{
    ServiceBuilderExt,
    bulkhead::{BulkheadHandle, BulkheadLayer},
    circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer, Transition},
    core::{body::ReplayBody, classify::HttpClassifier, error::BoxError},
    dead_letter::{DeadLetterLayer, DeadLetterStore},
    idempotency::IdempotencyKeyLayer,
    retry::{
        RetryLayer,
        backoff::{Backoff, Delays, Jitter},
        protocol::{HttpProtocol, http_retry_classifier},
        replay::HttpReplay,
    },
    timeout::TimeoutLayer,
};
use tower::{Service, ServiceBuilder};

/// The transport: hyper-util's client, sending the dead-letter layer's buffered bodies.
pub type Transport = Client<HttpConnector, ReplayBody<Full<Bytes>>>;

/// Settings of the stack.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// The whole call's deadline.
    pub total_timeout: Duration,
    /// One attempt's timeout.
    pub attempt_timeout: Duration,
    /// Calls in flight at most.
    pub max_concurrent: u32,
    /// How long a call may wait for a permit.
    pub max_wait: Duration,
    /// How long the breaker stays open (it grows if it reopens).
    pub open_duration: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            total_timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(2),
            max_concurrent: 32,
            max_wait: Duration::from_millis(200),
            open_duration: Duration::from_millis(500),
        }
    }
}

/// The body of the stack's answers: hyper's, through the dead-letter layer (which watches a
/// gRPC answer's trailers).
pub type Answer = rampart::dead_letter::DeadLetterBody<Incoming>;

/// What the stack is: a cloneable HTTP client service with `BoxError` errors.
pub trait HttpClient:
    Service<Request<Full<Bytes>>, Response = Response<Answer>, Error = BoxError, Future: Send>
    + Clone
    + Send
    + 'static
{
}

impl<S> HttpClient for S where
    S: Service<Request<Full<Bytes>>, Response = Response<Answer>, Error = BoxError, Future: Send>
        + Clone
        + Send
        + 'static
{
}

/// The handles of the stack's stateful layers.
#[derive(Debug, Clone)]
pub struct Handles {
    /// The breaker's state and stats.
    pub breaker: CircuitBreakerHandle,
    /// The bulkhead's stats.
    pub bulkhead: BulkheadHandle,
}

/// The stack's breaker: a 2 s time window, 50 % failures over at least 20 calls, 3 probes.
pub(crate) fn breaker(
    settings: &Settings,
    on_transition: impl Fn(&Transition) + Send + Sync + 'static,
) -> Result<CircuitBreakerLayer, BoxError> {
    Ok(CircuitBreakerLayer::builder()
        .name("upstream")
        .time_window(Duration::from_secs(2), 10)
        .failure_rate_threshold(50.0)
        .minimum_calls(20)
        .open_duration(settings.open_duration)
        .half_open_max_probes(3)
        .on_transition(on_transition)
        .layer()?)
}

/// The stack's bulkhead.
pub(crate) fn bulkhead(settings: &Settings) -> Result<BulkheadLayer, BoxError> {
    Ok(BulkheadLayer::builder()
        .name("upstream")
        .max_concurrent(settings.max_concurrent)
        .max_wait(settings.max_wait)
        .layer()?)
}

/// The stack's retry policy: exponential backoff from 20 ms to 400 ms with full jitter, a
/// server's wait honoured up to 2 s.
pub(crate) fn retry(settings: &Settings) -> Result<RetryLayer, BoxError> {
    Ok(RetryLayer::builder()
        .max_attempts(settings.max_attempts)
        .backoff(
            Backoff::builder()
                .delays(Delays::Exponential {
                    base: Duration::from_millis(20),
                    factor: 2.0,
                })
                .max_delay(Duration::from_millis(400))
                .jitter(Jitter::Full)
                .build()?,
        )
        .max_server_delay(Duration::from_secs(2))
        .layer()?)
}

/// Builds the recommended client stack over a fresh hyper client, parking in `store`.
/// `on_transition` sees every breaker transition.
pub fn client(
    store: Arc<dyn DeadLetterStore>,
    settings: &Settings,
    on_transition: impl Fn(&Transition) + Send + Sync + 'static,
) -> Result<(impl HttpClient, Handles), BoxError> {
    let transport: Transport = Client::builder(TokioExecutor::new()).build_http();
    let breaker = breaker(settings, on_transition)?
        .classifier(HttpClassifier::default())
        .ignore_rejections();
    let bulkhead = bulkhead(settings)?;
    let handles = Handles {
        breaker: breaker.handle(),
        bulkhead: bulkhead.handle(),
    };
    let retry = retry(settings)?
        .classifier(http_retry_classifier())
        .protocol(HttpProtocol::default())
        .replay(HttpReplay);
    let svc = ServiceBuilder::new()
        .idempotency_keys(IdempotencyKeyLayer::new())
        .dead_letter(DeadLetterLayer::builder("orders-client", store).build()?)
        .timeouts(TimeoutLayer::new(settings.total_timeout)?)
        .retries(retry)
        .circuit_breaker(breaker)
        .bulkhead(bulkhead)
        .timeouts(TimeoutLayer::new(settings.attempt_timeout)?)
        .service(transport);
    Ok((svc, handles))
}
