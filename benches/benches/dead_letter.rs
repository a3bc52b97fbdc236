//! Dead-letter stores: how many records a second each one keeps.
//!
//! Group `dead_letter_store`, write throughput in records per second (`thrpt`):
//! - `memory/append`: `MemoryStore::append`, one after another: the floor, a map insert.
//! - `sqlite/append_sequential`: `SqliteStore::append` (durability on: WAL,
//!   `synchronous=FULL`), one after another, each awaited before the next: one transaction and
//!   one `fsync` per record, the latency of a lone append.
//! - `sqlite/append_concurrent_64`: 64 tasks appending without pause to one `SqliteStore`, as
//!   64 failing requests of a server would: the writer's group commit puts every append that
//!   arrives during a commit into the next one. An iteration is one append from each task.
//! - `sqlite/append_batch_100`: `append_batch` of 100 records: one transaction, all or none.
//!
//! Every record is a fresh clone (a new id) of a typical `POST` with three headers and a
//! 512-byte JSON body, made inside the measured loop in every member; the store's JSON
//! serialization (on the caller's task) is part of what is measured. The SQLite file is in a
//! temporary directory (on this machine, the same disk as the workspace), and grows over the
//! run. The tokio runtime has one worker thread; the store adds its writer and reader threads.
//!
//! Group `dead_letter_layer`, the layer's cost on the happy path (every request succeeds, so
//! nothing is parked), one call per iteration, each with a freshly built `POST` (three headers,
//! a 512-byte body) in every member:
//! - `baseline`: a pass-through `service_fn` answering `200`;
//! - `buffer_body`: rampart-retry's `BufferBodyLayer` alone, the body buffering the layer does;
//! - `rampart`: `DeadLetterLayer` over a `MemoryStore`: buffering, a copy of the request head
//!   and an attempt counter in the extensions, then the status check.
//!
//! Run: `cargo bench -p rampart-benches --bench dead_letter`.

mod common;

use rampart_core::header::IDEMPOTENCY_KEY;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use std::{convert::Infallible, hint::black_box};

use bytes::Bytes;
use common::{body, fresh, template};
use criterion::{
    BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime,
};
use http::{Request, Response};
use http_body_util::Full;
use rampart_benches::{configure, ready_call, runtime};
use rampart_dead_letter::{DeadLetter, DeadLetterLayer, DeadLetterStore, MemoryStore, SqliteStore};
use rampart_retry::replay::BufferBodyLayer;
use tower::{Layer, Service, service_fn};

/// Tasks appending at once in `append_concurrent_64`.
const CONCURRENCY: u64 = 64;
/// Records per `append_batch` in `append_batch_100`.
const BATCH: u64 = 100;

fn sqlite_store(dir: &tempfile::TempDir, name: &str) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(dir.path().join(name)).expect("a SQLite store in a temp dir"))
}

fn stores(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("a temp dir");
    let template = template();
    let mut group = c.benchmark_group("dead_letter_store");
    configure(&mut group);
    group.throughput(Throughput::Elements(1));

    check(
        &rt,
        &MemoryStore::bounded(1).expect("a capacity of 1"),
        &template,
    );
    group.bench_function("memory/append", |b| {
        b.iter_custom(|iters| {
            let store = MemoryStore::bounded(usize::try_from(iters).unwrap_or(usize::MAX).max(1))
                .expect("a capacity of at least 1");
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    store
                        .append(&fresh(&template))
                        .await
                        .expect("room for every record");
                }
                start.elapsed()
            })
        });
    });

    // The SQLite members: fewer, longer samples (a sample is milliseconds, not microseconds).
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20);

    let store = sqlite_store(&dir, "sequential.db");
    check(&rt, &*store, &template);
    group.bench_function("sqlite/append_sequential", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    store
                        .append(&fresh(&template))
                        .await
                        .expect("a durable append");
                }
                start.elapsed()
            })
        });
    });
    drop(store);

    let store = sqlite_store(&dir, "concurrent.db");
    check(&rt, &*store, &template);
    group.throughput(Throughput::Elements(CONCURRENCY));
    group.bench_function("sqlite/append_concurrent_64", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let tasks: Vec<_> = (0..CONCURRENCY)
                    .map(|_| {
                        let store = store.clone();
                        let template = template.clone();
                        tokio::spawn(async move {
                            for _ in 0..iters {
                                store
                                    .append(&fresh(&template))
                                    .await
                                    .expect("a durable append");
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("an appending task");
                }
                start.elapsed()
            })
        });
    });
    drop(store);

    let store = sqlite_store(&dir, "batch.db");
    check(&rt, &*store, &template);
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("sqlite/append_batch_100", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let batch: Vec<_> = (0..BATCH).map(|_| fresh(&template)).collect();
                    store.append_batch(&batch).await.expect("a durable batch");
                }
                start.elapsed()
            })
        });
    });

    group.finish();
}

/// A store keeps what it is given: an appended record reads back whole.
fn check(rt: &tokio::runtime::Runtime, store: &dyn DeadLetterStore, template: &DeadLetter) {
    rt.block_on(async {
        let record = fresh(template);
        store.append(&record).await.expect("an append");
        let back = store.get(record.id).await.expect("a read");
        assert_eq!(
            back.map(|r| r.target),
            Some(record.target),
            "{}",
            store.describe()
        );
    });
}

/// A typical `POST`: three headers and a 512-byte JSON body.
fn post(body: &Bytes) -> Request<Full<Bytes>> {
    Request::post("http://billing.internal:8080/v1/charges")
        .header("content-type", "application/json")
        .header("x-request-id", "0b6a1d1e-8f1c-4c31-9a57-2f1f7c9a6d3e")
        .header(IDEMPOTENCY_KEY, "9c2e4a8e-2a3b-4f7a-b1d5-5c6e7f8091a2")
        .body(Full::new(body.clone()))
        .expect("a valid request")
}

fn ok<B>(_req: Request<B>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
    std::future::ready(Ok(Response::new(Full::new(Bytes::new()))))
}

fn bench_posts<S>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut svc: S)
where
    S: Service<Request<Full<Bytes>>>,
{
    let body = Bytes::from(body());
    group.bench_function(name, |b| {
        b.iter(|| black_box(ready_call(&mut svc, black_box(post(&body))).is_ok()));
    });
}

fn layer(c: &mut Criterion) {
    let rt = runtime();
    let _enter = rt.enter();
    let mut group = c.benchmark_group("dead_letter_layer");
    configure(&mut group);

    bench_posts(&mut group, "baseline", service_fn(ok));
    bench_posts(
        &mut group,
        "buffer_body",
        BufferBodyLayer::default().layer(service_fn(ok)),
    );
    let store = Arc::new(MemoryStore::bounded(1).expect("a capacity of 1"));
    let dlq = DeadLetterLayer::builder("billing", store.clone())
        .build()
        .expect("a valid layer");
    bench_posts(&mut group, "rampart", dlq.layer(service_fn(ok)));
    let parked = rt
        .block_on(store.stats())
        .expect("memory store stats")
        .total;
    assert_eq!(parked, 0, "nothing parked on the happy path");
    group.finish();
}

criterion_group!(benches, stores, layer);
criterion_main!(benches);
