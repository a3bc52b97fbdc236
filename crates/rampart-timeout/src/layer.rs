//! [`TimeoutLayer`] and its configuration.

use std::{fmt, sync::Arc, time::Duration};

use rampart_core::error::ConfigError;
use tower_layer::Layer;

use crate::service::Timeout;

/// A request's operation class, in its extensions: what the default classifier reads.
///
/// Set it per route (e.g. with axum's `Extension` layer, or a `map_request`) or per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OperationClass(pub &'static str);

/// What a classifier sees of a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a http::Method,
    /// The URI.
    pub uri: &'a http::Uri,
    /// The headers.
    pub headers: &'a http::HeaderMap,
    /// The extensions.
    pub extensions: &'a http::Extensions,
}

/// Names a request's operation class.
pub trait Classify: Send + Sync + 'static {
    /// The class of the request; a class the layer does not know gets the default class's
    /// timeout.
    fn class(&self, head: &RequestHead<'_>) -> &'static str;
}

impl<F> Classify for F
where
    F: Fn(&RequestHead<'_>) -> &'static str + Send + Sync + 'static,
{
    fn class(&self, head: &RequestHead<'_>) -> &'static str {
        self(head)
    }
}

/// The default classifier: the request's [`OperationClass`] extension, else `request`.
pub fn default_classify(head: &RequestHead<'_>) -> &'static str {
    head.extensions
        .get::<OperationClass>()
        .map_or("request", |c| c.0)
}

pub(crate) struct Config {
    /// Sorted by name, for a binary search; a handful of classes.
    pub(crate) classes: Vec<(&'static str, Duration)>,
    pub(crate) default: (&'static str, Duration),
    pub(crate) classify: Box<dyn Classify>,
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
        TimeoutConfigBuilder {
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

    /// One timeout for every request.
    pub fn new(timeout: Duration) -> Result<Self, ConfigError> {
        Self::builder().class("request", timeout).build()
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::new(inner, self.config.clone())
    }
}

/// Configures a [`TimeoutLayer`].
pub struct TimeoutConfigBuilder {
    classes: Vec<(&'static str, Duration)>,
    default: &'static str,
    classify: Box<dyn Classify>,
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

    /// Names each request's class (by default [`default_classify`]: the [`OperationClass`]
    /// extension, else `request`).
    pub fn classify(mut self, classify: impl Classify) -> Self {
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
    pub fn build(mut self) -> Result<TimeoutLayer, ConfigError> {
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
        Ok(TimeoutLayer {
            config: Arc::new(Config {
                classes: self.classes,
                default,
                classify: self.classify,
                send_grpc_timeout: self.send_grpc_timeout,
                honour_grpc_timeout: self.honour_grpc_timeout,
            }),
        })
    }
}
