//! Damage that a crash cannot explain stops `open` with an error naming the
//! segment file and byte offset; nothing is dropped silently.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use flashsale_wal::format::{
    encode_record, encode_segment_header, SEGMENT_FIRST_SEQ_OFFSET, SEGMENT_VERSION_OFFSET,
};
use flashsale_wal::{decode_segment, DamageKind, Wal, WalError};
use support::{append_all, payload, small_config};

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            flashsale_wal::parse_segment_file_name(p.file_name().unwrap().to_str().unwrap())
                .is_some()
        })
        .collect();
    paths.sort();
    paths
}

/// A log with at least three segments of several records each.
fn build_log(dir: &Path) -> Vec<PathBuf> {
    let wal = Wal::open(small_config(dir)).unwrap();
    let payloads: Vec<Vec<u8>> = (0..40).map(|i| payload(i, 60)).collect();
    append_all(&wal, &payloads);
    drop(wal);
    let paths = segments(dir);
    assert!(paths.len() >= 3, "{paths:?}");
    paths
}

/// Opens the log and checks that it fails naming `segment` and `offset`.
fn assert_open_fails_at(dir: &Path, segment: &Path, offset: u64, case: &str) -> DamageKind {
    let error = Wal::open(small_config(dir)).expect_err(case);
    let message = error.to_string();
    let name = segment.file_name().unwrap().to_str().unwrap();
    assert!(message.contains(name), "{case}: {message}");
    assert!(
        message.contains(&format!("byte offset {offset}:")),
        "{case}: expected offset {offset}: {message}"
    );
    match error {
        WalError::Corrupt { kind, .. } => kind,
        other => panic!("{case}: not a corruption error: {other}"),
    }
}

fn with_modified<F: FnOnce(&mut Vec<u8>)>(path: &Path, modify: F, check: impl FnOnce()) {
    let original = fs::read(path).unwrap();
    let mut bytes = original.clone();
    modify(&mut bytes);
    fs::write(path, &bytes).unwrap();
    check();
    fs::write(path, &original).unwrap();
}

#[test]
fn flipped_byte_in_any_non_tail_record_of_the_newest_segment_is_an_error_not_a_cut() {
    let dir = tempfile::tempdir().unwrap();
    let paths = build_log(dir.path());
    let newest = paths.last().unwrap();
    let bytes = fs::read(newest).unwrap();
    let decoded = decode_segment(&bytes, 200).unwrap();
    let last_offset = decoded.records.last().unwrap().offset;
    let mut cases = 0;
    for record in &decoded.records[..decoded.records.len() - 1] {
        let end = record.offset + 16 + record.payload.len() as u64;
        for at in record.offset..end {
            with_modified(
                newest,
                |b| b[at as usize] ^= 0x40,
                || {
                    let kind = assert_open_fails_at(
                        dir.path(),
                        newest,
                        record.offset,
                        &format!("flip at {at}"),
                    );
                    assert!(
                        matches!(kind, DamageKind::FollowedByValidRecord { .. }),
                        "{kind}"
                    );
                },
            );
            cases += 1;
        }
    }
    assert!(cases > 100 && last_offset > 0);
    Wal::open(small_config(dir.path())).expect("restored log opens");
}

#[test]
fn flipped_byte_anywhere_in_an_older_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let paths = build_log(dir.path());
    for older in &paths[..paths.len() - 1] {
        let bytes = fs::read(older).unwrap();
        let decoded = decode_segment(&bytes, 200).unwrap();
        // Every byte of the records, and the first zeros after them.
        let flip_end = bytes.len().min(decoded.valid_len_bytes as usize + 64);
        for at in 0..flip_end {
            // A flip in the zero-filled rest of a preallocated segment is
            // damage where the next record would start.
            let offset = decoded
                .records
                .iter()
                .rev()
                .find(|r| r.offset as usize <= at)
                .map_or(0, |r| r.offset)
                .max(if at as u64 >= decoded.valid_len_bytes {
                    decoded.valid_len_bytes
                } else {
                    0
                });
            with_modified(
                older,
                |b| b[at] ^= 0x01,
                || {
                    assert_open_fails_at(
                        dir.path(),
                        older,
                        offset,
                        &format!("flip at {at} of {older:?}"),
                    );
                },
            );
        }
    }
}

