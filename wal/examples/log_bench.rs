//! A small log bench: N appender threads, each appending a 64-byte record
//! and waiting for it to be durable (as a request does), for a fixed time,
//! with real `fdatasync` in a temporary directory (or `--dir`). Prints
//! durable records/s, syncs/s (batches/s), records per batch and the
//! write+sync latency of batches (p50/p99/max), and the appenders' own
//! append-to-durable latency (p50/p99), so that preallocation and the
//! commit delay can be compared in one binary:
//!
//! ```text
//! cargo run --release -p flashsale-wal --example log_bench -- \
//!     --appenders 64 --seconds 5 --preallocation ahead --commit-delay-us 200
//! ```
//!
//! `--preallocation off --commit-delay-us 0` is the log as it was before
//! both (plain segments grown by every batch, no commit delay).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use flashsale_wal::{Preallocation, SyncMode, Wal, WalConfig, WalObserver};
use parking_lot::Mutex;

const PAYLOAD: [u8; 64] = [0x42; 64];
/// Latency samples kept per run, so memory stays bounded.
const SAMPLES_MAX: usize = 2_000_000;

#[derive(Default)]
struct Batches {
    records: u64,
    count: u64,
    latencies_us: Vec<u32>,
}

#[derive(Default)]
struct Observer(Mutex<Batches>);

impl WalObserver for Observer {
    fn on_batch(&self, records: usize, _bytes: usize, latency: Duration) {
        let mut batches = self.0.lock();
        batches.records += records as u64;
        batches.count += 1;
        if batches.latencies_us.len() < SAMPLES_MAX {
            batches
                .latencies_us
                .push(latency.as_micros().min(u32::MAX as u128) as u32);
        }
    }
}

struct Args {
    appenders: u64,
    seconds: u64,
    preallocation: Preallocation,
    commit_delay_us: u64,
    dir: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        appenders: 64,
        seconds: 5,
        preallocation: Preallocation::Ahead,
        commit_delay_us: 200,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--appenders" => args.appenders = number()?.clamp(1, 4096),
            "--seconds" => args.seconds = number()?.clamp(1, 600),
            "--commit-delay-us" => args.commit_delay_us = number()?,
            "--dir" => args.dir = Some(PathBuf::from(value)),
            "--preallocation" => {
                args.preallocation = match value.as_str() {
                    "ahead" => Preallocation::Ahead,
                    "inline" => Preallocation::Inline,
                    "off" => Preallocation::Off,
                    other => return Err(format!("--preallocation {other}: ahead|inline|off")),
                }
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

fn percentile(sorted: &[u32], fraction: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[index]
}

/// Runs the appenders until `stop`; returns their append-to-durable
/// latencies in µs.
fn run_appenders(wal: &Arc<Wal>, appenders: u64, stop: &AtomicBool) -> Vec<u32> {
    let per_thread_max = SAMPLES_MAX / appenders as usize;
    thread::scope(|scope| {
        let handles: Vec<_> = (0..appenders)
            .map(|_| {
                scope.spawn(move || {
                    let mut latencies = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let seq = wal.append(&PAYLOAD).expect("append");
                        wal.wait_durable(seq).expect("durable");
                        if latencies.len() < per_thread_max {
                            let us = started.elapsed().as_micros().min(u32::MAX as u128);
                            latencies.push(us as u32);
                        }
                    }
                    latencies
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("appender"))
            .collect()
    })
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("log_bench: {message}");
            std::process::exit(2);
        }
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().join("wal"));
    let observer = Arc::new(Observer::default());
    let mut config = WalConfig::new(&dir);
    config.sync_mode = SyncMode::Fdatasync;
    config.preallocation = args.preallocation;
    config.commit_delay_max = Duration::from_micros(args.commit_delay_us);
    config.observer = Some(observer.clone());
    let wal = Arc::new(Wal::open(config).expect("open wal"));
    // Let the preparer zero-fill (and sync) its first segment before
    // measuring, so that its 64 MiB do not compete with the batches' syncs.
    let prepared = dir.join(flashsale_wal::PREPARED_SEGMENT_FILE_NAME);
    if args.preallocation == Preallocation::Ahead {
        for _ in 0..300 {
            let len = std::fs::metadata(&prepared).map_or(0, |m| m.len());
            if len >= flashsale_wal::SEGMENT_SIZE_MAX_BYTES_DEFAULT {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
    thread::sleep(Duration::from_secs(2));
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let mut latencies = thread::scope(|scope| {
        let runner = scope.spawn(|| run_appenders(&wal, args.appenders, &stop));
        thread::sleep(Duration::from_secs(args.seconds));
        stop.store(true, Ordering::Relaxed);
        runner.join().expect("runner")
    });
    let elapsed_s = started.elapsed().as_secs_f64();
    let mut batches = std::mem::take(&mut *observer.0.lock());
    batches.latencies_us.sort_unstable();
    latencies.sort_unstable();
    println!(
        "appenders={} preallocation={:?} commit_delay_us={} seconds={elapsed_s:.2} \
         records_per_s={:.0} syncs_per_s={:.0} records_per_batch={:.1} \
         sync_us_p50={} sync_us_p99={} sync_us_max={} \
         durable_us_p50={} durable_us_p99={} durable_us_p999={}",
        args.appenders,
        args.preallocation,
        args.commit_delay_us,
        batches.records as f64 / elapsed_s,
        batches.count as f64 / elapsed_s,
        batches.records as f64 / batches.count.max(1) as f64,
        percentile(&batches.latencies_us, 0.5),
        percentile(&batches.latencies_us, 0.99),
        batches.latencies_us.last().copied().unwrap_or(0),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
    );
}
