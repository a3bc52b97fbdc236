//! Configuration: [`BulkheadConfig`] and its validated builder.

use std::{borrow::Cow, fmt, time::Duration};

use rampart_core::{
    clock::{SharedClock, default_clock},
    error::ConfigError,
    registry::RegistryLimits,
};

const COMPONENT: &str = "bulkhead";

/// The most priority classes a bulkhead may have.
///
/// The live counts of every class are packed into one 64-bit word so that admission is a
/// single compare-and-swap: with `n` classes each count has `64 / n` bits.
pub const MAX_CLASSES: usize = 4;

/// One priority class: a name and the capacity reserved for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassConfig {
    pub(crate) name: Cow<'static, str>,
    pub(crate) reserved: u32,
    pub(crate) borrow: bool,
}

/// A validated bulkhead configuration. Build one with [`BulkheadConfig::builder`].
#[derive(Clone)]
pub struct BulkheadConfig {
    pub(crate) name: Cow<'static, str>,
    /// Highest priority first.
    pub(crate) classes: Vec<ClassConfig>,
    pub(crate) capacity: u32,
    pub(crate) default_class: usize,
    pub(crate) max_queued: usize,
    pub(crate) max_wait: Duration,
    pub(crate) registry: RegistryLimits,
    pub(crate) metrics_per_key: usize,
    pub(crate) clock: SharedClock,
}

impl fmt::Debug for BulkheadConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadConfig")
            .field("name", &self.name)
            .field("classes", &self.classes)
            .field("capacity", &self.capacity)
            .field("default_class", &self.default_class)
            .field("max_queued", &self.max_queued)
            .field("max_wait", &self.max_wait)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl BulkheadConfig {
    /// A builder with the defaults:
    ///
    /// | setting | default |
    /// |---|---|
    /// | classes | one, `default`, with 10 concurrent calls |
    /// | capacity | the sum of the reservations |
    /// | wait | none: fail fast (`max_wait` 0) |
    /// | queue | 100 waiters (used once `max_wait` > 0) |
    /// | per-key registry | 1024 keys, idle partitions evicted after 10 min |
    pub fn builder() -> BulkheadConfigBuilder {
        BulkheadConfigBuilder::default()
    }

    /// The bulkhead's name, used in tracing events and metric labels.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The total number of concurrent calls.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The class names, highest priority first.
    pub fn class_names(&self) -> impl Iterator<Item = &str> {
        self.classes.iter().map(|c| &*c.name)
    }
}

/// Builds a [`BulkheadConfig`]; [`build`](Self::build) validates every field.
#[derive(Clone)]
pub struct BulkheadConfigBuilder {
    name: Cow<'static, str>,
    max_concurrent: Option<u32>,
    classes: Vec<ClassConfig>,
    capacity: Option<u32>,
    default_class: Option<Cow<'static, str>>,
    max_queued: usize,
    max_wait: Duration,
    registry: RegistryLimits,
    metrics_per_key: usize,
    clock: SharedClock,
}

impl fmt::Debug for BulkheadConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadConfigBuilder")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Default for BulkheadConfigBuilder {
    fn default() -> Self {
        Self {
            name: Cow::Borrowed("default"),
            max_concurrent: None,
            classes: Vec::new(),
            capacity: None,
            default_class: None,
            max_queued: 100,
            max_wait: Duration::ZERO,
            registry: RegistryLimits::default(),
            metrics_per_key: 0,
            clock: default_clock(),
        }
    }
}

impl BulkheadConfigBuilder {
    /// The name used in tracing events and metric labels (default `"default"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Without priority classes: at most `n` concurrent calls (default 10).
    pub fn max_concurrent(mut self, n: u32) -> Self {
        self.max_concurrent = Some(n);
        self
    }

    /// Adds a priority class with `reserved` concurrent calls kept for it. Classes are added
    /// highest priority first, at most [`MAX_CLASSES`].
    ///
    /// A class never takes capacity reserved for a class *above* it. It may use idle capacity
    /// reserved for classes *below* it, and the shared pool (see [`capacity`](Self::capacity)),
    /// only if it may [`borrow`](Self::borrowing_class); the owner gets such a slot back at the
    /// next release, before any borrower.
    pub fn class(mut self, name: impl Into<Cow<'static, str>>, reserved: u32) -> Self {
        self.classes.push(ClassConfig {
            name: name.into(),
            reserved,
            borrow: false,
        });
        self
    }

    /// Like [`class`](Self::class), for a class that may go beyond its reservation by borrowing
    /// idle capacity of lower classes and the shared pool.
    pub fn borrowing_class(mut self, name: impl Into<Cow<'static, str>>, reserved: u32) -> Self {
        self.classes.push(ClassConfig {
            name: name.into(),
            reserved,
            borrow: true,
        });
        self
    }

    /// The total number of concurrent calls across all classes (default: the sum of the
    /// reservations). Anything above that sum is a shared pool that borrowing classes use by
    /// priority.
    pub fn capacity(mut self, n: u32) -> Self {
        self.capacity = Some(n);
        self
    }

    /// The class of requests that name no class, or an unknown one (default: the lowest).
    pub fn default_class(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.default_class = Some(name.into());
        self
    }

    /// How long a call may wait for a permit (default 0: fail fast). Waiting needs a tokio
    /// runtime with its timer enabled.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// How many calls may wait at once, over all classes (default 100). Beyond that a call is
    /// rejected at once.
    pub fn max_queued(mut self, n: usize) -> Self {
        self.max_queued = n;
        self
    }

    /// For per-key partitions: at most this many keys are kept (default 1024).
    pub fn max_keys(mut self, n: usize) -> Self {
        self.registry.max_keys = n;
        self
    }

