//! [`RetryLayer`].

use std::{fmt, sync::Arc};

use rampart_core::{classify::ResultClassifier, error::ConfigError};
use tower_layer::Layer;

use crate::{
    hints::NoHints,
    policy::{RetryPolicy, RetryPolicyBuilder},
    service::Retry,
};

/// Retries failed calls by the rules of a [`RetryPolicy`].
///
/// The policy (and its budget) lives behind an `Arc`: every service the layer makes shares it.
/// `C` classifies outcomes (transient failures are retried, fatal ones and successes are not);
/// `H` reads the protocol's hints ([`NoHints`] by default; `HttpHints` for HTTP).
pub struct RetryLayer<C = ResultClassifier, H = NoHints> {
    policy: Arc<RetryPolicy>,
    classifier: C,
    hints: H,
}

impl<C: Clone, H: Clone> Clone for RetryLayer<C, H> {
    fn clone(&self) -> Self {
        Self {
            policy: self.policy.clone(),
            classifier: self.classifier.clone(),
            hints: self.hints.clone(),
        }
    }
}

impl<C, H> fmt::Debug for RetryLayer<C, H> {
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
            hints: NoHints,
        }
    }

    /// A policy builder; finish it with [`layer`](RetryPolicyBuilder::layer).
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicy::builder()
    }
}

impl<C, H> RetryLayer<C, H> {
    /// Classifies outcomes with `classifier` (e.g. rampart-core's `HttpClassifier`).
    pub fn classifier<C2>(self, classifier: C2) -> RetryLayer<C2, H> {
        RetryLayer {
            policy: self.policy,
            classifier,
            hints: self.hints,
        }
    }

    /// Reads the protocol's hints with `hints` (e.g. `HttpHints`).
    pub fn hints<H2>(self, hints: H2) -> RetryLayer<C, H2> {
        RetryLayer {
            policy: self.policy,
            classifier: self.classifier,
            hints,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

impl<S, C: Clone, H: Clone> Layer<S> for RetryLayer<C, H> {
    type Service = Retry<S, C, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::from_parts(
            inner,
            self.policy.clone(),
            self.classifier.clone(),
            self.hints.clone(),
        )
    }
}

impl RetryPolicyBuilder {
    /// Validates the policy and builds a [`RetryLayer`].
    pub fn layer(self) -> Result<RetryLayer, ConfigError> {
        Ok(RetryLayer::new(self.build()?))
    }
}
