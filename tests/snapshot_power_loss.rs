//! Power loss at thousands of random points while the server works,
//! writes snapshots (temporary file, fsync, rename, directory fsync,
//! removal of the oldest) and deletes old log segments: every start after
//! the crash recovers exactly the acknowledged state (or that state plus
//! the one write in flight, whose record may have reached the disk).
//!
//! Runs on the log crate's simulated file system (`wal/tests/support`),
//! through which both the log and the snapshot store go. Each case has two
//! phases: work and crash, start and check, work and crash again (now with
//! segments deleted), start and check.

#[path = "../wal/tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::TimeZone;
use flashsale::domain::{CheckoutCode, Clock, ItemId, ManualClock, UserId};
use flashsale::engine::{
    Engine, EngineConfig, EngineSnapshot, Journal, JournalError, MemoryJournal, Record,
};
use flashsale::journal::WalJournal;
use flashsale::snapshot::{self, SnapshotMetrics, SnapshotStatus, Snapshotter};
use flashsale_wal::{Storage, SyncMode, Wal, WalConfig};
use parking_lot::Mutex;
use support::sim::SimStorage;
use support::Rng;

const CASES: u64 = 2_500;
const PHASES: u64 = 2;
const USERS: u64 = 5;
const ITEMS: u32 = 12;

