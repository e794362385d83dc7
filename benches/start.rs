//! Start time with and without a snapshot (`benches/start.sh` runs it):
//! writes START_RECORDS records (default 10^7) of START_USERS users
//! (default 10^6) straight into a log through the engine (no HTTP, no
//! fsync: generating is not what is measured), taking a snapshot every
//! START_SNAPSHOT_INTERVAL records (default 10^6, as the server; 0: one
//! snapshot only, the whole log kept) with retention, the last one
//! START_TAIL_RECORDS (default 10^5) records before the end, and then
//! times the start the server makes (open the log, load the newest
//! snapshot, replay the log after it, audit) three times with the
//! snapshot and, if the whole log is kept, three times without. Also
//! reports each snapshot's size, how long taking it took, and the
//! process's peak resident memory before and after (the snapshot builds
//! a second engine).
//!
//! Usage: cargo bench --bench start -- DIR (DIR must not exist). With
//! START_GENERATE_ONLY set it stops after writing the log and the
//! snapshot, leaving DIR for `flashsale serve --data-dir DIR` to start on;
//! with START_TIME_ONLY set it only times the starts on an existing DIR
//! (and with START_SNAPSHOT_ONLY too, only those with the snapshot).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashsale::domain::{CheckoutCode, ItemId, SystemClock, UserId};
use flashsale::engine::{Engine, EngineConfig};
use flashsale::journal::WalJournal;
use flashsale::snapshot::{self, SnapshotMetrics, SnapshotStatus, Snapshotter};
use flashsale_wal::{FsStorage, SyncMode, Wal, WalConfig};

/// The server's allocator (src/main.rs), so that the start is timed as
/// the server makes it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
/// Returns where the next call goes on from.
fn generate(
    engine: &Engine,
    (users, from): (u64, u64),
    codes: &mut [Option<CheckoutCode>],
    records: u64,
    wal: &Wal,
) -> u64 {
    let sale = engine.active_sale().id;
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
    n
}

fn timed_start(dir: &Path) -> (Duration, u64) {
    let started = Instant::now();
    let (_wal, journal) = open(dir, SyncMode::Fdatasync);
    let opened = started.elapsed();
    let clock = Arc::new(SystemClock { offset_seconds: 0 });
    let new_engine = || Engine::new(engine_config(), clock.clone(), journal.clone());
    let report =
        snapshot::start(&new_engine, &journal, &FsStorage, &snapshot::dir_in(dir)).expect("start");
    println!(
        "  start {:.3?}: log open {opened:.3?}, then {:.3?}: {:?} ({} tail records)",
        started.elapsed(),
        report.elapsed,
        report.phases,
        report.tail.records
    );
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
    if std::env::var_os("START_TIME_ONLY").is_none() {
        generate_and_snapshot(&dir, records, users, tail);
    }
    if std::env::var_os("START_GENERATE_ONLY").is_some() {
        // The data directory is left for a real server to start on.
        return;
    }
    time_starts(&dir);
}

/// Writes the log as a server would leave it: a snapshot every
/// START_SNAPSHOT_INTERVAL records (default 10^6, the server's default)
/// with retention, the last one `tail` records before the end; with
/// START_SNAPSHOT_INTERVAL=0 only that last one (the whole log is kept).
fn generate_and_snapshot(dir: &Path, records: u64, users: u64, tail: u64) {
    let interval = match env_u64("START_SNAPSHOT_INTERVAL", 1_000_000) {
        0 => records - tail,
        interval => interval,
    };
    let generated = Instant::now();
    let (wal, journal) = open(dir, SyncMode::UnsafeNoSync);
    let clock = Arc::new(SystemClock { offset_seconds: 0 });
    let engine = Engine::new(engine_config(), clock.clone(), journal.clone()).expect("engine");
    let snapshotter = Snapshotter {
        wal: Arc::clone(&wal),
        journal: Arc::clone(&journal),
        storage: Arc::new(FsStorage),
        dir: snapshot::dir_in(dir),
        engine_config: engine_config(),
        clock: clock.clone(),
        status: Arc::new(SnapshotStatus::default()),
        metrics: SnapshotMetrics::register(&prometheus::Registry::new()).expect("metrics"),
        exported: None,
    };
    let mut codes: Vec<Option<CheckoutCode>> = vec![None; users as usize];
    let mut n = 0;
    let mut written = 0;
    while written < records - tail {
        let chunk = interval.min(records - tail - written);
        n = generate(&engine, (users, n), &mut codes, chunk, &wal);
        written += chunk;
        let rss_before = peak_rss_mib();
        let taking = Instant::now();
        let taken = snapshotter
            .take()
            .expect("snapshot")
            .expect("records to snapshot");
        println!(
            "snapshot at record {}: {} bytes, taken in {:.2?}, {} segments deleted; \
             peak RSS {} MiB before, {} MiB after",
            taken.seq,
            taken.file_bytes,
            taking.elapsed(),
            taken.segments_deleted,
            rss_before,
            peak_rss_mib()
        );
    }
    generate(&engine, (users, n), &mut codes, tail, &wal);
    println!("generated {records} records in {:.1?}", generated.elapsed());
    drop(snapshotter);
    drop(engine);
    drop(journal);
    wal.close();
}

/// Three starts with the snapshot, three from the whole log.
fn time_starts(dir: &Path) {
    let with: Vec<(Duration, u64)> = (0..3).map(|_| timed_start(dir)).collect();
    println!(
        "start with the snapshot: median {:.3?} of {:?} (tail of {} records)",
        median(with.iter().map(|r| r.0).collect()),
        with.iter().map(|r| r.0).collect::<Vec<_>>(),
        with[0].1
    );
    if std::env::var_os("START_SNAPSHOT_ONLY").is_some() {
        return;
    }
    let (_wal, journal) = open(dir, SyncMode::Fdatasync);
    if journal.first_seq() > 1 {
        println!("no start from the whole log: retention deleted its first records");
        return;
    }
    drop(journal);
    drop(_wal);
    let hidden = dir.join("snapshots.hidden");
    std::fs::rename(snapshot::dir_in(dir), &hidden).expect("hide the snapshots");
    let without: Vec<(Duration, u64)> = (0..3).map(|_| timed_start(dir)).collect();
    std::fs::rename(&hidden, snapshot::dir_in(dir)).expect("restore the snapshots");
    println!(
        "start from the whole log: median {:.3?} of {:?} ({} records)",
        median(without.iter().map(|r| r.0).collect()),
        without.iter().map(|r| r.0).collect::<Vec<_>>(),
        without[0].1
    );
}
