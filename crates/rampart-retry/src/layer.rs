//! [`RetryLayer`].

use std::{fmt, sync::Arc};

use rampart_core::{classify::ResultClassifier, error::ConfigError};
use tower_layer::Layer;

use crate::{
    hook::NoHook,
    policy::{RetryPolicy, RetryPolicyBuilder},
    protocol::PlainProtocol,
    replay::ByClone,
    service::Retry,
};

/// Retries failed calls by the rules of a [`RetryPolicy`].
///
/// The policy (and its budget) lives behind an `Arc`: every service the layer makes shares it.
/// `C` classifies outcomes (transient failures are retried, fatal ones and successes are not);
/// `H` is the protocol's rules for retrying ([`PlainProtocol`] by default; `HttpProtocol` for
/// HTTP).
pub struct RetryLayer<C = ResultClassifier, H = PlainProtocol, R = ByClone, A = NoHook> {
    policy: Arc<RetryPolicy>,
    classifier: C,
    hints: H,
    replay: R,
    hook: A,
}

impl<C: Clone, H: Clone, R: Clone, A: Clone> Clone for RetryLayer<C, H, R, A> {
    fn clone(&self) -> Self {
        Self {
            policy: self.policy.clone(),
            classifier: self.classifier.clone(),
            hints: self.hints.clone(),
            replay: self.replay.clone(),
            hook: self.hook.clone(),
        }
    }
}

impl<C, H, R, A> fmt::Debug for RetryLayer<C, H, R, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl RetryLayer {
    /// A layer retrying by `policy`, counting every `Err` as transient.
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            policy: Arc::new(policy),
            classifier: ResultClassifier,
            hints: PlainProtocol,
            replay: ByClone,
            hook: NoHook,
        }
    }

    /// A policy builder; finish it with [`layer`](RetryPolicyBuilder::layer).
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicy::builder()
    }
}

impl<C, H, R, A> RetryLayer<C, H, R, A> {
    /// Classifies outcomes with `classifier` (e.g. rampart-core's `HttpClassifier`).
    pub fn classifier<C2>(self, classifier: C2) -> RetryLayer<C2, H, R, A> {
        RetryLayer {
            policy: self.policy,
            classifier,
            hints: self.hints,
            replay: self.replay,
            hook: self.hook,
        }
    }

    /// Follows `protocol`'s rules on what may be replayed and what the server asked (e.g.
    /// `HttpProtocol`).
    pub fn protocol<H2>(self, protocol: H2) -> RetryLayer<C, H2, R, A> {
        RetryLayer {
            policy: self.policy,
            classifier: self.classifier,
            hints: protocol,
            replay: self.replay,
            hook: self.hook,
        }
    }

    /// Sends requests again as `replay` says (e.g. `HttpReplay` behind a `BufferBodyLayer`).
    pub fn replay<R2>(self, replay: R2) -> RetryLayer<C, H, R2, A> {
        RetryLayer {
            policy: self.policy,
            classifier: self.classifier,
            hints: self.hints,
            replay,
            hook: self.hook,
        }
    }

    /// Calls `hook` on each attempt's request just before it is sent (see [`OnAttempt`]).
    ///
    /// [`OnAttempt`]: crate::hook::OnAttempt
    pub fn on_attempt<A2>(self, hook: A2) -> RetryLayer<C, H, R, A2> {
        RetryLayer {
            policy: self.policy,
            classifier: self.classifier,
            hints: self.hints,
            replay: self.replay,
            hook,
        }
    }

