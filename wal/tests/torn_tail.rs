//! Torn writes at the end of the newest segment are cut off, keeping
//! exactly the records written in full before the tear.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use flashsale_wal::{decode_segment, segment_file_name, Preallocation, Wal, WalConfig};
use support::{append_all, payload, replay, small_config};

/// `small_config` with segments preallocated or not.
fn config(dir: &Path, preallocation: Preallocation) -> WalConfig {
    let mut config = small_config(dir);
    config.preallocation = preallocation;
    config
}

fn newest_segment(dir: &Path) -> PathBuf {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| flashsale_wal::parse_segment_file_name(n).is_some())
        .collect();
    names.sort();
    dir.join(names.last().unwrap())
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// A log of several segments whose newest segment holds at least 4 records.
fn build_log(dir: &Path) -> Vec<Vec<u8>> {
    build_log_with(dir, Preallocation::Inline)
}

fn build_log_with(dir: &Path, preallocation: Preallocation) -> Vec<Vec<u8>> {
    let payloads: Vec<Vec<u8>> = (0..37)
        .map(|i| payload(i, 20 + (i as usize * 7) % 60))
        .collect();
    let wal = Wal::open(config(dir, preallocation)).unwrap();
    append_all(&wal, &payloads);
    payloads
}

#[test]
fn cut_at_every_offset_of_the_last_three_records_keeps_exactly_the_whole_records() {
    cut_at_every_offset(Preallocation::Off);
}

#[test]
fn zeros_from_every_offset_of_the_last_three_records_of_a_preallocated_segment_keep_exactly_the_whole_records(
) {
    cut_at_every_offset(Preallocation::Inline);
}

/// Tears the newest segment at every offset of its last three records: a
/// plain segment ends there; in a preallocated one, the bytes from there on
/// never reached the disk, which holds the zeros of preallocation.
fn cut_at_every_offset(preallocation: Preallocation) {
    let original = tempfile::tempdir().unwrap();
    let payloads = build_log_with(original.path(), preallocation);
    let newest = newest_segment(original.path());
    let bytes = fs::read(&newest).unwrap();
    let decoded = decode_segment(&bytes, 200).unwrap();
    assert!(decoded.damage.is_none() && decoded.records.len() >= 4);
    let last_three_start = decoded.records[decoded.records.len() - 3].offset;
    let mut cuts = 0;
    for cut in last_three_start..decoded.valid_len_bytes {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(original.path(), dir.path());
        let segment = dir.path().join(newest.file_name().unwrap());
        let mut torn = bytes.clone();
        match preallocation {
            Preallocation::Off => torn.truncate(cut as usize),
            _ => torn[cut as usize..].fill(0),
        }
        fs::write(&segment, &torn).unwrap();
        let kept: Vec<u64> = decoded
            .records
            .iter()
            .filter(|r| r.offset + 16 + r.payload.len() as u64 <= cut)
            .map(|r| r.seq)
            .collect();
        let expected_last = *kept.last().unwrap();
        let wal = Wal::open(config(dir.path(), preallocation)).unwrap();
        let records = replay(&wal, 1);
        assert_eq!(records.len() as u64, expected_last, "cut at {cut}");
        for record in &records {
            assert_eq!(
                record.payload,
                payloads[record.seq as usize - 1],
                "cut at {cut}"
            );
        }
        assert_eq!(
            wal.append(b"after").unwrap(),
            expected_last + 1,
            "numbering resumes after the cut"
        );
        let side_files = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_str()
                    .unwrap()
                    .contains(".torn-")
            })
            .count();
        let valid_end = decoded
            .records
            .iter()
            .find(|r| r.seq == expected_last)
            .map(|r| r.offset + 16 + r.payload.len() as u64)
            .unwrap();
        assert_eq!(
            side_files,
            usize::from(cut > valid_end),
            "side file only when bytes were cut (cut at {cut})"
        );
        cuts += 1;
    }
    assert!(cuts > 100);
}

#[test]
fn garbage_after_the_last_record_is_cut_into_a_side_file() {
    let dir = tempfile::tempdir().unwrap();
    let payloads = build_log_with(dir.path(), Preallocation::Off);
    let newest = newest_segment(dir.path());
    let mut bytes = fs::read(&newest).unwrap();
    let valid_len = bytes.len();
    let garbage: Vec<u8> = (0..100u8).map(|b| b.wrapping_mul(37)).collect();
    bytes.extend_from_slice(&garbage);
    fs::write(&newest, &bytes).unwrap();
    let wal = Wal::open(config(dir.path(), Preallocation::Off)).unwrap();
    assert_eq!(replay(&wal, 1).len(), payloads.len());
    let side = format!(
        "{}.torn-{valid_len:020}",
        newest.file_name().unwrap().to_str().unwrap()
    );
    assert_eq!(
        fs::read(dir.path().join(side)).unwrap(),
        garbage,
        "the cut bytes are kept"
    );
    assert_eq!(fs::metadata(&newest).unwrap().len(), valid_len as u64);
}

