//! The log's everyday contract on real files: sequence numbers, durability
//! waiting, replay, rotation, following, retention and closing.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use flashsale_wal::{Wal, WalConfig, WalError, WalObserver};
use support::{append_all, payload, replay, small_config};

#[test]
fn sequence_numbers_start_at_one_and_are_contiguous() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(small_config(dir.path())).unwrap();
    assert_eq!(
        (wal.last_seq(), wal.durable_seq(), wal.first_seq()),
        (0, 0, 1)
    );
    let seqs = append_all(&wal, &[b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!((wal.last_seq(), wal.durable_seq()), (3, 3));
}

#[test]
fn replay_after_reopen_returns_exactly_the_acknowledged_records() {
    let dir = tempfile::tempdir().unwrap();
    let payloads: Vec<Vec<u8>> = (0..300).map(|i| payload(i, (i % 150) as usize)).collect();
    {
        let wal = Wal::open(small_config(dir.path())).unwrap();
        append_all(&wal, &payloads);
    }
    let wal = Wal::open(small_config(dir.path())).unwrap();
    let records = replay(&wal, 1);
    assert_eq!(records.len(), payloads.len());
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record.seq, i as u64 + 1);
        assert_eq!(record.payload, payloads[i]);
    }
    assert_eq!(
        wal.append(b"next").unwrap(),
        301,
        "numbering continues after reopen"
    );
}

#[test]
fn rotation_keeps_segments_at_or_below_the_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path());
    let wal = Wal::open(config.clone()).unwrap();
    for i in 0..200 {
        let seq = wal.append(&payload(i, 100)).unwrap();
        wal.wait_durable(seq).unwrap();
    }
    let mut segments = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == flashsale_wal::LOCK_FILE_NAME || name == flashsale_wal::LOG_META_FILE_NAME {
            continue;
        }
        assert!(
            flashsale_wal::parse_segment_file_name(entry.file_name().to_str().unwrap()).is_some()
        );
        assert!(entry.metadata().unwrap().len() <= config.segment_size_max_bytes);
        segments += 1;
    }
    assert!(segments > 10, "expected many segments, got {segments}");
}

#[test]
fn oversized_append_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(small_config(dir.path())).unwrap();
    let error = wal.append(&[0u8; 201]).unwrap_err();
    assert!(
        matches!(
            error,
            WalError::RecordTooLarge {
                len_bytes: 201,
                max_bytes: 200
            }
        ),
        "{error}"
    );
    assert_eq!(
        wal.append(&[0u8; 200]).unwrap(),
        1,
        "a failed append does not consume a number"
    );
    assert!(wal.failure().is_none());
}

#[test]
fn invalid_config_is_rejected_before_touching_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config(&dir.path().join("wal"));
    config.batch_bytes_max = 100;
    assert!(matches!(
        Wal::open(config).unwrap_err(),
        WalError::Config(_)
    ));
    assert!(!dir.path().join("wal").exists());
}

#[test]
fn concurrent_appenders_all_get_distinct_durable_sequence_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(small_config(dir.path())).unwrap());
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let wal = Arc::clone(&wal);
            thread::spawn(move || {
                (0..100u64)
                    .map(|i| {
                        let body = payload(t * 1000 + i, 20);
                        let seq = wal.append(&body).unwrap();
                        wal.wait_durable(seq).unwrap();
                        (seq, body)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut written: Vec<(u64, Vec<u8>)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    written.sort();
    let replayed: Vec<(u64, Vec<u8>)> = replay(&wal, 1)
        .into_iter()
        .map(|r| (r.seq, r.payload))
        .collect();
    assert_eq!(replayed, written);
}

#[test]
fn a_full_queue_makes_appenders_wait_instead_of_growing() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(small_config(dir.path())).unwrap());
    // Far more than queue_bytes_max (2 KiB) appended without waiting.
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let wal = Arc::clone(&wal);
            thread::spawn(move || {
                (0..500u64)
                    .map(|i| wal.append(&payload(t * 10_000 + i, 150)).unwrap())
                    .max()
            })
        })
        .collect();
    let last = writers
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .max()
        .unwrap();
    wal.wait_durable(last).unwrap();
    assert_eq!(replay(&wal, 1).len(), 2000);
}

