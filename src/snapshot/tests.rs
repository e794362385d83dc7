//! Snapshots on real files with a real log: fallback from a damaged
//! snapshot, refusal when records are missing, retention.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use flashsale_wal::{FsStorage, Storage, SyncMode, Wal, WalConfig};
use tempfile::TempDir;

use super::format;
use super::format_tests::golden_body;
use super::status::{SnapshotMetrics, SnapshotStatus};
use super::store;
use super::taker::Snapshotter;
use super::{start, StartError, Started};
use crate::domain::{Clock, ManualClock};
use crate::engine::fixtures::{at_minutes, sale_config, user};
use crate::engine::{Engine, EngineConfig};
use crate::export::{ExportState, ExportStatus};
use crate::journal::WalJournal;

/// A log, its journal, an engine on it, and a snapshotter, in a temp dir.
struct Harness {
    dir: TempDir,
    clock: Arc<ManualClock>,
    wal: Arc<Wal>,
    journal: Arc<WalJournal>,
    engine: Engine,
    exported: Option<ExportStatus>,
}

fn wal_config(dir: &Path) -> WalConfig {
    let mut config = WalConfig::new(dir.join("wal"));
    config.record_size_max_bytes = 1024;
    config.batch_bytes_max = 2048;
    config.queue_bytes_max = 4096;
    config.segment_size_max_bytes = 4096;
    config.sync_mode = SyncMode::Fdatasync;
    config
}

fn config() -> EngineConfig {
    sale_config(400, 10)
}

impl Harness {
    fn new() -> Harness {
        let dir = TempDir::new().unwrap();
        Harness::open(dir, None)
    }

    /// Opens (or reopens) the log in `dir` and starts from its snapshots.
    fn open(dir: TempDir, exported: Option<ExportStatus>) -> Harness {
        let (clock, wal, journal) = Harness::log(dir.path());
        let started = Harness::start_in(dir.path(), &clock, &journal).unwrap();
        Harness {
            dir,
            clock,
            wal,
            journal,
            engine: started.engine,
            exported,
        }
    }

    fn log(dir: &Path) -> (Arc<ManualClock>, Arc<Wal>, Arc<WalJournal>) {
        let clock = Arc::new(ManualClock::new(at_minutes(5)));
        let wal = Arc::new(Wal::open(wal_config(dir)).unwrap());
        let journal = Arc::new(WalJournal::new(Arc::clone(&wal)));
        (clock, wal, journal)
    }

    fn start_in(
        dir: &Path,
        clock: &Arc<ManualClock>,
        journal: &Arc<WalJournal>,
    ) -> Result<Started, StartError> {
        let new_engine = || Engine::new(config(), clock.clone(), journal.clone());
        start(&new_engine, journal, &FsStorage, &super::dir_in(dir))
    }

    fn snapshots_dir(&self) -> PathBuf {
        super::dir_in(self.dir.path())
    }

    fn snapshotter(&self) -> Snapshotter {
        let clock: Arc<dyn Clock> = self.clock.clone();
        Snapshotter {
            wal: Arc::clone(&self.wal),
            journal: Arc::clone(&self.journal),
            storage: Arc::new(FsStorage),
            dir: self.snapshots_dir(),
            engine_config: config(),
            clock,
            status: Arc::new(SnapshotStatus::default()),
            metrics: SnapshotMetrics::register(&prometheus::Registry::new()).unwrap(),
            exported: self.exported.clone(),
        }
    }

    /// `users` users each put two items in a cart; every other one buys.
    fn traffic(&self, first_user: u32, users: u32) {
        let sale = self.engine.active_sale().id;
        for n in first_user..first_user + users {
            let name = format!("user{n}");
            let item = |index| crate::domain::ItemId { sale, index };
            let cart = self.engine.checkout(&user(&name), item(n % 400)).unwrap();
            self.engine
                .checkout(&user(&name), item((n + 7) % 400))
                .unwrap();
            if n % 2 == 0 {
                if let Ok(cart) = cart.answer {
                    self.engine.purchase(cart.code).unwrap();
                }
            }
        }
        self.wal.wait_durable(self.wal.last_seq()).unwrap();
    }

    /// `restart`, as a harness to go on with.
    fn reopen(self) -> Harness {
        let exported = self.exported.clone();
        let Harness {
            dir,
            wal,
            journal,
            engine,
            ..
        } = self;
        drop(engine);
        drop(journal);
        wal.close();
        drop(wal);
        Harness::open(dir, exported)
    }

