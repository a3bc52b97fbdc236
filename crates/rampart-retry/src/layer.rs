//! [`RetryLayer`].

use std::{fmt, sync::Arc};

use rampart_core::{classify::ResultClassifier, error::ConfigError};
use tower_layer::Layer;

use crate::{
    hints::NoHints,
    policy::{RetryPolicy, RetryPolicyBuilder},
    replay::ByClone,
    service::Retry,
};

/// Retries failed calls by the rules of a [`RetryPolicy`].
///
/// The policy (and its budget) lives behind an `Arc`: every service the layer makes shares it.
/// `C` classifies outcomes (transient failures are retried, fatal ones and successes are not);
/// `H` reads the protocol's hints ([`NoHints`] by default; `HttpHints` for HTTP).
pub struct RetryLayer<C = ResultClassifier, H = NoHints, R = ByClone> {
    policy: Arc<RetryPolicy>,
    classifier: C,
    hints: H,
    replay: R,
}

impl<C: Clone, H: Clone, R: Clone> Clone for RetryLayer<C, H, R> {
    fn clone(&self) -> Self {
        Self {
            policy: self.policy.clone(),
            classifier: self.classifier.clone(),
            hints: self.hints.clone(),
            replay: self.replay.clone(),
        }
    }
}

impl<C, H, R> fmt::Debug for RetryLayer<C, H, R> {
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
            replay: ByClone,
        }
    }

    /// A policy builder; finish it with [`layer`](RetryPolicyBuilder::layer).
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicy::builder()
    }
}

impl<C, H, R> RetryLayer<C, H, R> {
    /// Classifies outcomes with `classifier` (e.g. rampart-core's `HttpClassifier`).
    pub fn classifier<C2>(self, classifier: C2) -> RetryLayer<C2, H, R> {
        RetryLayer {
            policy: self.policy,
            classifier,
            hints: self.hints,
            replay: self.replay,
        }
    }

    /// Reads the protocol's hints with `hints` (e.g. `HttpHints`).
    pub fn hints<H2>(self, hints: H2) -> RetryLayer<C, H2, R> {
        RetryLayer {
            policy: self.policy,
            classifier: self.classifier,
            hints,
            replay: self.replay,
        }
    }

    /// Sends requests again as `replay` says (e.g. `HttpReplay` behind a `BufferBodyLayer`).
    pub fn replay<R2>(self, replay: R2) -> RetryLayer<C, H, R2> {
        RetryLayer {
            policy: self.policy,
            classifier: self.classifier,
            hints: self.hints,
            replay,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

impl<S, C: Clone, H: Clone, R: Clone> Layer<S> for RetryLayer<C, H, R> {
    type Service = Retry<S, C, H, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::from_parts(
            inner,
            self.policy.clone(),
            self.classifier.clone(),
            self.hints.clone(),
            self.replay.clone(),
        )
    }
}

impl RetryPolicyBuilder {
    /// Validates the policy and builds a [`RetryLayer`].
    pub fn layer(self) -> Result<RetryLayer, ConfigError> {
        Ok(RetryLayer::new(self.build()?))
    }
}
