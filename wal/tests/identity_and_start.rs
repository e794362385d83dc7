//! The log's identity and start, kept in `LOG_META`: an identity that
//! survives reopen, an upgrade path for logs written before the file
//! existed, a lost oldest segment noticed instead of shortening the log
//! silently, an interrupted deletion finished, a damaged file refused.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flashsale_wal::format::{decode_log_meta, encode_log_meta, LogMeta, LogMetaDamage};
use flashsale_wal::{parse_segment_file_name, Wal, WalError, LOG_META_FILE_NAME};
use support::sim::SimStorage;
use support::{append_all, payload, replay, small_config, Rng};

/// Segment files of `dir`, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            parse_segment_file_name(path.file_name().unwrap().to_str().unwrap()).is_some()
        })
        .collect();
    paths.sort();
    paths
}

fn first_seq_of(segment: &Path) -> u64 {
    parse_segment_file_name(segment.file_name().unwrap().to_str().unwrap()).unwrap()
}

/// A closed log of 100 records of 100 bytes: many segments.
fn build_log(dir: &Path) -> u128 {
    let wal = Wal::open(small_config(dir)).unwrap();
    let payloads: Vec<Vec<u8>> = (1..=100).map(|i| payload(i, 100)).collect();
    append_all(&wal, &payloads);
    assert!(segments(dir).len() > 5, "the test needs several segments");
    wal.log_id()
}

fn meta_on_disk(dir: &Path) -> LogMeta {
    decode_log_meta(&fs::read(dir.join(LOG_META_FILE_NAME)).unwrap()).unwrap()
}

#[test]
fn the_identity_survives_reopen_and_differs_between_logs() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let id_a = build_log(a.path());
    let reopened = Wal::open(small_config(a.path())).unwrap();
    assert_eq!(reopened.log_id(), id_a, "the same log after reopen");
    assert_eq!(meta_on_disk(a.path()).log_id, id_a, "kept in LOG_META");
    let id_b = Wal::open(small_config(b.path())).unwrap().log_id();
    assert_ne!(id_a, id_b, "two logs, two identities");
    assert_eq!(meta_on_disk(b.path()).start_seq, 1, "a new log starts at 1");
}

#[test]
fn a_legacy_log_gets_an_identity_at_its_next_open() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path());
    {
        let wal = Wal::open(small_config(dir.path())).unwrap();
        assert!(wal.delete_segments_before(50).unwrap() > 0);
    }
    // A log written before LOG_META existed: segments, no metadata file.
    fs::remove_file(dir.path().join(LOG_META_FILE_NAME)).unwrap();
    let oldest = first_seq_of(&segments(dir.path())[0]);
    assert!(oldest > 1);
    let wal = Wal::open(small_config(dir.path())).unwrap();
    let id = wal.log_id();
    assert_eq!(
        (wal.start_seq(), wal.first_seq()),
        (oldest, oldest),
        "the start is the oldest segment's first record"
    );
    assert_eq!(replay(&wal, oldest).last().unwrap().seq, 100);
    drop(wal);
    assert_eq!(
        meta_on_disk(dir.path()),
        LogMeta {
            log_id: id,
            start_seq: oldest
        }
    );
    let wal = Wal::open(small_config(dir.path())).unwrap();
    assert_eq!(wal.log_id(), id, "the new identity is kept from then on");
}

#[test]
fn a_missing_oldest_segment_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path());
    let found = segments(dir.path());
    fs::remove_file(&found[0]).unwrap();
    let second = first_seq_of(&found[1]);
    let error = Wal::open(small_config(dir.path())).unwrap_err();
    match &error {
        WalError::StartMissing {
            start_seq: 1,
            segment,
            found_first_seq,
        } => assert_eq!((segment, *found_first_seq), (&found[1], second)),
        other => panic!("expected StartMissing, got {other:?}"),
    }
    let text = error.to_string();
    assert!(
        text.contains(&format!("records 1..{} are missing", second - 1)),
        "{text}"
    );
    assert!(text.contains(found[1].to_str().unwrap()), "{text}");
}

#[test]
fn a_log_whose_segments_are_all_gone_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path());
    for segment in segments(dir.path()) {
        fs::remove_file(segment).unwrap();
    }
    let error = Wal::open(small_config(dir.path())).unwrap_err();
    assert!(
        matches!(error, WalError::SegmentsMissing { start_seq: 1, .. }),
        "{error:?}"
    );
    assert!(segments(dir.path()).is_empty(), "no new empty log was made");
}

