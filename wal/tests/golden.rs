//! The on-disk format cannot change by accident: a committed segment file
//! must decode to known records, and writing those records must produce
//! exactly its bytes.

use std::fs;
use std::path::PathBuf;

use flashsale_wal::format::*;
use flashsale_wal::{decode_segment, segment_file_name, Preallocation, Wal, WalConfig};

const GOLDEN: &str = "tests/golden/segment-v1.wal";
/// The same records in a preallocated segment of `PREALLOCATED_SEGMENT_BYTES`.
const GOLDEN_PREALLOCATED: &str = "tests/golden/segment-v1-preallocated.wal";
const PREALLOCATED_SEGMENT_BYTES: u64 = 512;

fn golden_records() -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        b"flashsale".to_vec(),
        (0u8..=63).collect(),
        vec![0xFF; 5],
    ]
}

fn encoded_golden() -> Vec<u8> {
    let mut bytes = encode_segment_header(1).to_vec();
    for (i, payload) in golden_records().iter().enumerate() {
        encode_record(i as u64 + 1, payload, &mut bytes);
    }
    bytes
}

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(GOLDEN)
}

fn golden_preallocated_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(GOLDEN_PREALLOCATED)
}

fn encoded_golden_preallocated() -> Vec<u8> {
    let mut bytes = encoded_golden();
    bytes.resize(PREALLOCATED_SEGMENT_BYTES as usize, 0);
    bytes
}

/// Writes `records` one by one, each durable before the next, and returns
/// the bytes of segment 1.
fn write_log(config: WalConfig) -> Vec<u8> {
    let dir = config.dir.clone();
    let wal = Wal::open(config).unwrap();
    for payload in golden_records() {
        let seq = wal.append(&payload).unwrap();
        wal.wait_durable(seq).unwrap();
    }
    drop(wal);
    fs::read(dir.join(segment_file_name(1))).unwrap()
}

/// Writes the golden file; run once with `WAL_GOLDEN_WRITE=1` and commit.
#[test]
fn write_golden_file_when_asked() {
    if std::env::var_os("WAL_GOLDEN_WRITE").is_some() {
        fs::write(golden_path(), encoded_golden()).unwrap();
        fs::write(golden_preallocated_path(), encoded_golden_preallocated()).unwrap();
    }
}

#[test]
fn golden_segment_decodes_to_the_known_records() {
    let bytes = fs::read(golden_path()).expect("golden file is committed");
    let decoded = decode_segment(&bytes, 1024).unwrap();
    assert_eq!(decoded.header.first_seq, 1);
    assert_eq!(decoded.damage, None);
    assert_eq!(decoded.valid_len_bytes, bytes.len() as u64);
    let payloads: Vec<Vec<u8>> = decoded.records.iter().map(|r| r.payload.to_vec()).collect();
    assert_eq!(payloads, golden_records());
    let seqs: Vec<u64> = decoded.records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
}

#[test]
fn encoding_the_golden_records_reproduces_the_golden_bytes() {
    let bytes = fs::read(golden_path()).unwrap();
    assert_eq!(encoded_golden(), bytes);
}

#[test]
fn the_log_writes_exactly_the_golden_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = WalConfig::new(dir.path());
    config.preallocation = Preallocation::Off;
    assert_eq!(write_log(config), fs::read(golden_path()).unwrap());
}

#[test]
fn a_preallocated_segment_is_the_golden_bytes_then_zeros_to_its_full_size() {
    let preallocated = fs::read(golden_preallocated_path()).expect("golden file is committed");
    assert_eq!(preallocated, encoded_golden_preallocated());
    let decoded = decode_segment(&preallocated, 1024).unwrap();
    assert_eq!(
        decoded.damage, None,
        "zeros after the last record are its end"
    );
    assert_eq!(decoded.records.len(), golden_records().len());
    let dir = tempfile::tempdir().unwrap();
    let mut config = WalConfig::new(dir.path());
    config.preallocation = Preallocation::Inline;
    config.record_size_max_bytes = 64;
    config.batch_bytes_max = 256;
    config.queue_bytes_max = 256;
    config.segment_size_max_bytes = PREALLOCATED_SEGMENT_BYTES;
    assert_eq!(write_log(config), preallocated);
}

#[test]
fn golden_bytes_match_the_documented_layout() {
    let bytes = fs::read(golden_path()).unwrap();
    // Segment header (docs/wal-format.md, "Segment header").
    assert_eq!(&bytes[0..8], b"FSWALSEG");
    assert_eq!(&bytes[SEGMENT_VERSION_OFFSET..][..4], &[1, 0, 0, 0]);
    assert_eq!(&bytes[SEGMENT_FIRST_SEQ_OFFSET..][..8], &1u64.to_le_bytes());
    assert_eq!(&bytes[SEGMENT_RESERVED_OFFSET..][..8], &[0; 8]);
    assert_eq!(
        &bytes[SEGMENT_CRC_OFFSET..][..4],
        &crc32fast::hash(&bytes[..28]).to_le_bytes()
    );
    assert_eq!(SEGMENT_HEADER_SIZE, 32);
    // Second record, "flashsale" (docs/wal-format.md, "Record").
    let record = &bytes[SEGMENT_HEADER_SIZE + RECORD_HEADER_SIZE..];
    assert_eq!(&record[RECORD_LEN_OFFSET..][..4], &9u32.to_le_bytes());
    assert_eq!(&record[RECORD_SEQ_OFFSET..][..8], &2u64.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&record[..12]);
    crc.update(b"flashsale");
    assert_eq!(
        &record[RECORD_CRC_OFFSET..][..4],
        &crc.finalize().to_le_bytes()
    );
    assert_eq!(&record[16..25], b"flashsale");
    assert_eq!(
        bytes.len(),
        32 + golden_records().iter().map(|p| 16 + p.len()).sum::<usize>()
    );
}