fn cases() -> u64 {
    std::env::var("SNAPSHOT_POWER_LOSS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES)
}

fn wal_config() -> WalConfig {
    let mut config = WalConfig::new(Path::new("/sim/data/wal"));
    config.record_size_max_bytes = 256;
    config.batch_bytes_max = 512;
    config.queue_bytes_max = 1024;
    config.segment_size_max_bytes = 640;
    config.sync_mode = SyncMode::Fdatasync;
    config
}

fn snapshots_dir() -> PathBuf {
    snapshot::dir_in(Path::new("/sim/data"))
}

fn engine_config() -> EngineConfig {
    EngineConfig {
        items_per_sale: ITEMS,
        user_limit: 3,
        ..EngineConfig::default()
    }
}

/// The engine's journal in these tests: the real one, and a copy of every
/// record appended, so the acknowledged state can be rebuilt by replay
/// (cheaper than walking the engine after every write).
struct TeeJournal {
    journal: Arc<WalJournal>,
    appended: Mutex<Vec<(u64, Record)>>,
}

impl Journal for TeeJournal {
    fn append(&self, record: &Record) -> Result<u64, JournalError> {
        let seq = self.journal.append(record)?;
        self.appended.lock().push((seq, record.clone()));
        Ok(seq)
    }

    fn durable_seq(&self) -> u64 {
        Journal::durable_seq(self.journal.as_ref())
    }
}

struct Running {
    wal: Arc<Wal>,
    tee: Arc<TeeJournal>,
    engine: Engine,
    /// The acknowledged state: the same start, then every acknowledged record.
    shadow: Engine,
    snapshotter: Snapshotter,
}

/// Opens the log on `storage` and starts from its snapshots: must work
/// after any crash.
fn start(storage: &SimStorage, clock: &Arc<ManualClock>, case: u64) -> Running {
    let shared: Arc<dyn Storage> = Arc::new(storage.clone());
    let wal = Wal::open_with_storage(wal_config(), Arc::clone(&shared))
        .unwrap_or_else(|e| panic!("case {case}: the log does not open: {e}"));
    let wal = Arc::new(wal);
    let journal = Arc::new(WalJournal::new(Arc::clone(&wal)));
    let tee = Arc::new(TeeJournal {
        journal: Arc::clone(&journal),
        appended: Mutex::new(Vec::new()),
    });
    let new_engine = || {
        let journal: Arc<dyn Journal> = tee.clone();
        Engine::new(engine_config(), clock.clone(), journal)
    };
    let engine = snapshot::start(&new_engine, &tee.journal, storage, &snapshots_dir())
        .unwrap_or_else(|e| panic!("case {case}: the start fails: {e}"))
        .engine;
    // The same state, without reading the log again.
    let shadow = Engine::new(
        engine_config(),
        clock.clone(),
        Arc::new(MemoryJournal::default()),
    )
    .unwrap();
    shadow.restore(&engine.image(), 0).unwrap();
    let clock: Arc<dyn Clock> = clock.clone();
    let snapshotter = Snapshotter {
        wal: Arc::clone(&wal),
        journal,
        storage: shared,
        dir: snapshots_dir(),
        engine_config: engine_config(),
        clock,
        status: Arc::new(SnapshotStatus::default()),
        metrics: SnapshotMetrics::register(&prometheus::Registry::new()).unwrap(),
        exported: None,
    };
    Running {
        wal,
        tee,
        engine,
        shadow,
        snapshotter,
    }
}

/// The acknowledged state, and the state with the write in flight.
struct Expected {
    acknowledged: EngineSnapshot,
    in_flight: EngineSnapshot,
}

/// One checkout or purchase, waited for; `false` once the log failed.
fn one_write(running: &Running, rng: &mut Rng, codes: &mut Vec<u128>) -> bool {
    let engine = &running.engine;
    let decided_wait = if codes.is_empty() || rng.chance(2) {
        let user = UserId::parse(&format!("u{}", rng.below(USERS))).unwrap();
        let item = ItemId {
            sale: engine.active_sale().id,
            index: rng.below(u64::from(ITEMS)) as u32,
        };
        match engine.checkout(&user, item) {
            Ok(decided) => {
                if let Ok(cart) = &decided.answer {
                    codes.push(cart.code.as_u128());
                }
                decided.wait_seq
            }
            Err(_) => return false,
        }
    } else {
        let code = codes[rng.below(codes.len() as u64) as usize];
        match engine.purchase(CheckoutCode::from_u128(code)) {
            Ok(decided) => decided.wait_seq,
            Err(_) => return false,
        }
    };
    if running.wal.wait_durable(decided_wait).is_err() {
        return false;
    }
    for (seq, record) in running.tee.appended.lock().drain(..) {
        running.shadow.apply(seq, &record).unwrap();
    }
    true
}

/// Works until the armed crash: writes, and a snapshot now and then.
/// Returns what a start must find, and whether the crash came while a
/// snapshot was taken (written, renamed, old files and segments deleted).
fn work(running: &Running, rng: &mut Rng) -> (Expected, bool) {
    let mut codes = Vec::new();
    let mut crashed_in_snapshot = false;
    for _ in 0..200 {
        if rng.chance(4) && running.snapshotter.take().is_err() {
            // The crash came during the snapshot; the writes find out too.
            crashed_in_snapshot = true;
            break;
        }
        if !one_write(running, rng, &mut codes) {
            break;
        }
    }
    let expected = Expected {
        acknowledged: running.shadow.snapshot(),
        in_flight: running.engine.snapshot(),
    };
    (expected, crashed_in_snapshot)
}

/// Runs one case; returns its crash points and how many came during a
/// snapshot.
fn run_case(case: u64) -> (u64, u64) {
    let mut rng = Rng::new(case);
    let clock = Arc::new(ManualClock::new(
        chrono::Utc
            .with_ymd_and_hms(2026, 11, 21, 20, 5, 0)
            .unwrap(),
    ));
    let mut storage = SimStorage::new();
    let mut in_snapshot = 0;
    let mut running = start(&storage, &clock, case);
    for phase in 0..PHASES {
        storage.arm_crash_at_op(1 + rng.below(80), case * 31 + phase);
        let (expected, crashed_in_snapshot) = work(&running, &mut rng);
        in_snapshot += u64::from(crashed_in_snapshot);
        storage.crash_now();
        drop(running);
        storage = storage.crash_image(&mut rng);
        running = start(&storage, &clock, case);
        let recovered = running.engine.snapshot();
        let fits = recovered == expected.acknowledged || recovered == expected.in_flight;
        assert!(
            fits,
            "case {case} phase {phase}: the start did not recover the acknowledged state"
        );
    }
    (PHASES, in_snapshot)
}

#[test]
fn power_loss_while_snapshots_are_written_and_segments_deleted_keeps_every_acknowledged_write() {
    let (mut crash_points, mut in_snapshots) = (0, 0);
    for case in 0..cases() {
        let (points, in_snapshot) = run_case(case);
        crash_points += points;
        in_snapshots += in_snapshot;
    }
    eprintln!("{crash_points} crash points, {in_snapshots} of them while a snapshot was taken");
    assert!(crash_points >= 5_000 || cases() < CASES, "{crash_points}");
    assert!(
        in_snapshots * 10 >= crash_points,
        "too few crashes during snapshots"
    );
}
