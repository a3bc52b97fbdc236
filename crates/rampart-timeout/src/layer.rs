//! [`TimeoutLayer`], and [`TimeoutConfigBuilder::layer`].

use std::{fmt, sync::Arc, time::Duration};

use rampart_core::error::ConfigError;
use tower_layer::Layer;

use crate::{
    config::{Config, TimeoutConfig, TimeoutConfigBuilder},
    service::Timeout,
};

/// Times calls out by operation class, and carries the deadline inward. See the
/// [crate docs](crate).
///
/// Every clone and every `layer()` call shares one configuration.
#[derive(Clone)]
pub struct TimeoutLayer {
    config: Arc<Config>,
}

impl fmt::Debug for TimeoutLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutLayer")
            .field("classes", &self.config.classes)
            .field("default", &self.config.default.0)
            .finish_non_exhaustive()
    }
}

impl TimeoutLayer {
    /// A builder with the usual classes: `connect` 5 s, `request` 30 s (the default class),
    /// `upload` 120 s, `long_poll` 300 s.
    pub fn builder() -> TimeoutConfigBuilder {
        TimeoutConfigBuilder::new()
    }

    /// A layer with `config`, from [`TimeoutConfigBuilder::build`]: one configuration for
    /// several layers (a client and a server stack, say).
    pub fn from_config(config: TimeoutConfig) -> Self {
        Self { config: config.0 }
    }

    /// One timeout for every request.
    pub fn new(timeout: Duration) -> Result<Self, ConfigError> {
        Self::builder().class("request", timeout).layer()
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::new(inner, self.config.clone())
    }
}

impl TimeoutConfigBuilder {
    /// Checks the configuration (see [`build`](Self::build)) and makes the layer.
    pub fn layer(self) -> Result<TimeoutLayer, ConfigError> {
        self.build().map(TimeoutLayer::from_config)
    }
}
