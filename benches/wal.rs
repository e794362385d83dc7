//! Write-ahead log benchmarks (issue 2 goals, 2-core machine):
//! durable appends with 1, 8 and 64 concurrent appenders (each appends one
//! record and waits for it to be durable, as a request does; goal >= 300k
//! records/s at 64), appends with the unsafe no-sync mode (goal >= 2M
//! records/s; also measured with 64 and 512 async tasks, the service's
//! pattern), and replay of 10^6 records of 64 bytes (goal >= 10M
//! records/s). The log lives in a temporary directory on the same disk as
//! the system temp dir, with real `fdatasync`.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flashsale_wal::{SyncMode, Wal, WalConfig};

const PAYLOAD: [u8; 64] = [0x42; 64];
const REPLAY_RECORDS: u64 = 1_000_000;

fn open(dir: &std::path::Path, sync_mode: SyncMode) -> Arc<Wal> {
    let mut config = WalConfig::new(dir);
    config.sync_mode = sync_mode;
    Arc::new(Wal::open(config).expect("open wal"))
}

/// Runs `records` appends spread over `appenders` threads; each thread
/// waits for durability per record (`wait_each`) or once at its end.
fn run_appenders(wal: &Arc<Wal>, appenders: u64, records: u64, wait_each: bool) -> Duration {
    let per_thread = records.div_ceil(appenders).max(1);
    let started = Instant::now();
    thread::scope(|scope| {
        for _ in 0..appenders {
            scope.spawn(|| {
                let mut last = 0;
                for _ in 0..per_thread {
                    last = wal.append(&PAYLOAD).expect("append");
                    if wait_each {
                        wal.wait_durable(last).expect("durable");
                    }
                }
                wal.wait_durable(last).expect("durable");
            });
        }
    });
    let elapsed = started.elapsed();
    // Keep the disk usage of long runs bounded.
    wal.delete_segments_before(wal.durable_seq())
        .expect("retention");
    elapsed.mul_f64(records as f64 / (per_thread * appenders) as f64)
}

fn durable_appends(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_durable_append");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(1));
    for appenders in [1u64, 8, 64] {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path(), SyncMode::Fdatasync);
        group.bench_with_input(
            BenchmarkId::new("appenders", appenders),
            &appenders,
            |b, &appenders| {
                b.iter_custom(|iters| run_appenders(&wal, appenders, iters, true));
            },
        );
    }
    group.finish();
}

/// The service's pattern: async tasks on a 2-thread runtime, each appending
/// and awaiting durability per record.
fn durable_appends_async(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_durable_append_async");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(1));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    for tasks in [64u64, 512] {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path(), SyncMode::Fdatasync);
        group.bench_with_input(BenchmarkId::new("tasks", tasks), &tasks, |b, &tasks| {
            b.iter_custom(|iters| {
                let per_task = iters.div_ceil(tasks).max(1);
                let started = Instant::now();
                runtime.block_on(async {
                    let handles: Vec<_> = (0..tasks)
                        .map(|_| {
                            let wal = Arc::clone(&wal);
                            tokio::spawn(async move {
                                for _ in 0..per_task {
                                    let seq = wal.append(&PAYLOAD).expect("append");
                                    wal.wait_durable_async(seq).await.expect("durable");
                                }
                            })
                        })
                        .collect();
                    for handle in handles {
                        handle.await.expect("task");
                    }
                });
                let elapsed = started.elapsed();
                wal.delete_segments_before(wal.durable_seq())
                    .expect("retention");
                elapsed.mul_f64(iters as f64 / (per_task * tasks) as f64)
            });
        });
    }
    group.finish();
}

fn unsafe_no_sync_appends(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_append_unsafe_no_sync");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    for appenders in [1u64, 2] {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path(), SyncMode::UnsafeNoSync);
        group.bench_with_input(
            BenchmarkId::new("appenders", appenders),
            &appenders,
            |b, &appenders| {
                b.iter_custom(|iters| run_appenders(&wal, appenders, iters, false));
            },
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = open(dir.path(), SyncMode::UnsafeNoSync);
    group.bench_function("appenders/64_wait_each", |b| {
        b.iter_custom(|iters| run_appenders(&wal, 64, iters, true));
    });
    group.finish();
}

fn replay(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let wal = open(dir.path(), SyncMode::UnsafeNoSync);
        for _ in 0..REPLAY_RECORDS {
            wal.append(&PAYLOAD).expect("append");
        }
    }
    // Reopen with fsync so that the recovery scan has synced everything.
    let wal = open(dir.path(), SyncMode::Fdatasync);
    assert_eq!(wal.durable_seq(), REPLAY_RECORDS);
    let mut group = c.benchmark_group("wal_replay_1e6x64B");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(REPLAY_RECORDS));
    group.bench_function("iterator_owned", |b| {
        b.iter(|| {
            let mut count = 0u64;
            for record in wal.read_from(1).expect("reader") {
                count += record.expect("record").payload.len() as u64;
            }
            assert_eq!(count, REPLAY_RECORDS * 64);
        });
    });
    group.bench_function("next_record_borrowed", |b| {
        b.iter(|| {
            let mut reader = wal.read_from(1).expect("reader");
            let mut count = 0u64;
            while let Some((_, payload)) = reader.next_record().expect("record") {
                count += payload.len() as u64;
            }
            assert_eq!(count, REPLAY_RECORDS * 64);
        });
    });
    group.bench_function("open_recovery_scan", |b| {
        b.iter(|| {
            let reopened = Wal::open(WalConfig::new(dir.path())).expect("reopen");
            assert_eq!(reopened.durable_seq(), REPLAY_RECORDS);
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    durable_appends,
    durable_appends_async,
    unsafe_no_sync_appends,
    replay
);
criterion_main!(benches);