#[test]
fn async_wait_completes_on_a_current_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(small_config(dir.path())).unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..50u64 {
            let wal = Arc::clone(&wal);
            tasks.push(tokio::spawn(async move {
                let seq = wal.append(&payload(i, 30)).unwrap();
                wal.wait_durable_async(seq).await.unwrap();
                assert!(wal.durable_seq() >= seq);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    assert_eq!(wal.durable_seq(), 50);
}

#[test]
fn a_reader_at_the_logs_end_waits_for_a_record_not_yet_appended() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(small_config(dir.path())).unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let waiting = tokio::spawn({
            let wal = Arc::clone(&wal);
            async move { wal.wait_end_durable_async(1).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "nothing appended yet");
        let seq = wal.append(&payload(1, 30)).unwrap();
        assert_eq!(seq, 1);
        waiting.await.unwrap().unwrap();
        assert!(wal.durable_seq() >= 1);
    });
}

#[test]
fn waiting_for_an_unassigned_sequence_number_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(small_config(dir.path())).unwrap();
    assert!(matches!(
        wal.wait_durable(1),
        Err(WalError::NotAssigned {
            seq: 1,
            last_seq: 0
        })
    ));
}

#[test]
fn reader_follows_new_durable_records_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(small_config(dir.path())).unwrap());
    let mut reader = wal.read_from(1).unwrap();
    assert!(reader.next().is_none(), "empty log");
    let mut seen = Vec::new();
    for round in 0..10u64 {
        let batch: Vec<Vec<u8>> = (0..20).map(|i| payload(round * 100 + i, 90)).collect();
        append_all(&wal, &batch);
        for record in reader.by_ref() {
            seen.push(record.unwrap());
        }
        assert_eq!(
            seen.len() as u64,
            wal.durable_seq(),
            "reader stops exactly at the durable end"
        );
    }
    for (i, record) in seen.iter().enumerate() {
        assert_eq!(record.seq, i as u64 + 1);
    }
}

#[test]
fn reader_never_returns_records_beyond_the_durable_end() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(small_config(dir.path())).unwrap());
    let appender = {
        let wal = Arc::clone(&wal);
        thread::spawn(move || {
            for i in 0..2000u64 {
                wal.append(&payload(i, 40)).unwrap();
            }
        })
    };
    let mut reader = wal.read_from(1).unwrap();
    let mut next_seq = 1;
    while next_seq <= 2000 {
        let durable_before = wal.durable_seq();
        match reader.next() {
            Some(record) => {
                let record = record.unwrap();
                assert_eq!(record.seq, next_seq);
                assert!(record.seq <= wal.durable_seq().max(durable_before));
                next_seq += 1;
            }
            None => thread::sleep(Duration::from_millis(1)),
        }
    }
    appender.join().unwrap();
}

#[test]
fn read_from_the_middle_starts_at_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(small_config(dir.path())).unwrap();
    let payloads: Vec<Vec<u8>> = (0..100).map(|i| payload(i, 70)).collect();
    append_all(&wal, &payloads);
    for from in [1u64, 2, 37, 99, 100] {
        let records = replay(&wal, from);
        assert_eq!(records.first().unwrap().seq, from);
        assert_eq!(
            records.first().unwrap().payload,
            payloads[from as usize - 1]
        );
        assert_eq!(records.len() as u64, 101 - from);
    }
    assert!(replay(&wal, 101).is_empty());
}

#[test]
fn deleting_segments_removes_only_whole_segments_below_the_limit_and_never_the_active_one() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(small_config(dir.path())).unwrap();
    let payloads: Vec<Vec<u8>> = (0..100).map(|i| payload(i, 100)).collect();
    append_all(&wal, &payloads);
    assert_eq!(wal.delete_segments_before(1).unwrap(), 0);
    let deleted = wal.delete_segments_before(50).unwrap();
    assert!(deleted > 0);
    let first = wal.first_seq();
    assert!(first > 1 && first <= 50, "first retained {first}");
    assert!(matches!(
        wal.read_from(first - 1),
        Err(WalError::NotRetained { .. })
    ));
    assert_eq!(replay(&wal, first).len() as u64, 101 - first);
    wal.delete_segments_before(u64::MAX).unwrap();
    assert!(wal.first_seq() <= 100, "the active segment stays");
    let last = wal.first_seq();
    drop(wal);
    let wal = Wal::open(small_config(dir.path())).unwrap();
    assert_eq!(wal.first_seq(), last, "retention survives reopen");
    assert_eq!(replay(&wal, last).last().unwrap().seq, 100);
}

#[test]
fn close_makes_queued_records_durable_and_refuses_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(small_config(dir.path())).unwrap();
    let mut last = 0;
    for i in 0..500 {
        last = wal.append(&payload(i, 50)).unwrap();
    }
    wal.close();
    assert_eq!(wal.durable_seq(), last);
    assert!(matches!(wal.append(b"late"), Err(WalError::Closed)));
    wal.wait_durable(last).unwrap();
    drop(wal);
    let wal = Wal::open(small_config(dir.path())).unwrap();
    assert_eq!(replay(&wal, 1).len(), 500);
}

