//! A timeout layer's configuration: [`TimeoutConfigBuilder`] and the checked
//! [`TimeoutConfig`].

use std::{fmt, sync::Arc, time::Duration};

use rampart_core::error::ConfigError;

use crate::class::{ClassifyOperation, default_classify};

/// A checked timeout configuration, from [`TimeoutConfigBuilder::build`]; cheap to clone (one
/// shared allocation), so several layers can share it.
#[derive(Clone)]
pub struct TimeoutConfig(pub(crate) Arc<Config>);

impl fmt::Debug for TimeoutConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutConfig")
            .field("classes", &self.0.classes)
            .field("default", &self.0.default.0)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Config {
    /// The `name` label of the layer's metrics.
    pub(crate) name: &'static str,
    /// Sorted by name, for a binary search; a handful of classes.
    pub(crate) classes: Vec<(&'static str, Duration)>,
    pub(crate) default: (&'static str, Duration),
    pub(crate) classify: Box<dyn ClassifyOperation>,
    pub(crate) send_grpc_timeout: bool,
    pub(crate) honour_grpc_timeout: bool,
}

impl Config {
    /// The class and timeout for a class name.
    pub(crate) fn lookup(&self, class: &'static str) -> (&'static str, Duration) {
        match self.classes.binary_search_by(|(n, _)| n.cmp(&class)) {
            Ok(i) => self.classes[i],
            Err(_) => self.default,
        }
    }
}

/// Configures a [`TimeoutLayer`](crate::TimeoutLayer): from
/// [`TimeoutLayer::builder`](crate::TimeoutLayer::builder); [`build`](Self::build) checks it and
/// returns a [`TimeoutConfig`], [`layer`](Self::layer) the layer.
pub struct TimeoutConfigBuilder {
    name: &'static str,
    classes: Vec<(&'static str, Duration)>,
    default: &'static str,
    classify: Box<dyn ClassifyOperation>,
    send_grpc_timeout: bool,
    honour_grpc_timeout: bool,
}

impl fmt::Debug for TimeoutConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutConfigBuilder")
            .field("classes", &self.classes)
            .field("default", &self.default)
            .finish_non_exhaustive()
    }
}

/// The longest timeout a class may have: one day.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);

impl TimeoutConfigBuilder {
    /// The usual classes: `connect` 5 s, `request` 30 s (the default class),
    /// `upload` 120 s, `long_poll` 300 s.
    pub(crate) fn new() -> Self {
        Self {
            name: "default",
            classes: vec![
                ("connect", Duration::from_secs(5)),
                ("request", Duration::from_secs(30)),
                ("upload", Duration::from_secs(120)),
                ("long_poll", Duration::from_secs(300)),
            ],
            default: "request",
            classify: Box::new(default_classify),
            send_grpc_timeout: false,
            honour_grpc_timeout: true,
        }
    }

    /// The name in tracing events and the `name` label of the layer's metrics (default
    /// `"default"`); a `&'static str`, as the class names are, so that a timeout costs no
    /// allocation.
    pub fn name(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    /// Sets (or adds) class `name`'s timeout.
    pub fn class(mut self, name: &'static str, timeout: Duration) -> Self {
        match self.classes.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = timeout,
            None => self.classes.push((name, timeout)),
        }
        self
    }

    /// The class of requests the classifier names no known class for (`request` by default).
    pub fn default_class(mut self, name: &'static str) -> Self {
        self.default = name;
        self
    }

    /// Names each request's class (by default [`default_classify`]: the [`OperationClass`](crate::OperationClass)
    /// extension, else `request`).
    pub fn classify(mut self, classify: impl ClassifyOperation) -> Self {
        self.classify = Box::new(classify);
        self
    }

    /// Sends the time left as a `grpc-timeout` header (off by default; turn it on in front
    /// of a gRPC client).
    pub fn grpc_timeout_header(mut self, on: bool) -> Self {
        self.send_grpc_timeout = on;
        self
    }

    /// Honours a `grpc-timeout` header on incoming requests when it is tighter than the class
    /// timeout (on by default; a malformed header is ignored).
    pub fn honour_grpc_timeout(mut self, on: bool) -> Self {
        self.honour_grpc_timeout = on;
        self
    }

    /// Checks the configuration: every timeout in `1ns..=`[`MAX_TIMEOUT`], class names not
    /// empty, and the default class one of the classes.
    pub fn build(mut self) -> Result<TimeoutConfig, ConfigError> {
        const C: &str = "timeout";
        for (name, t) in &self.classes {
            if name.is_empty() {
                return Err(ConfigError::new(C, "class", "names must not be empty"));
            }
            if t.is_zero() || *t > MAX_TIMEOUT {
                return Err(ConfigError::new(
                    C,
                    "class",
                    format!("timeout of `{name}` must be in 1ns..=1 day, got {t:?}"),
                ));
            }
        }
        let Some(default) = self
            .classes
            .iter()
            .find(|(n, _)| *n == self.default)
            .copied()
        else {
            return Err(ConfigError::new(
                C,
                "default_class",
                format!("must be one of the classes, got `{}`", self.default),
            ));
        };
        self.classes.sort_by(|a, b| a.0.cmp(b.0));
        Ok(TimeoutConfig(Arc::new(Config {
            name: self.name,
            classes: self.classes,
            default,
            classify: self.classify,
            send_grpc_timeout: self.send_grpc_timeout,
            honour_grpc_timeout: self.honour_grpc_timeout,
        })))
    }
}
