//! The [`Clock`] seam: every time-based decision in rampart reads time through it.
//!
//! [`TokioClock`] (the default) reads `tokio::time::Instant::now()`, so it follows tokio's paused
//! time in tests (`#[tokio::test(start_paused = true)]`). [`ManualClock`] is moved by hand, for
//! policy cores tested without any runtime.

use std::{
    fmt,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

pub use tokio::time::Instant;

/// A source of monotonic time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current instant.
    fn now(&self) -> Instant;

    /// `true` if this clock is tokio's time (`tokio::time::Instant::now()`), so that tokio
    /// timers (`sleep`, `interval`) keep time with it, paused time included. Policies then
    /// replace clock reads on their hot paths with timers. Default: `false`.
    fn is_tokio_time(&self) -> bool {
        false
    }
}

/// How far [`saturating_add`] goes when the sum does not fit: about 30 years, "never" for any
/// process.
pub const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);

/// `at + d`, or [`FAR_FUTURE`] after `at` when that does not fit in an `Instant`: for adding a
/// configured duration (which may be `Duration::MAX`, meaning "never") to an instant without a
/// panic. Every rampart layer adds configured durations to instants this way.
///
/// ```
/// use std::time::Duration;
/// use rampart_core::clock::{saturating_add, FAR_FUTURE, Instant};
///
/// let now = Instant::now();
/// assert_eq!(saturating_add(now, Duration::from_secs(5)), now + Duration::from_secs(5));
/// assert_eq!(saturating_add(now, Duration::MAX), now + FAR_FUTURE);
/// ```
pub fn saturating_add(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .unwrap_or_else(|| at.checked_add(FAR_FUTURE).unwrap_or(at))
}

/// A shared, type-erased clock.
pub type SharedClock = Arc<dyn Clock>;

/// The default clock: `tokio::time::Instant::now()`.
///
/// Outside a tokio runtime it is the system's monotonic clock; inside a runtime with paused time
/// it follows the paused clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn is_tokio_time(&self) -> bool {
        true
    }
}

/// The default clock as a [`SharedClock`].
pub fn default_clock() -> SharedClock {
    Arc::new(TokioClock)
}

/// A clock that only moves when told to. Clones share the same time.
///
/// ```
/// use rampart_core::clock::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let start = clock.now();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now() - start, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    base: Instant,
    offset_nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A manual clock standing at the current real instant.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            offset_nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.offset_nanos.fetch_add(nanos, Ordering::SeqCst);
    }

    /// How far the clock has moved since it was created.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.offset_nanos.load(Ordering::SeqCst))
    }

    /// This clock as a [`SharedClock`] (sharing the same time).
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.base + self.elapsed()
    }
}

/// A one-shot timer that runs a callback from tokio's timer driver, with no task.
///
/// Hot paths use it to learn that a moment has passed without reading the clock: arm it for
/// the moment, and let the callback flip a flag. The callback runs inside the timer driver as
/// soon as the driver sees the deadline, before any task is polled (so also under
/// `tokio::time::advance`), and once more if the runtime shuts down first. It must be quick and
/// must not block. Timers round the deadline up to the next millisecond: arm a little early
/// and check the clock exactly once the flag is set.
///
/// Arming needs a multi-threaded tokio runtime with its timer enabled; without one,
/// [`arm`](Alarm::arm) returns `false` and the caller keeps reading the clock. A
/// current-thread runtime turns its timer only while a `block_on` waits: one driven by a
/// `block_on` per call whose future is ready at once (a sync SDK, a CLI) never turns it, and an
/// alarm armed there could wait forever, so it is not armed there either.
pub struct Alarm {
    sleep: std::sync::Mutex<Option<std::pin::Pin<Box<tokio::time::Sleep>>>>,
    /// Set once arming has failed for lack of a timer, so that it is not tried on every call.
    no_timer: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for Alarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alarm").finish_non_exhaustive()
    }
}

impl Default for Alarm {
    fn default() -> Self {
        Self::new()
    }
}

struct Callback<F>(F);

impl<F: Fn() + Send + Sync + 'static> std::task::Wake for Callback<F> {
    fn wake(self: Arc<Self>) {
        (self.0)();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        (self.0)();
    }
}

impl Alarm {
    /// An alarm that is not armed.
    pub const fn new() -> Self {
        Self {
            sleep: std::sync::Mutex::new(None),
            no_timer: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Arms the alarm for `deadline` on tokio's clock, replacing any earlier arming (whose
    /// callback then never runs). `on_fire` runs at once if the deadline has passed. Returns
    /// `false`, having armed nothing, outside a tokio runtime, in a current-thread one (see
    /// the [type docs](Alarm)) or in one without a timer.
    pub fn arm(&self, deadline: Instant, on_fire: impl Fn() + Send + Sync + 'static) -> bool {
        if self.no_timer.load(Ordering::Relaxed) {
            return false;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) if rt.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread => {}
            _ => return false,
        }
        // `sleep_until` panics in a runtime built without `enable_time`; there is no way to ask
        // first. Catch it once and stop trying.
        let Ok(sleep) = std::panic::catch_unwind(|| tokio::time::sleep_until(deadline)) else {
            self.no_timer.store(true, Ordering::Relaxed);
            return false;
        };
        let mut sleep = Box::pin(sleep);
        let waker = std::task::Waker::from(Arc::new(Callback(on_fire)));
        let mut cx = std::task::Context::from_waker(&waker);
        if sleep.as_mut().poll(&mut cx).is_ready() {
            waker.wake_by_ref();
        }
        *crate::sync::lock(&self.sleep) = Some(sleep);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_clones_share_time() {
        let a = ManualClock::new();
        let b = a.clone();
        let t0 = b.now();
        a.advance(Duration::from_millis(1500));
        assert_eq!(b.now() - t0, Duration::from_millis(1500));
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock;
        let t0 = clock.now();
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(clock.now() - t0, Duration::from_secs(30));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn alarm_fires_from_the_driver_with_no_task() {
        let fired = Arc::new(tokio::sync::Notify::new());
        let alarm = Alarm::new();
        let f = fired.clone();
        let notified = fired.notified();
        let deadline = Instant::now() + Duration::from_millis(5);
        assert!(alarm.arm(deadline, move || f.notify_one()));
        tokio::time::timeout(Duration::from_secs(10), notified)
            .await
            .expect("the driver ran the callback");
        assert!(Instant::now() >= deadline);
    }

    #[test]
    fn alarm_is_not_armed_where_the_timer_may_never_turn() {
        let alarm = Alarm::new();
        let soon = Instant::now() + Duration::from_millis(1);
        assert!(!alarm.arm(soon, || {}), "outside a runtime");
        let current = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        assert!(
            !current.block_on(async { alarm.arm(soon, || {}) }),
            "in a current-thread runtime"
        );
    }

    #[test]
    fn alarm_needs_a_runtime_with_a_timer() {
        let alarm = Alarm::new();
        assert!(!alarm.arm(Instant::now(), || {}));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _enter = rt.enter();
        assert!(
            !alarm.arm(Instant::now(), || {}),
            "no timer: refused, no panic"
        );
    }
}