    /// For a rampart layer directly inside the retries (a rate limit, a budget, a breaker, a
    /// bulkhead): its rejection is retried after the wait it names, as a server's
    /// `Retry-After` is: a limit over its rate waits until it has room, an open circuit until
    /// it probes again; a call that can never fit (costing more than the whole burst or
    /// budget) is not retried. Wraps the classifier in core's
    /// [`RetryRejections`](rampart_core::classify::RetryRejections) and the protocol in
    /// [`HonourRejections`](crate::protocol::HonourRejections); the inner layer's error must
    /// be its `PolicyError` (a stack where it is not fails to compile).
    ///
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicU32, Ordering}};
    /// use std::time::Duration;
    /// use rampart_core::error::PolicyError;
    /// use rampart_core::rejection::{LimitInfo, LimitReason, LimitedBy, RateLimited};
    /// use rampart_retry::{RetryLayer, policy::RetryPolicy};
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// // What a rate limit inside answers: the first call refused, room again in 2 s.
    /// let calls = Arc::new(AtomicU32::new(0));
    /// let limited = service_fn(move |n: u32| {
    ///     let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
    ///     async move {
    ///         if first {
    ///             let info = LimitInfo { quota: 1, window: Duration::from_secs(2), remaining: 0, reset: Duration::from_secs(2) };
    ///             let over = RateLimited::new(LimitedBy::Rate, LimitReason::OverLimit, 1, Some(Duration::from_secs(2)), info);
    ///             return Err(PolicyError::<_, std::io::Error>::Rejected(over));
    ///         }
    ///         Ok(n)
    ///     }
    /// });
    /// let policy = RetryPolicy::builder().max_attempts(3).build().unwrap();
    /// let svc = RetryLayer::new(policy).honour_rejections().layer(limited);
    /// let start = tokio::time::Instant::now();
    /// assert_eq!(svc.oneshot(7).await.unwrap(), 7);
    /// assert!(start.elapsed() >= Duration::from_secs(2), "waited for the limit's room");
    /// # }
    /// ```
    pub fn honour_rejections(
        self,
    ) -> RetryLayer<
        rampart_core::classify::RetryRejections<C>,
        crate::protocol::HonourRejections<H>,
        R,
        A,
    > {
        RetryLayer {
            policy: self.policy,
            classifier: rampart_core::classify::RetryRejections(self.classifier),
            hints: crate::protocol::HonourRejections(self.hints),
            replay: self.replay,
            hook: self.hook,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

impl<S: Clone, C: Clone, H: Clone, R: Clone, A: Clone> Layer<S> for RetryLayer<C, H, R, A> {
    type Service = Retry<S, C, H, R, A>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::from_parts(
            inner,
            self.policy.clone(),
            self.classifier.clone(),
            self.hints.clone(),
            self.replay.clone(),
            self.hook.clone(),
        )
    }
}

impl RetryPolicyBuilder {
    /// Validates the policy and builds a [`RetryLayer`].
    pub fn layer(self) -> Result<RetryLayer, ConfigError> {
        Ok(RetryLayer::new(self.build()?))
    }
}

/// The HTTP retry stack, outermost first: [`BufferBodyLayer`] (bodies up to 64 KiB held for
/// replay), then the [`RetryLayer`] with [`http_retry_classifier`], [`HttpProtocol`] and
/// [`HttpReplay`]. The inner service takes `http::Request<ReplayBody<B>>`.
///
/// No idempotency keys: they are set once per logical request, outside everything that may
/// repeat it (a dead-letter layer and its redrives included), by rampart-idempotency's
/// `IdempotencyKeyLayer` — outermost in the
/// [recommended client stack](https://github.com/rampart-rs/rampart#the-recommended-client-stack).
///
/// [`BufferBodyLayer`]: crate::replay::BufferBodyLayer
/// [`http_retry_classifier`]: crate::protocol::http_retry_classifier
/// [`HttpProtocol`]: crate::protocol::HttpProtocol
/// [`HttpReplay`]: crate::replay::HttpReplay
#[cfg(feature = "http")]
pub type HttpRetryLayer = tower::layer::util::Stack<
    RetryLayer<
        rampart_core::classify::HttpClassifier,
        crate::protocol::HttpProtocol,
        crate::replay::HttpReplay,
    >,
    crate::replay::BufferBodyLayer,
>;

#[cfg(feature = "http")]
impl RetryPolicyBuilder {
    /// Validates the policy and builds the [`HttpRetryLayer`] stack: body buffering, then the
    /// retries.
    ///
    /// ```
    /// use rampart_retry::RetryLayer;
    ///
    /// let client_stack = RetryLayer::builder().max_attempts(4).http_layer()?;
    /// # let _ = client_stack;
    /// # Ok::<(), rampart_core::error::ConfigError>(())
    /// ```
    pub fn http_layer(self) -> Result<HttpRetryLayer, ConfigError> {
        self.http_layer_with(crate::replay::BufferBodyLayer::default())
    }

    /// Like [`http_layer`](Self::http_layer), with your buffering layer.
    pub fn http_layer_with(
        self,
        buffer: crate::replay::BufferBodyLayer,
    ) -> Result<HttpRetryLayer, ConfigError> {
        let retry = self
            .layer()?
            .classifier(crate::protocol::http_retry_classifier())
            .protocol(crate::protocol::HttpProtocol::default())
            .replay(crate::replay::HttpReplay);
        Ok(tower::layer::util::Stack::new(retry, buffer))
    }
}