#[test]
fn truncated_older_segment_is_an_error_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let paths = build_log(dir.path());
    let older = &paths[0];
    let bytes = fs::read(older).unwrap();
    let decoded = decode_segment(&bytes, 200).unwrap();
    let last = decoded.records.last().unwrap().offset;
    with_modified(
        older,
        // Cut inside its last record (the zeros after it do not matter).
        |b| b.truncate(decoded.valid_len_bytes as usize - 3),
        || {
            let kind = assert_open_fails_at(dir.path(), older, last, "truncated older segment");
            assert_eq!(kind, DamageKind::RecordTruncated);
        },
    );
}

#[test]
fn sequence_gap_inside_a_segment_is_an_error_even_at_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let paths = build_log(dir.path());
    for path in [&paths[0], paths.last().unwrap()] {
        let bytes = fs::read(path).unwrap();
        let decoded = decode_segment(&bytes, 200).unwrap();
        for skipped in [1usize, decoded.records.len() - 2] {
            // Rewrite the segment without record `skipped`: well-formed
            // records whose numbers jump.
            let mut rewritten = encode_segment_header(decoded.header.first_seq).to_vec();
            for (i, record) in decoded.records.iter().enumerate() {
                if i != skipped {
                    encode_record(record.seq, record.payload, &mut rewritten);
                }
            }
            let offset = decoded.records[skipped].offset;
            with_modified(
                path,
                |b| *b = rewritten.clone(),
                || {
                    let kind = assert_open_fails_at(dir.path(), path, offset, "gap");
                    let expected = decoded.records[skipped].seq;
                    assert!(
                        matches!(kind, DamageKind::UnexpectedSeq { expected: e, found } if e == expected && found == expected + 1),
                        "{kind}"
                    );
                },
            );
        }
    }
}

#[test]
fn missing_middle_segment_is_a_gap_error_naming_the_next_segment() {
    let dir = tempfile::tempdir().unwrap();
    let paths = build_log(dir.path());
    fs::remove_file(&paths[1]).unwrap();
    let kind = assert_open_fails_at(
        dir.path(),
        &paths[2],
        SEGMENT_FIRST_SEQ_OFFSET as u64,
        "missing segment",
    );
    assert!(matches!(kind, DamageKind::SegmentSeqGap { .. }), "{kind}");
}

#[test]
fn wrong_segment_headers_are_errors_in_older_and_newest_segments() {
    let dir = tempfile::tempdir().unwrap();
    let paths = build_log(dir.path());
    for path in [&paths[0], &paths[1], paths.last().unwrap()] {
        let first_seq =
            flashsale_wal::parse_segment_file_name(path.file_name().unwrap().to_str().unwrap())
                .unwrap();
        let with_header =
            |header: [u8; 32]| move |b: &mut Vec<u8>| b[..32].copy_from_slice(&header);
        // Valid checksum, wrong first sequence number.
        with_modified(
            path,
            with_header(encode_segment_header(first_seq + 1)),
            || {
                let kind = assert_open_fails_at(
                    dir.path(),
                    path,
                    SEGMENT_FIRST_SEQ_OFFSET as u64,
                    "first seq",
                );
                assert!(
                    matches!(kind, DamageKind::FirstSeqMismatch { .. }),
                    "{kind}"
                );
            },
        );
        // Bad magic.
        with_modified(
            path,
            |b| b[0] = b'X',
            || {
                assert_eq!(
                    assert_open_fails_at(dir.path(), path, 0, "magic"),
                    DamageKind::BadMagic
                );
            },
        );
        // Unknown version with a matching checksum.
        let mut future = encode_segment_header(first_seq);
        future[SEGMENT_VERSION_OFFSET] = 2;
        let crc = crc32fast::hash(&future[..28]);
        future[28..].copy_from_slice(&crc.to_le_bytes());
        with_modified(path, with_header(future), || {
            let kind = assert_open_fails_at(dir.path(), path, 0, "version");
            assert_eq!(kind, DamageKind::UnsupportedVersion { version: 2 });
        });
        // Header bytes changed without their checksum.
        with_modified(
            path,
            |b| b[SEGMENT_FIRST_SEQ_OFFSET] ^= 0x10,
            || {
                assert_eq!(
                    assert_open_fails_at(dir.path(), path, 0, "header crc"),
                    DamageKind::HeaderChecksumMismatch
                );
            },
        );
    }
}

#[test]
fn newest_segment_with_a_torn_header_but_records_after_it_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let paths = build_log(dir.path());
    let newest = paths.last().unwrap();
    with_modified(
        newest,
        |b| b[5] ^= 0xFF,
        || {
            assert_open_fails_at(dir.path(), newest, 0, "newest header");
        },
    );
}
