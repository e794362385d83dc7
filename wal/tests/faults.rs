//! A failed write or fsync fails the log: no waiter of that batch hears
//! success, every later append fails, nothing is retried, and a restart
//! does not take what a failed fsync left in the page cache for durable.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use flashsale_wal::{segment_file_name, Wal, WalError, WalObserver};
use support::sim::SimStorage;
use support::{append_all, payload, replay, small_config, Rng};

#[derive(Default)]
struct FailureCounter(AtomicUsize);

impl WalObserver for FailureCounter {
    fn on_batch(&self, _: usize, _: usize, _: Duration) {}
    fn on_failed(&self, _reason: &str) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs 4 appender threads against a log whose `arm` fault fires, and
/// checks the failure contract. Returns the acknowledged sequence numbers.
fn run_with_fault(arm: impl FnOnce(&SimStorage), seed: u64) -> Vec<u64> {
    let storage = SimStorage::new();
    let observer = Arc::new(FailureCounter::default());
    let mut config = small_config(Path::new("/sim/wal"));
    config.observer = Some(observer.clone());
    let wal = Arc::new(Wal::open_with_storage(config, Arc::new(storage.clone())).unwrap());
    arm(&storage);
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let wal = Arc::clone(&wal);
            let mut rng = Rng::new(seed * 10 + t);
            thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..200u64 {
                    let Ok(seq) = wal.append(&payload(t * 1000 + i, 1 + rng.below(150) as usize))
                    else {
                        break;
                    };
                    match wal.wait_durable(seq) {
                        Ok(()) => acked.push(seq),
                        Err(error) => {
                            assert!(matches!(error, WalError::Failed { .. }), "{error}");
                            break;
                        }
                    }
                }
                acked
            })
        })
        .collect();
    let acked: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let failure = wal.failure().expect("the fault fails the log");
    assert!(failure.contains("injected"), "{failure}");
    let durable = wal.durable_seq();
    assert!(
        acked.iter().all(|&seq| seq <= durable),
        "an ack beyond the durable end"
    );
    assert!(durable < wal.last_seq(), "the failed batch is not durable");
    assert!(
        matches!(wal.append(b"later"), Err(WalError::Failed { .. })),
        "later appends fail"
    );
    assert!(matches!(
        wal.wait_durable(durable + 1),
        Err(WalError::Failed { .. })
    ));
    assert_eq!(
        observer.0.load(Ordering::Relaxed),
        1,
        "on_failed reported once"
    );
    thread::sleep(Duration::from_millis(5));
    assert_eq!(
        wal.durable_seq(),
        durable,
        "nothing is retried after a failure"
    );
    drop(wal);
    // A restart sees at least everything acknowledged.
    let reopened =
        Wal::open_with_storage(small_config(Path::new("/sim/wal")), Arc::new(storage)).unwrap();
    assert!(reopened.durable_seq() >= durable);
    acked
}

#[test]
fn failed_write_acknowledges_nothing_of_its_batch_and_fails_later_appends() {
    for n in [1u64, 2, 5, 17] {
        run_with_fault(|s| s.fail_write_number(n), n);
    }
}

#[test]
fn failed_fsync_acknowledges_nothing_of_its_batch_and_is_never_retried() {
    for n in [1u64, 2, 5, 17] {
        run_with_fault(|s| s.fail_sync_number(n), n);
    }
}

#[test]
fn failure_of_a_blocked_writer_wakes_async_waiters_with_the_error() {
    let storage = SimStorage::new();
    let wal = Arc::new(
        Wal::open_with_storage(
            small_config(Path::new("/sim/wal")),
            Arc::new(storage.clone()),
        )
        .unwrap(),
    );
    storage.fail_sync_number(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results: Vec<Result<(), WalError>> = runtime.block_on(async {
        let seqs: Vec<u64> = (0..20)
            .filter_map(|i| wal.append(&payload(i, 10)).ok())
            .collect();
        let mut results = Vec::new();
        for seq in seqs {
            results.push(wal.wait_durable_async(seq).await);
        }
        results
    });
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(WalError::Failed { .. }))),
        "{results:?}"
    );
}

/// After a failed fsync, Linux may keep the batch that never reached the
/// disk in the page cache, marked clean. A restarted process that reads its
/// segments through the cache would replay that batch as durable; recovery
/// must read what is on the disk.
#[test]
fn a_failed_fsync_is_not_laundered_by_a_restart() {
    let storage = SimStorage::new();
    let config = small_config(Path::new("/sim/wal"));
    let wal = Wal::open_with_storage(config.clone(), Arc::new(storage.clone())).unwrap();
    append_all(&wal, &[payload(1, 20), payload(2, 20), payload(3, 20)]);
    storage.fail_sync_number(1);
    let failed: Vec<u64> = (10..13)
        .filter_map(|tag| wal.append(&payload(tag, 20)).ok())
        .collect();
    assert!(wal.wait_durable(failed[0]).is_err(), "the sync failed");
    drop(wal);
    let restarted = storage.restart_image();
    let segment = Path::new("/sim/wal").join(segment_file_name(1));
    let cached = restarted.contents(&segment).unwrap();
    assert!(
        cached.windows(20).any(|bytes| bytes == payload(10, 20)),
        "the failed batch is still in the cache the restarted process reads through"
    );
    let wal = Wal::open_with_storage(config.clone(), Arc::new(restarted.clone())).unwrap();
    let seqs: Vec<u64> = replay(&wal, 1).iter().map(|record| record.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3], "no record of the failed batch appears");
    assert_eq!(wal.last_seq(), 3);
    assert_eq!(wal.append(b"next").unwrap(), 4, "its numbers are reused");
    wal.wait_durable(4).unwrap();
    drop(wal);
    let wal = Wal::open_with_storage(config, Arc::new(restarted)).unwrap();
    assert_eq!(replay(&wal, 1).last().map(|record| record.seq), Some(4));
}