    /// Closes the log and starts again from the snapshots and the log.
    fn restart(self) -> Result<Started, StartError> {
        let Harness {
            dir,
            wal,
            journal,
            engine,
            ..
        } = self;
        drop(engine);
        drop(journal);
        wal.close();
        drop(wal);
        let (clock, _wal, journal) = Harness::log(dir.path());
        Harness::start_in(dir.path(), &clock, &journal)
    }
}

/// Two snapshots and traffic after each; returns the harness and the
/// state a start must rebuild.
fn two_snapshots() -> (Harness, crate::engine::EngineSnapshot, Vec<PathBuf>) {
    let h = Harness::new();
    let snapshotter = h.snapshotter();
    h.traffic(0, 40);
    snapshotter.take().unwrap().unwrap();
    h.traffic(40, 40);
    snapshotter.take().unwrap().unwrap();
    h.traffic(80, 10);
    drop(snapshotter);
    let expected = h.engine.snapshot();
    let files = store::list(&FsStorage, &h.snapshots_dir())
        .unwrap()
        .into_iter()
        .map(|(_, path)| path)
        .collect();
    (h, expected, files)
}

fn damage_file(path: &Path, damage: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    damage(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_damaged_newest_snapshot_is_skipped_and_named_and_the_older_one_is_used() {
    type Damage = fn(&mut Vec<u8>);
    let damages: [(&str, Damage); 3] = [
        ("checksum", |bytes| {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x01;
        }),
        ("truncated", |bytes| bytes.truncate(bytes.len() - 3)),
        ("unsupported_version", |bytes| bytes[8] = 9),
    ];
    for (kind, damage) in damages {
        let (h, expected, files) = two_snapshots();
        assert_eq!(files.len(), 2);
        damage_file(&files[1], damage);
        let older_seq = store::parse_file_name(&files[0].file_name().unwrap().to_string_lossy());
        let started = h.restart().unwrap();
        assert_eq!(
            started.snapshot.as_ref().map(|u| u.seq),
            older_seq,
            "{kind}"
        );
        let newest = files[1].file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(started.skipped, vec![format!("{newest}: {kind}")]);
        assert_eq!(started.engine.snapshot(), expected, "{kind}");
    }
}

#[test]
fn both_snapshots_damaged_after_retention_refuse_to_start_naming_what_is_missing() {
    let (h, _, _) = two_snapshots();
    let snapshotter = h.snapshotter();
    h.traffic(90, 60);
    let taken = snapshotter.take().unwrap().unwrap();
    assert!(taken.segments_deleted > 0, "{taken:?}");
    assert!(h.journal.first_seq() > 1);
    let files = store::list(&FsStorage, &h.snapshots_dir()).unwrap();
    assert_eq!(files.len(), 2, "two kept");
    for (_, path) in &files {
        damage_file(path, |bytes| bytes[30] ^= 0xff);
    }
    drop(snapshotter);
    let error = h.restart().unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("the log starts at record") && message.contains("no valid snapshot"),
        "{message}"
    );
}

#[test]
fn retention_deletes_only_what_two_snapshots_cover_and_the_start_still_rebuilds_everything() {
    let h = Harness::new();
    let snapshotter = h.snapshotter();
    h.traffic(0, 60);
    let first = snapshotter.take().unwrap().unwrap();
    assert_eq!(first.segments_deleted, 0, "one snapshot: nothing deleted");
    h.traffic(60, 60);
    let second = snapshotter.take().unwrap().unwrap();
    assert!(second.segments_deleted > 0);
    assert!(
        h.journal.first_seq() <= first.seq + 1,
        "nothing after the older snapshot"
    );
    h.traffic(120, 60);
    snapshotter.take().unwrap().unwrap();
    h.traffic(180, 5);
    let expected = h.engine.snapshot();
    drop(snapshotter);
    let started = h.restart().unwrap();
    assert_eq!(started.engine.snapshot(), expected);
}

#[test]
fn retention_keeps_every_segment_the_exporter_has_not_exported() {
    let exported = ExportStatus::new(ExportState::Starting);
    let h = Harness::open(TempDir::new().unwrap(), Some(exported.clone()));
    let snapshotter = h.snapshotter();
    h.traffic(0, 60);
    snapshotter.take().unwrap().unwrap();
    h.traffic(60, 60);
    let taken = snapshotter.take().unwrap().unwrap();
    assert_eq!(taken.segments_deleted, 0, "nothing exported yet");
    assert_eq!(h.journal.first_seq(), 1);
}

#[test]
fn a_snapshot_covering_records_the_log_does_not_hold_refuses_the_start() {
    let h = Harness::new();
    h.traffic(0, 10);
    let mut body = format::decode(&format::encode(&golden_body()).unwrap()).unwrap();
    body.log_id = h.journal.log_id();
    body.seq = 1_000_000;
    body.image = h.engine.image();
    store::write(&FsStorage, &h.snapshots_dir(), &body).unwrap();
    let message = h.restart().unwrap_err().to_string();
    assert!(message.contains("covers up to record 1000000"), "{message}");
}

#[test]
fn a_snapshot_of_another_log_is_skipped() {
    let h = Harness::new();
    h.traffic(0, 10);
    let expected = h.engine.snapshot();
    let mut body = golden_body();
    body.seq = 3;
    store::write(&FsStorage, &h.snapshots_dir(), &body).unwrap();
    let started = h.restart().unwrap();
    assert!(started.snapshot.is_none());
    assert_eq!(started.skipped.len(), 1, "{:?}", started.skipped);
    assert_eq!(started.engine.snapshot(), expected);
}

#[test]
fn at_most_two_snapshots_are_kept_and_temporary_files_are_removed() {
    let dir = TempDir::new().unwrap();
    let storage: &dyn Storage = &FsStorage;
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(
        dir.path().join("snapshot-00000000000000000001.snap.tmp"),
        b"x",
    )
    .unwrap();
    for seq in [5, 9, 12] {
        let mut body = golden_body();
        body.seq = seq;
        store::write(storage, dir.path(), &body).unwrap();
    }
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![store::file_name(9), store::file_name(12)],
        "the two newest, no leftovers"
    );
}

