//! Start time with and without a snapshot (`benches/start.sh` runs it):
//! writes START_RECORDS records (default 10^7) of START_USERS users
//! (default 10^6) straight into a log through the engine (no HTTP, no
//! fsync: generating is not what is measured), takes a snapshot
//! START_TAIL_RECORDS (default 10^5) records before the end, and then
//! times the start the server makes (open the log, load the newest
//! snapshot, replay the log after it, audit) three times with the
//! snapshot and three times without (the whole log). Also reports the
//! snapshot's size, how long taking it took, and the process's peak
//! resident memory before and after taking it (the snapshot builds a
//! second engine).
//!
//! Usage: cargo bench --bench start -- DIR (DIR must not exist). With
//! START_GENERATE_ONLY set it stops after writing the log and the
//! snapshot, leaving DIR for `flashsale serve --data-dir DIR` to start on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashsale::domain::{CheckoutCode, ItemId, SystemClock, UserId};
use flashsale::engine::{Engine, EngineConfig};
use flashsale::journal::WalJournal;
use flashsale::snapshot::{self, SnapshotMetrics, SnapshotStatus, Snapshotter};
use flashsale_wal::{FsStorage, SyncMode, Wal, WalConfig};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn engine_config() -> EngineConfig {
    EngineConfig {
        items_per_sale: 1_000_000,
        user_limit: 10,
        ..EngineConfig::default()
    }
}

fn open(dir: &Path, sync_mode: SyncMode) -> (Arc<Wal>, Arc<WalJournal>) {
    let mut config = WalConfig::new(dir.join("wal"));
    config.sync_mode = sync_mode;
    let wal = Arc::new(Wal::open(config).expect("open the log"));
    let journal = Arc::new(WalJournal::new(Arc::clone(&wal)));
    (wal, journal)
}

/// Peak resident memory of this process so far, in MiB.
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

/// Appends `records` records: each user opens a cart of up to three
/// items; every other user buys it; the rest are repeats and 404s.
fn generate(engine: &Engine, users: u64, from: u64, records: u64, wal: &Wal) {
    let sale = engine.active_sale().id;
    let mut codes: Vec<Option<CheckoutCode>> = vec![None; users as usize];
    let start_seq = wal.last_seq();
    let mut n = from;
    while wal.last_seq() - start_seq < records {
        let u = n % users;
        let round = n / users;
        let user = UserId::parse(&format!("user{u:07}")).expect("user id");
        let index = ((u * 7 + round * 131) % 1_000_000) as u32;
        match round % 10 {
            0..=2 => {
                if let Ok(cart) = engine
                    .checkout(&user, ItemId { sale, index })
                    .expect("checkout")
                    .answer
                {
                    codes[u as usize] = Some(cart.code);
                }
            }
            3 if u.is_multiple_of(2) => {
                if let Some(code) = codes[u as usize] {
                    engine.purchase(code).expect("purchase");
                }
            }
            _ => {
                let missing = ItemId {
                    sale,
                    index: 1_000_000 + index % 7,
                };
                let _ = engine.checkout(&user, missing);
            }
        }
        n += 1;
    }
    wal.wait_durable(wal.last_seq()).expect("durable");
}

fn timed_start(dir: &Path) -> (Duration, u64) {
    let started = Instant::now();
    let (_wal, journal) = open(dir, SyncMode::Fdatasync);
    let clock = Arc::new(SystemClock { offset_seconds: 0 });
    let new_engine = || Engine::new(engine_config(), clock.clone(), journal.clone());
    let report =
        snapshot::start(&new_engine, &journal, &FsStorage, &snapshot::dir_in(dir)).expect("start");
    (started.elapsed(), report.tail.records)
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn main() {
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .expect("usage: cargo bench --bench start -- DIR");
    let records = env_u64("START_RECORDS", 10_000_000);
    let users = env_u64("START_USERS", 1_000_000);
    let tail = env_u64("START_TAIL_RECORDS", 100_000);
    let generated = Instant::now();
    let (wal, journal) = open(&dir, SyncMode::UnsafeNoSync);
    let clock = Arc::new(SystemClock { offset_seconds: 0 });
    let engine = Engine::new(engine_config(), clock.clone(), journal.clone()).expect("engine");
    generate(&engine, users, 0, records - tail, &wal);
    println!(
        "generated {} records in {:.1?}",
        records - tail,
        generated.elapsed()
    );
    let rss_before = peak_rss_mib();
    let snapshotter = Snapshotter {
        wal: Arc::clone(&wal),
        journal: Arc::clone(&journal),
        storage: Arc::new(FsStorage),
        dir: snapshot::dir_in(&dir),
        engine_config: engine_config(),
        clock: clock.clone(),
        status: Arc::new(SnapshotStatus::default()),
        metrics: SnapshotMetrics::register(&prometheus::Registry::new()).expect("metrics"),
        exported: None,
    };
    let taking = Instant::now();
    let taken = snapshotter
        .take()
        .expect("snapshot")
        .expect("records to snapshot");
    println!(
        "snapshot at record {}: {} bytes, taken in {:.2?}; peak RSS {} MiB before, {} MiB after",
        taken.seq,
        taken.file_bytes,
        taking.elapsed(),
        rss_before,
        peak_rss_mib()
    );
    generate(&engine, users, records, tail, &wal);
    drop(snapshotter);
    drop(engine);
    drop(journal);
    wal.close();
    drop(wal);
    if std::env::var_os("START_GENERATE_ONLY").is_some() {
        // The data directory is left for a real server to start on.
        return;
    }
    let with: Vec<(Duration, u64)> = (0..3).map(|_| timed_start(&dir)).collect();
    let hidden = dir.join("snapshots.hidden");
    std::fs::rename(snapshot::dir_in(&dir), &hidden).expect("hide the snapshots");
    let without: Vec<(Duration, u64)> = (0..3).map(|_| timed_start(&dir)).collect();
    std::fs::rename(&hidden, snapshot::dir_in(&dir)).expect("restore the snapshots");
    println!(
        "start with the snapshot: median {:.3?} of {:?} (tail of {} records)",
        median(with.iter().map(|r| r.0).collect()),
        with.iter().map(|r| r.0).collect::<Vec<_>>(),
        with[0].1
    );
    println!(
        "start from the whole log: median {:.3?} of {:?} ({} records)",
        median(without.iter().map(|r| r.0).collect()),
        without.iter().map(|r| r.0).collect::<Vec<_>>(),
        without[0].1
    );
}
