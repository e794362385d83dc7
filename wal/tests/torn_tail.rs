//! Torn writes at the end of the newest segment are cut off, keeping
//! exactly the records written in full before the tear.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use flashsale_wal::{decode_segment, segment_file_name, Wal};
use support::{append_all, payload, replay, small_config};

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
    let payloads: Vec<Vec<u8>> = (0..37)
        .map(|i| payload(i, 20 + (i as usize * 7) % 60))
        .collect();
    let wal = Wal::open(small_config(dir)).unwrap();
    append_all(&wal, &payloads);
    payloads
}

#[test]
fn cut_at_every_offset_of_the_last_three_records_keeps_exactly_the_whole_records() {
    let original = tempfile::tempdir().unwrap();
    let payloads = build_log(original.path());
    let newest = newest_segment(original.path());
    let bytes = fs::read(&newest).unwrap();
    let decoded = decode_segment(&bytes, 200).unwrap();
    assert!(decoded.damage.is_none() && decoded.records.len() >= 4);
    let last_three_start = decoded.records[decoded.records.len() - 3].offset;
    let mut cuts = 0;
    for cut in last_three_start..bytes.len() as u64 {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(original.path(), dir.path());
        let segment = dir.path().join(newest.file_name().unwrap());
        fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let kept: Vec<u64> = decoded
            .records
            .iter()
            .filter(|r| r.offset + 16 + r.payload.len() as u64 <= cut)
            .map(|r| r.seq)
            .collect();
        let expected_last = *kept.last().unwrap();
        let wal = Wal::open(small_config(dir.path())).unwrap();
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
    let payloads = build_log(dir.path());
    let newest = newest_segment(dir.path());
    let mut bytes = fs::read(&newest).unwrap();
    let valid_len = bytes.len();
    let garbage: Vec<u8> = (0..100u8).map(|b| b.wrapping_mul(37)).collect();
    bytes.extend_from_slice(&garbage);
    fs::write(&newest, &bytes).unwrap();
    let wal = Wal::open(small_config(dir.path())).unwrap();
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
fn zeroed_tail_is_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    let payloads = build_log(dir.path());
    let newest = newest_segment(dir.path());
    let mut bytes = fs::read(&newest).unwrap();
    let len = bytes.len();
    // The last record's bytes never reached the disk: zeros instead.
    let decoded = decode_segment(&bytes, 200).unwrap();
    let last = decoded.records.last().unwrap().offset as usize;
    bytes[last..len].fill(0);
    bytes.extend_from_slice(&[0u8; 4096]);
    fs::write(&newest, &bytes).unwrap();
    let wal = Wal::open(small_config(dir.path())).unwrap();
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