#[test]
fn a_log_ending_before_its_start_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let id = build_log(dir.path());
    let meta = LogMeta {
        log_id: id,
        start_seq: 500,
    };
    fs::write(dir.path().join(LOG_META_FILE_NAME), encode_log_meta(&meta)).unwrap();
    let error = Wal::open(small_config(dir.path())).unwrap_err();
    assert!(
        matches!(
            error,
            WalError::EndsBeforeStart {
                start_seq: 500,
                last_seq: 100,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("records 101..499 are missing"));
}

#[test]
fn an_interrupted_deletion_is_finished_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let id = build_log(dir.path());
    let found = segments(dir.path());
    let start = first_seq_of(&found[3]);
    // The crash came after the start was raised, before any deletion.
    let meta = LogMeta {
        log_id: id,
        start_seq: start,
    };
    fs::write(dir.path().join(LOG_META_FILE_NAME), encode_log_meta(&meta)).unwrap();
    let wal = Wal::open(small_config(dir.path())).unwrap();
    assert_eq!(
        segments(dir.path()),
        found[3..],
        "the deletion was finished"
    );
    assert_eq!((wal.start_seq(), wal.first_seq()), (start, start));
    assert!(matches!(
        wal.read_from(start - 1),
        Err(WalError::NotRetained { .. })
    ));
    let records = replay(&wal, start);
    assert_eq!(records.first().unwrap().seq, start);
    assert_eq!(records.last().unwrap().seq, 100);
}

#[test]
fn records_before_the_start_are_not_handed_out_even_inside_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let id = build_log(dir.path());
    let second = first_seq_of(&segments(dir.path())[1]);
    let start = second + 1;
    let meta = LogMeta {
        log_id: id,
        start_seq: start,
    };
    fs::write(dir.path().join(LOG_META_FILE_NAME), encode_log_meta(&meta)).unwrap();
    let wal = Wal::open(small_config(dir.path())).unwrap();
    assert_eq!(wal.first_seq(), start);
    assert!(matches!(
        wal.read_from(second),
        Err(WalError::NotRetained { seq, first_seq }) if seq == second && first_seq == start
    ));
    assert_eq!(replay(&wal, start).first().unwrap().seq, start);
}

#[test]
fn deletion_raises_the_start_on_disk_before_it_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let id = build_log(dir.path());
    let wal = Wal::open(small_config(dir.path())).unwrap();
    assert_eq!(wal.delete_segments_before(1).unwrap(), 0);
    assert_eq!(meta_on_disk(dir.path()).start_seq, 1, "nothing deleted");
    assert!(wal.delete_segments_before(50).unwrap() > 0);
    let start = wal.start_seq();
    assert_eq!(first_seq_of(&segments(dir.path())[0]), start);
    assert_eq!(
        meta_on_disk(dir.path()),
        LogMeta {
            log_id: id,
            start_seq: start
        }
    );
    drop(wal);
    let wal = Wal::open(small_config(dir.path())).unwrap();
    assert_eq!((wal.start_seq(), wal.log_id()), (start, id));
}

#[test]
fn a_damaged_metadata_file_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path());
    let path = dir.path().join(LOG_META_FILE_NAME);
    let good = fs::read(&path).unwrap();
    let mut flipped = good.clone();
    flipped[20] ^= 1;
    let cases = [
        (flipped, LogMetaDamage::ChecksumMismatch),
        (
            good[..good.len() - 1].to_vec(),
            LogMetaDamage::WrongLength {
                len_bytes: good.len() as u64 - 1,
            },
        ),
        (Vec::new(), LogMetaDamage::WrongLength { len_bytes: 0 }),
    ];
    for (bytes, expected) in cases {
        fs::write(&path, &bytes).unwrap();
        let error = Wal::open(small_config(dir.path())).unwrap_err();
        match &error {
            WalError::MetaCorrupt { path: named, kind } => {
                assert_eq!((named, kind), (&path, &expected));
            }
            other => panic!("expected MetaCorrupt, got {other:?}"),
        }
        assert!(
            error.to_string().contains(path.to_str().unwrap()),
            "{error}"
        );
    }
    fs::write(&path, &good).unwrap();
    Wal::open(small_config(dir.path())).unwrap();
}

/// Power loss at every operation of a deletion (metadata written, renamed,
/// segments removed): the log always reopens, starting at the old or the
/// new start, with every record from there on.
#[test]
fn every_crash_point_of_a_deletion_leaves_a_log_that_opens() {
    let config = small_config(Path::new("/sim/wal"));
    for crash_op in 1..=16u64 {
        for seed in 0..8u64 {
            let storage = SimStorage::new();
            let wal = Wal::open_with_storage(config.clone(), Arc::new(storage.clone())).unwrap();
            let payloads: Vec<Vec<u8>> = (1..=60).map(|i| payload(i, 100)).collect();
            append_all(&wal, &payloads);
            let id = wal.log_id();
            storage.arm_crash_at_op(crash_op, seed);
            let result = wal.delete_segments_before(50);
            storage.crash_now();
            drop(wal);
            let image = storage.crash_image(&mut Rng::new(seed * 100 + crash_op));
            let wal = Wal::open_with_storage(config.clone(), Arc::new(image))
                .unwrap_or_else(|e| panic!("crash at op {crash_op}, seed {seed}: {e}"));
            assert_eq!(wal.log_id(), id);
            let first = wal.first_seq();
            assert!(first <= 50, "crash at op {crash_op}: start {first}");
            if result.is_ok_and(|deleted| deleted > 0) {
                assert!(first > 1, "a finished deletion is not undone");
            }
            let records = replay(&wal, first);
            assert_eq!(records.first().unwrap().seq, first);
            assert_eq!(records.last().unwrap().seq, 60);
        }
    }
}
