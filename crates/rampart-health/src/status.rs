//! [`Status`] and the reports a check produces: [`ComponentHealth`], [`ComponentReport`],
//! [`HealthReport`].

use std::{borrow::Cow, fmt};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How healthy a component, or the whole service, is. Ordered from best to worst, so the
/// overall status is the [`max`](Ord::max) of the components'.
///
/// ```
/// use rampart_health::Status;
///
/// assert!(Status::Healthy < Status::Degraded && Status::Degraded < Status::Unhealthy);
/// assert_eq!(Status::Healthy.max(Status::Degraded), Status::Degraded);
/// assert!(Status::Degraded.is_ready() && !Status::Unhealthy.is_ready());
/// ```
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Everything works as it should.
    #[default]
    Healthy,
    /// The service still serves, with something impaired: a dependency cut off by an open
    /// breaker, a dead-letter backlog, an elevated error rate. Still ready.
    Degraded,
    /// The service cannot serve: a required dependency is unreachable, or most calls fail.
    /// Not ready.
    Unhealthy,
}

impl Status {
    /// A lowercase name: `healthy`, `degraded`, `unhealthy` (as in the JSON view).
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Degraded => "degraded",
            Status::Unhealthy => "unhealthy",
        }
    }

    /// The value of the `rampart_health_status` gauge: 0 healthy, 1 degraded, 2 unhealthy.
    pub const fn as_gauge(self) -> f64 {
        match self {
            Status::Healthy => 0.0,
            Status::Degraded => 1.0,
            Status::Unhealthy => 2.0,
        }
    }

    /// `true` unless unhealthy: whether the service should receive traffic (`/health/ready`
    /// answers `200`, gRPC reports `SERVING`).
    pub const fn is_ready(self) -> bool {
        !matches!(self, Status::Unhealthy)
    }

    pub(crate) const fn to_u8(self) -> u8 {
        match self {
            Status::Healthy => 0,
            Status::Degraded => 1,
            Status::Unhealthy => 2,
        }
    }

    pub(crate) const fn from_u8(v: u8) -> Option<Status> {
        match v {
            0 => Some(Status::Healthy),
            1 => Some(Status::Degraded),
            2 => Some(Status::Unhealthy),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one check of one component found: a status, why (when not healthy), and details for
/// the JSON view.
///
/// ```
/// use rampart_health::{ComponentHealth, Status};
///
/// let h = ComponentHealth::degraded("cache warming up").detail("entries", 120);
/// assert_eq!(h.status, Status::Degraded);
/// assert_eq!(h.details["entries"], 120);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentHealth {
    /// The verdict.
    pub status: Status,
    /// Why it is not healthy (or a note on a healthy one), for people reading the view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Measurements behind the verdict (breaker state, backlog, latency, …).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub details: Map<String, Value>,
}

impl ComponentHealth {
    /// A result with `status` and no reason.
    pub fn new(status: Status) -> Self {
        Self {
            status,
            reason: None,
            details: Map::new(),
        }
    }

    /// Healthy.
    pub fn healthy() -> Self {
        Self::new(Status::Healthy)
    }

    /// Degraded, because of `reason`.
    pub fn degraded(reason: impl Into<String>) -> Self {
        Self::new(Status::Degraded).reason(reason)
    }

    /// Unhealthy, because of `reason`.
    pub fn unhealthy(reason: impl Into<String>) -> Self {
        Self::new(Status::Unhealthy).reason(reason)
    }

    /// Sets the reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Adds the detail `key` (replacing an earlier one of the same key).
    pub fn detail(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }
}

/// One component in a [`HealthReport`]: its name, its kind and what its check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentReport {
    /// The name it was registered under.
    pub name: String,
    /// What kind of component it is ([`Component::kind`](crate::Component::kind)), e.g.
    /// `circuit_breaker`, `probe`.
    pub kind: Cow<'static, str>,
    /// The check's result.
    #[serde(flatten)]
    pub health: ComponentHealth,
}

impl ComponentReport {
    /// The component's status.
    pub fn status(&self) -> Status {
        self.health.status
    }
}

/// The result of checking every component: the overall status (the worst component status;
/// healthy with no components) and each component's report, in registration order.
///
/// Serialized, it is the body of the `/health` endpoint:
///
/// ```json
/// {
///   "status": "degraded",
///   "components": [
///     { "name": "payments", "kind": "circuit_breaker", "status": "degraded",
///       "reason": "circuit open", "details": { "state": "open", "mode": "normal" } },
///     { "name": "postgres", "kind": "probe", "status": "healthy",
///       "details": { "latency_ms": 1.2 } }
///   ]
/// }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    /// The worst of the components' statuses.
    pub status: Status,
    /// Every component, in registration order.
    pub components: Vec<ComponentReport>,
}

impl HealthReport {
    /// A report over `components`, with the overall status computed from them.
    pub fn from_components(components: Vec<ComponentReport>) -> Self {
        let status = components
            .iter()
            .map(ComponentReport::status)
            .max()
            .unwrap_or_default();
        Self { status, components }
    }

    /// The report of the component registered as `name`.
    pub fn component(&self, name: &str) -> Option<&ComponentReport> {
        self.components.iter().find(|c| c.name == name)
    }

    /// `true` unless unhealthy (see [`Status::is_ready`]).
    pub fn is_ready(&self) -> bool {
        self.status.is_ready()
    }

    /// The same report with only the components that are not healthy, without their details:
    /// the body of `/health/ready`.
    pub fn summary(&self) -> HealthReport {
        HealthReport {
            status: self.status,
            components: self
                .components
                .iter()
                .filter(|c| c.status() != Status::Healthy)
                .map(|c| ComponentReport {
                    name: c.name.clone(),
                    kind: c.kind.clone(),
                    health: ComponentHealth {
                        status: c.health.status,
                        reason: c.health.reason.clone(),
                        details: Map::new(),
                    },
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overall_is_the_worst() {
        let c = |name: &str, status| ComponentReport {
            name: name.into(),
            kind: "custom".into(),
            health: ComponentHealth::new(status),
        };
        assert_eq!(
            HealthReport::from_components(vec![]).status,
            Status::Healthy
        );
        let r = HealthReport::from_components(vec![
            c("a", Status::Healthy),
            c("b", Status::Unhealthy),
            c("c", Status::Degraded),
        ]);
        assert_eq!(r.status, Status::Unhealthy);
        assert!(!r.is_ready());
        let s = r.summary();
        assert_eq!(
            s.components.iter().map(|c| &*c.name).collect::<Vec<_>>(),
            ["b", "c"]
        );
    }

    #[test]
    fn json_shape_round_trips() {
        let r = HealthReport::from_components(vec![ComponentReport {
            name: "db".into(),
            kind: "probe".into(),
            health: ComponentHealth::unhealthy("timed out").detail("latency_ms", 2000.0),
        }]);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "status": "unhealthy",
                "components": [{ "name": "db", "kind": "probe", "status": "unhealthy",
                    "reason": "timed out", "details": { "latency_ms": 2000.0 } }]
            })
        );
        assert_eq!(serde_json::from_value::<HealthReport>(json).unwrap(), r);
    }
}