#[test]
fn the_exporter_reads_a_log_whose_oldest_segments_were_deleted_and_refuses_a_cursor_behind_it() {
    use crate::export::{RecordSource, SourceError, WalSource};
    let h = Harness::new();
    let snapshotter = h.snapshotter();
    h.traffic(0, 60);
    snapshotter.take().unwrap().unwrap();
    h.traffic(60, 60);
    assert!(snapshotter.take().unwrap().unwrap().segments_deleted > 0);
    let first_seq = h.journal.first_seq();
    let mut source = WalSource::new(Arc::clone(&h.wal));
    let batch = source.read_batch(first_seq - 1, 10).unwrap();
    assert_eq!(batch.first().map(|(seq, _)| *seq), Some(first_seq));
    let error = source.read_batch(0, 10).unwrap_err();
    assert!(
        matches!(error, SourceError::NotRetained { cursor: 0, first_seq: f } if f == first_seq),
        "{error}"
    );
    let refusal = crate::export::ExportError::Source(error);
    assert!(refusal.is_refusal(), "no retry brings deleted records back");
    assert!(refusal
        .to_string()
        .contains("deleted before they were exported"));
}

#[test]
fn retention_never_trusts_a_damaged_older_snapshot() {
    let (h, expected, files) = two_snapshots();
    damage_file(&files[1], |bytes| bytes[40] ^= 0x10);
    // The start falls back to the older snapshot; the damaged one stays
    // on disk and becomes the older kept one after the next snapshot.
    let h = h.reopen();
    assert_eq!(h.engine.snapshot(), expected);
    let snapshotter = h.snapshotter();
    h.traffic(200, 60);
    let first_seq = h.journal.first_seq();
    let taken = snapshotter.take().unwrap().unwrap();
    assert_eq!(
        taken.segments_deleted, 0,
        "the older kept snapshot is damaged"
    );
    assert_eq!(h.journal.first_seq(), first_seq);
}

#[test]
fn a_start_with_a_due_snapshot_writes_one_of_the_started_state_so_a_crash_loop_still_snapshots() {
    let h = Harness::new();
    h.traffic(0, 40);
    let covered = h.snapshotter().take().unwrap().unwrap().seq;
    h.traffic(40, 40);
    let expected = h.engine.snapshot();
    let h = h.reopen();
    let tail = h.journal.durable_seq() - covered;
    let snapshotter = h.snapshotter();
    let name = store::file_name(covered);
    snapshotter.status.set_newest(covered, name, 0);
    // Not due: the tail is shorter than the interval.
    assert_eq!(
        snapshotter.take_of_started(&h.engine, tail + 1).unwrap(),
        None
    );
    let taken = snapshotter
        .take_of_started(&h.engine, tail)
        .unwrap()
        .unwrap();
    assert_eq!(taken.seq, h.journal.durable_seq());
    assert_eq!(snapshotter.status.seq(), taken.seq);
    drop(snapshotter);
    let started = h.restart().unwrap();
    assert_eq!(started.snapshot.map(|used| used.seq), Some(taken.seq));
    assert_eq!(started.tail.records, 0);
    assert_eq!(started.engine.snapshot(), expected);
}
