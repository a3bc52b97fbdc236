//! Test support (feature `test-util`): what the patterns' tests and yours need to look at
//! rampart from outside: [`MetricsRecorder`] for its `metrics` series, [`LogBuffer`] for its
//! `tracing` events, and [`ready`] to drive a future that completes at once.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};

/// A `metrics::Recorder` that keeps the last value of every counter and gauge, for tests.
///
/// Install it around the code under test with `metrics::with_local_recorder`, then read a
/// series by name and sorted labels: `recorder.get("name{a=x,b=y}")`. Gauges are kept as whole
/// numbers; histograms are not kept.
///
/// ```
/// use rampart_core::testing::MetricsRecorder;
///
/// let recorder = MetricsRecorder::default();
/// metrics::with_local_recorder(&recorder, || {
///     metrics::counter!("requests_total", "route" => "/a").increment(2);
///     metrics::gauge!("in_flight").set(3.0);
/// });
/// assert_eq!(recorder.get("requests_total{route=/a}"), 2);
/// assert_eq!(recorder.get("in_flight{}"), 3);
/// assert_eq!(recorder.get("never_seen{}"), 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct MetricsRecorder {
    values: Arc<Mutex<HashMap<String, Arc<AtomicU64>>>>,
}

impl MetricsRecorder {
    /// Runs `test` to its end on a fresh current-thread runtime (time paused, so sleeps and
    /// timeouts cost nothing) with this recorder installed, and returns the recorder to read.
    ///
    /// ```
    /// use rampart_core::testing::MetricsRecorder;
    ///
    /// let recorder = MetricsRecorder::capture(async {
    ///     tokio::time::sleep(std::time::Duration::from_secs(60)).await; // instant
    ///     metrics::counter!("done_total").increment(1);
    /// });
    /// assert_eq!(recorder.get("done_total{}"), 1);
    /// ```
    pub fn capture(test: impl std::future::Future<Output = ()>) -> Self {
        let recorder = Self::default();
        metrics::with_local_recorder(&recorder, || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build();
            match rt {
                Ok(rt) => rt.block_on(test),
                Err(e) => panic!("a test runtime: {e}"),
            }
        });
        recorder
    }

    fn slot(&self, key: &Key) -> Arc<AtomicU64> {
        let mut labels: Vec<_> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let id = format!("{}{{{}}}", key.name(), labels.join(","));
        crate::sync::lock(&self.values)
            .entry(id)
            .or_default()
            .clone()
    }

    /// Every series recorded so far whose name is `name`, as ids (`name{label=value,...}`).
    pub fn series(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name}{{");
        let mut ids: Vec<String> = crate::sync::lock(&self.values)
            .keys()
            .filter(|id| id.starts_with(&prefix))
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    /// The value of the series `id` (`name{label=value,...}`, labels sorted), 0 if never seen.
    pub fn get(&self, id: &str) -> u64 {
        crate::sync::lock(&self.values)
            .get(id)
            .map_or(0, |v| v.load(Ordering::SeqCst))
    }
}

struct Cell(Arc<AtomicU64>);

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::SeqCst);
    }

    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::SeqCst);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        self.0.fetch_add(value as u64, Ordering::SeqCst);
    }

    fn decrement(&self, value: f64) {
        self.0.fetch_sub(value as u64, Ordering::SeqCst);
    }

    fn set(&self, value: f64) {
        self.0.store(value as u64, Ordering::SeqCst);
    }
}

impl Recorder for MetricsRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(Cell(self.slot(key))))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(Cell(self.slot(key))))
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// A writer that keeps what is written, for a `tracing` subscriber under test
/// (`tracing_subscriber::fmt().with_writer(move || buffer.clone())`).
///
/// ```
/// use std::io::Write;
/// use rampart_core::testing::LogBuffer;
///
/// let buffer = LogBuffer::default();
/// let mut writer = buffer.clone();
/// writeln!(writer, "WARN circuit breaker opened").unwrap();
/// assert!(buffer.contents().contains("opened"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    /// Everything written so far.
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&crate::sync::lock(&self.0)).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        crate::sync::lock(&self.0).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Polls `fut` once, with a no-op waker, and returns its output; `None` if it is not ready.
///
/// For services whose calls complete at once, in tests without a runtime.
///
/// ```
/// assert_eq!(rampart_core::testing::ready(async { 7 }), Some(7));
/// assert_eq!(rampart_core::testing::ready(std::future::pending::<()>()), None);
/// ```
pub fn ready<F: std::future::Future>(fut: F) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(fut).poll(&mut cx) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}
