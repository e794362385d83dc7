//! Power loss at thousands of random points: every acknowledged record
//! survives, nothing that was never appended appears, the log reopens.
//!
//! Each case runs two phases on the simulated file system (see
//! `support::sim`). A phase opens the log (recovering the previous crash),
//! appends from two threads while waiting for some records, occasionally
//! deletes old segments, and loses power at a random operation (possibly
//! during recovery itself). A final open without a crash checks the result.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::thread;

use flashsale_wal::{Preallocation, Storage, SyncMode, Wal, WalConfig};
use parking_lot::Mutex;
use support::sim::SimStorage;
use support::Rng;

const CASES: u64 = 2_600;

fn cases() -> u64 {
    std::env::var("WAL_POWER_LOSS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES)
}
const PHASES: u64 = 2;

fn tiny_config() -> WalConfig {
    let mut config = WalConfig::new(Path::new("/sim/wal"));
    config.record_size_max_bytes = 48;
    config.batch_bytes_max = 128;
    config.queue_bytes_max = 256;
    config.segment_size_max_bytes = 32 + 128 + 64;
    config.sync_mode = SyncMode::Fdatasync;
    // Zero-filled segments, prepared on the writer thread so that a case's
    // operations (and its crash point) depend on its seed only.
    config.preallocation = Preallocation::Inline;
    config
}

/// What the log must hold: every record it may hold, by number, and which
/// of them were acknowledged.
#[derive(Default)]
struct Model {
    appended: BTreeMap<u64, Vec<u8>>,
    acknowledged: BTreeSet<u64>,
    deleted_below_max: u64,
}

impl Model {
    /// Checks a recovered log against the model, then forgets records that
    /// were lost (never acknowledged) so their numbers can be reused.
    fn check_recovered(&mut self, wal: &Wal, case: u64) {
        let first = wal.first_seq();
        assert!(
            first <= self.deleted_below_max.max(1),
            "case {case}: deleted more than asked ({first})"
        );
        let records: Vec<_> = wal
            .read_from(first)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let last = wal.last_seq();
        assert_eq!(
            records.len() as u64,
            last + 1 - first,
            "case {case}: replay is contiguous"
        );
        for record in &records {
            let appended = self.appended.get(&record.seq);
            assert_eq!(
                appended,
                Some(&record.payload),
                "case {case}: seq {} was never appended",
                record.seq
            );
        }
        for &seq in self.acknowledged.range(first..) {
            assert!(
                seq <= last,
                "case {case}: acknowledged record {seq} lost (last {last})"
            );
        }
        self.appended.retain(|&seq, _| seq <= last);
        self.acknowledged.retain(|&seq| seq <= last);
    }
}

fn run_workload(wal: &Arc<Wal>, model: &Arc<Mutex<Model>>, rng: &mut Rng, case: u64, phase: u64) {
    let handles: Vec<_> = (0..2u64)
        .map(|thread_id| {
            let wal = Arc::clone(wal);
            let model = Arc::clone(model);
            let mut rng = Rng::new(rng.next_u64());
            thread::spawn(move || {
                for i in 0..12u64 {
                    let len = 8 + rng.below(40) as usize;
                    let mut body = format!("{case}/{phase}/{thread_id}/{i}/").into_bytes();
                    body.resize(len.max(body.len()).min(48), b'.');
                    // Record the payload under the lock that also orders the
                    // append, as the service does.
                    let seq = {
                        let mut model = model.lock();
                        let Ok(seq) = wal.append(&body) else { return };
                        model.appended.insert(seq, body);
                        seq
                    };
                    if rng.chance(3) && wal.wait_durable(seq).is_ok() {
                        model.lock().acknowledged.insert(seq);
                    }
                }
            })
        })
        .collect();
    if rng.chance(4) {
        let _ = wal.delete_segments_before(wal.durable_seq() / 2);
    }
    for handle in handles {
        handle.join().unwrap();
    }
}

fn run_case(case: u64) -> u64 {
    let mut rng = Rng::new(case);
    let mut storage = SimStorage::new();
    let model = Arc::new(Mutex::new(Model::default()));
    let mut crash_points = 0;
    for phase in 0..PHASES {
        storage.arm_crash_at_op(1 + rng.below(60), rng.next_u64());
        crash_points += 1;
        let shared: Arc<dyn Storage> = Arc::new(storage.clone());
        if let Ok(wal) = Wal::open_with_storage(tiny_config(), shared) {
            let wal = Arc::new(wal);
            if phase > 0 || rng.chance(2) {
                model.lock().check_recovered(&wal, case);
            }
            run_workload(&wal, &model, &mut rng, case, phase);
            if wal.delete_segments_before(0).is_ok() {
                let first = wal.first_seq();
                let mut model = model.lock();
                model.deleted_below_max = model.deleted_below_max.max(first);
            }
            storage.crash_now();
            drop(wal);
        }
        storage = storage.crash_image(&mut rng);
    }
    let wal =
        Wal::open_with_storage(tiny_config(), Arc::new(storage.clone())).unwrap_or_else(|e| {
            panic!(
                "case {case}: reopen after crash failed: {e}; files {:?}",
                storage.dump()
            )
        });
    model.lock().check_recovered(&wal, case);
    crash_points
}

#[test]
fn acknowledged_records_survive_power_loss_at_5000_random_points() {
    let threads = 2;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            thread::spawn(move || {
                (0..cases())
                    .filter(|c| c % threads == t)
                    .map(run_case)
                    .sum::<u64>()
            })
        })
        .collect();
    let crash_points: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(
        crash_points >= 5_000 || cases() < CASES,
        "only {crash_points} crash points"
    );
}