#[derive(Default)]
struct CountingObserver {
    records: AtomicUsize,
    batches: AtomicUsize,
}

impl WalObserver for CountingObserver {
    fn on_batch(&self, records: usize, _bytes: usize, _latency: Duration) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn observer_sees_every_record_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let observer = Arc::new(CountingObserver::default());
    let mut config: WalConfig = small_config(dir.path());
    config.observer = Some(observer.clone());
    let wal = Wal::open(config).unwrap();
    append_all(&wal, &(0..100).map(|i| payload(i, 10)).collect::<Vec<_>>());
    wal.close();
    assert_eq!(observer.records.load(Ordering::Relaxed), 100);
    let batches = observer.batches.load(Ordering::Relaxed);
    assert!((1..=100).contains(&batches));
}

#[test]
fn wal_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Wal>();
    assert_send_sync::<WalError>();
    fn assert_send<T: Send>() {}
    assert_send::<flashsale_wal::WalReader>();
}

#[test]
fn a_second_open_of_the_same_log_is_refused_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let first = flashsale_wal::Wal::open(flashsale_wal::WalConfig::new(dir.path())).unwrap();
    let second = flashsale_wal::Wal::open(flashsale_wal::WalConfig::new(dir.path()));
    match second {
        Err(flashsale_wal::WalError::Locked { dir: locked }) => assert_eq!(locked, dir.path()),
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("two handles on one log"),
    }
    first.close();
    drop(first);
    flashsale_wal::Wal::open(flashsale_wal::WalConfig::new(dir.path())).unwrap();
}

#[test]
fn many_async_waiters_each_wake_when_their_record_is_durable_and_cancelled_waits_do_no_harm() {
    let dir = tempfile::tempdir().unwrap();
    let wal = std::sync::Arc::new(
        flashsale_wal::Wal::open(flashsale_wal::WalConfig::new(dir.path())).unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // A wait that is abandoned before its record is durable.
        let seq = wal.append(b"abandoned").unwrap();
        let abandoned = tokio::time::timeout(
            std::time::Duration::from_nanos(1),
            wal.wait_durable_async(seq),
        );
        let _ = abandoned.await;
        let mut tasks = Vec::new();
        for n in 0..300u32 {
            let wal = std::sync::Arc::clone(&wal);
            tasks.push(tokio::spawn(async move {
                let seq = wal.append(&n.to_le_bytes()).unwrap();
                wal.wait_durable_async(seq).await.unwrap();
                assert!(wal.durable_seq() >= seq, "woken before {seq} was durable");
                seq
            }));
        }
        let mut seqs = Vec::new();
        for task in tasks {
            seqs.push(task.await.unwrap());
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (2..=301).collect::<Vec<u64>>());
    });
}

#[test]
fn a_new_log_moves_to_segments_zero_filled_ahead_and_replays_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config(dir.path());
    config.preallocation = flashsale_wal::Preallocation::Ahead;
    let segment_size_max_bytes = config.segment_size_max_bytes;
    let wal = Wal::open(config.clone()).unwrap();
    let prepared = dir.path().join(flashsale_wal::PREPARED_SEGMENT_FILE_NAME);
    // The preparer zero-fills the next segment in the background; the
    // plain first segment is left once that is ready.
    let payloads: Vec<Vec<u8>> = (0..60).map(|i| payload(i, 40)).collect();
    for chunk in payloads.chunks(6) {
        append_all(&wal, chunk);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(replay(&wal, 1).len(), payloads.len());
    drop(wal);
    let mut sizes: Vec<(String, u64)> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap())
        .filter_map(|e| {
            let name = e.file_name().into_string().unwrap();
            flashsale_wal::parse_segment_file_name(&name)?;
            Some((name, e.metadata().unwrap().len()))
        })
        .collect();
    sizes.sort();
    assert!(sizes.len() >= 3, "{sizes:?}");
    for (name, len_bytes) in &sizes[1..] {
        assert_eq!(*len_bytes, segment_size_max_bytes, "{name} is preallocated");
    }
    assert!(prepared.exists(), "the next segment waits, zero-filled");
    let wal = Wal::open(config).unwrap();
    let records = replay(&wal, 1);
    let replayed: Vec<Vec<u8>> = records.into_iter().map(|r| r.payload).collect();
    assert_eq!(replayed, payloads);
}