#[test]
fn garbage_in_the_zeros_of_a_preallocated_segment_is_cut_into_a_side_file_and_zeroed() {
    let dir = tempfile::tempdir().unwrap();
    let payloads = build_log(dir.path());
    let newest = newest_segment(dir.path());
    let mut bytes = fs::read(&newest).unwrap();
    let file_len = bytes.len();
    let valid_len = decode_segment(&bytes, 200).unwrap().valid_len_bytes as usize;
    // Garbage right after the last record, and a lone garbled sector
    // further on (zeros in between are part of the torn tail).
    let garbage: Vec<u8> = (1..=40u8).map(|b| b.wrapping_mul(37)).collect();
    bytes[valid_len..valid_len + garbage.len()].copy_from_slice(&garbage);
    bytes[file_len - 10] = 0x5A;
    let torn = bytes[valid_len..file_len - 9].to_vec();
    fs::write(&newest, &bytes).unwrap();
    let wal = Wal::open(small_config(dir.path())).unwrap();
    assert_eq!(replay(&wal, 1).len(), payloads.len());
    let side = format!(
        "{}.torn-{valid_len:020}",
        newest.file_name().unwrap().to_str().unwrap()
    );
    assert_eq!(
        fs::read(dir.path().join(side)).unwrap(),
        torn,
        "the cut bytes are kept"
    );
    drop(wal);
    let after = fs::read(&newest).unwrap();
    assert_eq!(
        after.len(),
        file_len,
        "the segment keeps its preallocated size"
    );
    assert!(
        after[valid_len..].iter().all(|&b| b == 0),
        "the torn bytes are zeroed"
    );
}

#[test]
fn zeros_after_the_last_record_are_the_clean_end_of_a_preallocated_segment() {
    let dir = tempfile::tempdir().unwrap();
    let payloads = build_log(dir.path());
    let newest = newest_segment(dir.path());
    let file_len = fs::metadata(&newest).unwrap().len();
    assert_eq!(file_len, small_config(dir.path()).segment_size_max_bytes);
    let wal = Wal::open(small_config(dir.path())).unwrap();
    assert_eq!(replay(&wal, 1).len(), payloads.len());
    let seq = wal.append(b"in place").unwrap();
    wal.wait_durable(seq).unwrap();
    drop(wal);
    let side_files = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .contains(".torn-")
        })
        .count();
    assert_eq!(side_files, 0, "zeros are no torn write");
    assert_eq!(
        fs::metadata(&newest).unwrap().len(),
        file_len,
        "written in place"
    );
    let wal = Wal::open(small_config(dir.path())).unwrap();
    assert_eq!(replay(&wal, 1).last().unwrap().payload, b"in place");
}

#[test]
fn zeroed_last_record_of_a_plain_segment_is_the_end_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let payloads = build_log_with(dir.path(), Preallocation::Off);
    let newest = newest_segment(dir.path());
    let mut bytes = fs::read(&newest).unwrap();
    let len = bytes.len();
    // The last record's bytes never reached the disk: zeros instead.
    let decoded = decode_segment(&bytes, 200).unwrap();
    let last = decoded.records.last().unwrap().offset as usize;
    bytes[last..len].fill(0);
    bytes.extend_from_slice(&[0u8; 4096]);
    fs::write(&newest, &bytes).unwrap();
    let wal = Wal::open(config(dir.path(), Preallocation::Off)).unwrap();
    assert_eq!(replay(&wal, 1).len(), payloads.len() - 1);
}

#[test]
fn crash_during_rotation_with_an_empty_or_partial_header_recovers() {
    for newest_len in [0usize, 1, 17, 31, 32] {
        let dir = tempfile::tempdir().unwrap();
        let payloads = build_log(dir.path());
        let next = dir
            .path()
            .join(segment_file_name(payloads.len() as u64 + 1));
        let header = flashsale_wal::format::encode_segment_header(payloads.len() as u64 + 1);
        fs::write(&next, &header[..newest_len]).unwrap();
        let wal = Wal::open(small_config(dir.path())).unwrap();
        assert_eq!(
            replay(&wal, 1).len(),
            payloads.len(),
            "header of {newest_len} bytes"
        );
        let seq = wal.append(b"after rotation crash").unwrap();
        wal.wait_durable(seq).unwrap();
        drop(wal);
        let wal = Wal::open(small_config(dir.path())).unwrap();
        assert_eq!(
            replay(&wal, 1).last().unwrap().payload,
            b"after rotation crash"
        );
    }
}

#[test]
fn an_empty_directory_becomes_a_log_starting_at_one() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(small_config(&dir.path().join("nested").join("wal"))).unwrap();
    assert_eq!(wal.append(b"x").unwrap(), 1);
}

#[test]
fn a_non_zero_byte_far_beyond_the_last_record_of_a_preallocated_segment_is_an_error_not_a_torn_tail(
) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config(dir.path());
    config.segment_size_max_bytes = 64 * 1024;
    let wal = Wal::open(config.clone()).unwrap();
    append_all(&wal, &[payload(1, 40), payload(2, 40)]);
    drop(wal);
    let segment = newest_segment(dir.path());
    let mut bytes = fs::read(&segment).unwrap();
    assert_eq!(bytes.len(), 64 * 1024);
    // Further than one batch (512 bytes) and a page past the last record:
    // no interrupted append writes there, so it is damage, not a tear.
    bytes[32 * 1024] = 0x01;
    fs::write(&segment, &bytes).unwrap();
    let error = Wal::open(config).expect_err("must refuse to start");
    let message = error.to_string();
    assert!(
        message.contains(segment.file_name().unwrap().to_str().unwrap()),
        "{message}"
    );
    assert!(message.contains("further than one batch"), "{message}");
    match error {
        flashsale_wal::WalError::Corrupt { kind, .. } => assert!(matches!(
            kind,
            flashsale_wal::DamageKind::BeyondOneBatch {
                end_offset: 32769,
                ..
            }
        )),
        other => panic!("not a corruption error: {other}"),
    }
}
