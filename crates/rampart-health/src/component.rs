//! [`Component`]: anything whose health can be checked.

use std::{fmt, sync::Arc};

use crate::status::ComponentHealth;

/// A boxed, `Send` future: what this trait's methods return (rampart-core's).
pub use rampart_core::BoxFuture;

/// Something whose health can be checked: a breaker, a bulkhead, a dead-letter store, a
/// dependency probe, or one of your own.
///
/// The registry runs every component's check concurrently on each (uncached) check, so a check
/// should be quick and bound its own waiting (a [`Probe`](crate::Probe) has a timeout). A check
/// never fails: it reports what it found, with the error in its
/// [`reason`](ComponentHealth::reason) when there is one.
///
/// ```
/// use std::sync::{Arc, atomic::{AtomicBool, Ordering}};
/// use rampart_health::{BoxFuture, Component, ComponentHealth, HealthRegistry, Status};
///
/// /// Degraded while the cache is warming up.
/// #[derive(Debug)]
/// struct Cache { warm: Arc<AtomicBool> }
///
/// impl Component for Cache {
///     fn kind(&self) -> &'static str { "cache" }
///     fn check(&self) -> BoxFuture<'_, ComponentHealth> {
///         let warm = self.warm.load(Ordering::Relaxed);
///         Box::pin(async move {
///             if warm { ComponentHealth::healthy() } else { ComponentHealth::degraded("warming up") }
///         })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let registry = HealthRegistry::new();
/// registry.component("cache", Cache { warm: Arc::new(AtomicBool::new(false)) });
/// assert_eq!(registry.check().await.status, Status::Degraded);
/// # }
/// ```
pub trait Component: Send + Sync + fmt::Debug + 'static {
    /// What kind of component this is, shown as `kind` in the JSON view (e.g. `probe`).
    /// Default: `custom`.
    fn kind(&self) -> &'static str {
        "custom"
    }

    /// Checks the component.
    fn check(&self) -> BoxFuture<'_, ComponentHealth>;
}

impl<T: Component + ?Sized> Component for Arc<T> {
    fn kind(&self) -> &'static str {
        (**self).kind()
    }

    fn check(&self) -> BoxFuture<'_, ComponentHealth> {
        (**self).check()
    }
}

impl<T: Component + ?Sized> Component for Box<T> {
    fn kind(&self) -> &'static str {
        (**self).kind()
    }

    fn check(&self) -> BoxFuture<'_, ComponentHealth> {
        (**self).check()
    }
}