    /// For per-key partitions: the first `n` keys get metric series of their own (a `key`
    /// label with the key's text); every other partition reports under `key="_other"`. 0 by
    /// default: one set of series for the whole layer, however many tenants it sees.
    pub fn metrics_per_key(mut self, n: usize) -> Self {
        self.metrics_per_key = n;
        self
    }

    /// For per-key partitions: a partition with nothing in flight, unused this long, may be
    /// evicted (default 10 min).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.registry.idle_timeout = timeout;
        self
    }

    /// The clock the wait times are measured with (default: tokio's).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Validates every field and builds the configuration.
    pub fn build(self) -> Result<BulkheadConfig, ConfigError> {
        let err = |field, reason: String| Err(ConfigError::new(COMPONENT, field, reason));
        let mut classes = self.classes;
        if classes.is_empty() {
            classes.push(ClassConfig {
                name: Cow::Borrowed("default"),
                reserved: self.max_concurrent.unwrap_or(10),
                borrow: false,
            });
        } else if let Some(n) = self.max_concurrent {
            return err(
                "max_concurrent",
                format!(
                    "is for a bulkhead without classes; with classes set `capacity` instead (got {n})"
                ),
            );
        }
        if classes.len() > MAX_CLASSES {
            return err(
                "class",
                format!("at most {MAX_CLASSES} classes, got {}", classes.len()),
            );
        }
        for (i, c) in classes.iter().enumerate() {
            if c.name.is_empty() {
                return err("class", "a class name must not be empty".into());
            }
            if classes[..i].iter().any(|o| o.name == c.name) {
                return err("class", format!("class `{}` is defined twice", c.name));
            }
        }
        let reserved: u64 = classes.iter().map(|c| u64::from(c.reserved)).sum();
        let capacity = u64::from(self.capacity.unwrap_or(0)).max(reserved);
        if let Some(n) = self.capacity
            && u64::from(n) < reserved
        {
            return err(
                "capacity",
                format!("must be at least the sum of the reservations ({reserved}), got {n}"),
            );
        }
        let field = if classes.len() == 1 && self.capacity.is_none() {
            "max_concurrent"
        } else {
            "capacity"
        };
        if capacity == 0 {
            return err(field, "must be at least 1, got 0".into());
        }
        let limit = max_capacity(classes.len());
        if capacity > limit {
            return err(
                field,
                format!(
                    "must be at most {limit} with {} class(es), got {capacity}",
                    classes.len()
                ),
            );
        }
        let default_class = match &self.default_class {
            None => classes.len() - 1,
            Some(name) => match classes.iter().position(|c| c.name == *name) {
                Some(i) => i,
                None => return err("default_class", format!("no class is named `{name}`")),
            },
        };
        self.registry.validate(COMPONENT)?;
        Ok(BulkheadConfig {
            name: self.name,
            classes,
            capacity: u32::try_from(capacity).unwrap_or(u32::MAX),
            default_class,
            max_queued: self.max_queued,
            max_wait: self.max_wait,
            registry: self.registry,
            metrics_per_key: self.metrics_per_key,
            clock: self.clock,
        })
    }
}

/// The largest capacity `n` classes can count in one packed word.
pub(crate) const fn max_capacity(n: usize) -> u64 {
    let bits = 64 / n as u32;
    if bits >= 32 {
        u32::MAX as u64
    } else {
        (1u64 << bits) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(b: BulkheadConfigBuilder) -> &'static str {
        b.build()
            .expect_err("invalid config must be refused")
            .field()
    }

    #[test]
    fn bad_configuration_names_the_field() {
        let b = BulkheadConfig::builder;
        assert_eq!(field_of(b().max_concurrent(0)), "max_concurrent");
        assert_eq!(
            field_of(
                b().class("a", 1)
                    .class("b", 1)
                    .class("c", 1)
                    .class("d", 1)
                    .class("e", 1)
            ),
            "class"
        );
        assert_eq!(field_of(b().class("a", 1).class("a", 2)), "class");
        assert_eq!(field_of(b().class("", 1)), "class");
        assert_eq!(field_of(b().class("a", 5).capacity(4)), "capacity");
        assert_eq!(field_of(b().class("a", 0).class("b", 0)), "capacity");
        assert_eq!(
            field_of(
                b().class("a", 1)
                    .class("b", 1)
                    .class("c", 1)
                    .class("d", 70_000)
            ),
            "capacity"
        );
        assert_eq!(
            field_of(b().class("a", 1).max_concurrent(3)),
            "max_concurrent"
        );
        assert_eq!(
            field_of(b().class("a", 1).default_class("zz")),
            "default_class"
        );
        assert_eq!(field_of(b().max_keys(0)), "max_keys");
        assert_eq!(field_of(b().idle_timeout(Duration::ZERO)), "idle_timeout");
        let msg = b()
            .class("a", 5)
            .capacity(4)
            .build()
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "invalid bulkhead config: capacity must be at least the sum of the reservations (5), got 4"
        );
    }

    #[test]
    fn defaults_and_classes() {
        let c = BulkheadConfig::builder().build().unwrap();
        assert_eq!((c.capacity(), c.classes.len(), c.default_class), (10, 1, 0));
        let c = BulkheadConfig::builder()
            .class("critical", 10)
            .class("normal", 5)
            .class("bulk", 2)
            .capacity(20)
            .default_class("normal")
            .build()
            .unwrap();
        assert_eq!(c.capacity(), 20);
        assert_eq!(c.default_class, 1);
        assert_eq!(
            c.class_names().collect::<Vec<_>>(),
            ["critical", "normal", "bulk"]
        );
    }
}
