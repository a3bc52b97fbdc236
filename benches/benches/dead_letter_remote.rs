//! Dead-letter stores on servers: how many records a second the Redis and the NATS store
//! keep, over loopback.
//!
//! Group `dead_letter_remote`, write throughput in records per second (`thrpt`), for each of
//! `redis` (`RedisDeadLetterStore`: one Lua script per append, acknowledged by Redis) and
//! `nats` (`NatsDeadLetterStore`: a key-value create, acknowledged by JetStream on file
//! storage):
//! - `<store>/append_sequential`: one append after another, each awaited before the next: one
//!   round trip per record, the latency of a lone append.
//! - `<store>/append_concurrent_64`: 64 tasks appending without pause to one store, as 64
//!   failing requests of a server would; the client pipelines them on one connection. An
//!   iteration is one append from each task.
//! - `<store>/append_batch_100`: `append_batch` of 100 records. Redis: one script, all or
//!   none. NATS: 100 concurrent publishes, taken back if any fails.
//!
//! Every record is a fresh clone (a new id) of a typical `POST` with three headers and a
//! 512-byte JSON body, made inside the measured loop; the JSON serialization is part of what is
//! measured. Each store gets a prefix / bucket of its own, removed at the end. The servers are
//! the ones at `REDIS_URL` (default `redis://127.0.0.1:6379`) and `NATS_URL` (default
//! `nats://127.0.0.1:4222`); a store whose server does not answer is skipped with a line on
//! stderr. The tokio runtime has one worker thread.
//!
//! Run: `cargo bench -p rampart-benches --bench dead_letter_remote`.

mod common;
use common::{fresh, template};

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use criterion::{
    BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime,
};
use rampart_dead_letter::{DeadLetter, DeadLetterId, DeadLetterStore};
use rampart_nats::NatsDeadLetterStore;
use rampart_redis::RedisDeadLetterStore;
use tokio::runtime::Runtime;

/// Tasks appending at once in `append_concurrent_64`.
const CONCURRENCY: u64 = 64;
/// Records per `append_batch` in `append_batch_100`.
const BATCH: u64 = 100;

/// The URL in `var`, or `default`.
fn url(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// A name for this run's keys or bucket.
fn unique(separator: char) -> String {
    format!("rampart_bench{separator}{}", DeadLetterId::new())
}

/// Runs the three members for `store`, named `<name>/…`.
fn members<S: DeadLetterStore>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    store: &Arc<S>,
    template: &DeadLetter,
) {
    check(rt, &**store, template);

    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("{name}/append_sequential"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    store
                        .append(&fresh(template))
                        .await
                        .expect("an acknowledged append");
                }
                start.elapsed()
            })
        });
    });

    group.throughput(Throughput::Elements(CONCURRENCY));
    group.bench_function(format!("{name}/append_concurrent_64"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let tasks: Vec<_> = (0..CONCURRENCY)
                    .map(|_| {
                        let store = Arc::clone(store);
                        let template = template.clone();
                        tokio::spawn(async move {
                            for _ in 0..iters {
                                store
                                    .append(&fresh(&template))
                                    .await
                                    .expect("an acknowledged append");
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

    group.throughput(Throughput::Elements(BATCH));
    group.bench_function(format!("{name}/append_batch_100"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let batch: Vec<_> = (0..BATCH).map(|_| fresh(template)).collect();
                    store
                        .append_batch(&batch)
                        .await
                        .expect("an acknowledged batch");
                }
                start.elapsed()
            })
        });
    });
}

/// A runtime with one worker thread, and the I/O driver the clients need.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn stores(c: &mut Criterion) {
    let rt = runtime();
    let template = template();
    let mut group = c.benchmark_group("dead_letter_remote");
    // A sample is milliseconds (a round trip per record): fewer, longer samples.
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);

    let redis_url = url("REDIS_URL", "redis://127.0.0.1:6379");
    let redis = rt.block_on(
        RedisDeadLetterStore::builder(&redis_url)
            .prefix(unique(':'))
            .connect(),
    );
    match redis {
        Ok(store) => {
            let store = Arc::new(store);
            members(&mut group, &rt, "redis", &store, &template);
            if let Some(store) = Arc::into_inner(store) {
                rt.block_on(store.destroy())
                    .expect("the bench's keys removed");
            }
        }
        Err(e) => eprintln!("SKIP dead_letter_remote/redis: {e}"),
    }

    let nats_url = url("NATS_URL", "nats://127.0.0.1:4222");
    let nats = rt.block_on(
        NatsDeadLetterStore::builder(&nats_url)
            .bucket(unique('_'))
            .connect(),
    );
    match nats {
        Ok(store) => {
            let store = Arc::new(store);
            members(&mut group, &rt, "nats", &store, &template);
            if let Some(store) = Arc::into_inner(store) {
                rt.block_on(store.destroy())
                    .expect("the bench's bucket deleted");
            }
        }
        Err(e) => eprintln!("SKIP dead_letter_remote/nats: {e}"),
    }

    group.finish();
}

/// A store keeps what it is given: an appended record reads back whole.
fn check(rt: &Runtime, store: &dyn DeadLetterStore, template: &DeadLetter) {
    rt.block_on(async {
        let record = fresh(template);
        store.append(&record).await.expect("an append");
        let back = store.get(record.id).await.expect("a read");
        assert_eq!(back.as_ref(), Some(&record), "{}", store.describe());
    });
}

criterion_group!(benches, stores);
criterion_main!(benches);
