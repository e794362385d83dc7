//! Replays the committed fuzz corpus through the fuzz target's function, so
//! that CI covers it without a nightly toolchain or libFuzzer.

use std::fs;
use std::path::PathBuf;

use flashsale_wal::format::{
    encode_record, encode_segment_header, fuzz_decode_segment, FUZZ_RECORD_SIZE_MAX_BYTES,
};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/decode_segment")
}

fn segment(first_seq: u64, records: &[(u64, &[u8])]) -> Vec<u8> {
    let mut bytes = encode_segment_header(first_seq).to_vec();
    for (seq, payload) in records {
        encode_record(*seq, payload, &mut bytes);
    }
    bytes
}

/// Interesting inputs: valid segments and every kind of damage.
fn seed_inputs() -> Vec<(String, Vec<u8>)> {
    let golden =
        fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/segment-v1.wal"))
            .unwrap();
    let big = vec![0x5Au8; FUZZ_RECORD_SIZE_MAX_BYTES as usize];
    let valid = segment(7, &[(7, b"a"), (8, b"bb"), (9, &big), (10, b"")]);
    let mut inputs = vec![
        ("empty".to_string(), Vec::new()),
        ("one-byte".to_string(), vec![b'F']),
        (
            "header-partial".to_string(),
            encode_segment_header(1)[..31].to_vec(),
        ),
        ("header-only".to_string(), encode_segment_header(1).to_vec()),
        ("golden".to_string(), golden.clone()),
        ("valid-max-record".to_string(), valid.clone()),
        ("seq-gap".to_string(), segment(1, &[(1, b"x"), (3, b"y")])),
        (
            "seq-max-wraps".to_string(),
            segment(u64::MAX, &[(u64::MAX, b"x"), (0, b"y")]),
        ),
        ("zeros".to_string(), vec![0u8; 300]),
        ("ones".to_string(), vec![0xFFu8; 300]),
    ];
    let mut header_zeros = encode_segment_header(1).to_vec();
    header_zeros.extend_from_slice(&[0u8; 100]);
    inputs.push(("header-then-zeros".to_string(), header_zeros));
    let mut huge_len = encode_segment_header(1).to_vec();
    huge_len.extend_from_slice(&u32::MAX.to_le_bytes());
    huge_len.extend_from_slice(&[1u8; 12]);
    inputs.push(("huge-length".to_string(), huge_len));
    let mut over_max = segment(1, &[(1, b"ok")]);
    encode_record(
        2,
        &[0u8; FUZZ_RECORD_SIZE_MAX_BYTES as usize + 1],
        &mut over_max,
    );
    inputs.push(("record-over-max".to_string(), over_max));
    let mut damaged_then_valid = segment(1, &[(1, b"one")]);
    damaged_then_valid.extend_from_slice(b"garbage!");
    encode_record(2, b"two", &mut damaged_then_valid);
    inputs.push(("damage-then-valid".to_string(), damaged_then_valid));
    for cut in (0..golden.len()).step_by(9) {
        inputs.push((format!("golden-cut-{cut}"), golden[..cut].to_vec()));
    }
    for at in (0..golden.len()).step_by(11) {
        let mut flipped = golden.clone();
        flipped[at] ^= 0x80;
        inputs.push((format!("golden-flip-{at}"), flipped));
    }
    inputs
}

/// Regenerates the corpus; run once with `WAL_FUZZ_CORPUS_WRITE=1`.
#[test]
fn write_fuzz_corpus_when_asked() {
    if std::env::var_os("WAL_FUZZ_CORPUS_WRITE").is_none() {
        return;
    }
    fs::create_dir_all(corpus_dir()).unwrap();
    for (name, bytes) in seed_inputs() {
        fs::write(corpus_dir().join(name), bytes).unwrap();
    }
}

#[test]
fn every_committed_corpus_input_decodes_without_panicking() {
    let mut files = 0;
    for entry in fs::read_dir(corpus_dir()).expect("the corpus is committed") {
        let bytes = fs::read(entry.unwrap().path()).unwrap();
        fuzz_decode_segment(&bytes);
        files += 1;
    }
    assert!(files >= 30, "corpus has only {files} files");
}

#[test]
fn every_prefix_and_single_byte_flip_of_a_valid_segment_decodes_without_panicking() {
    let valid = segment(
        3,
        &[(3, b"alpha"), (4, &[7u8; 300]), (5, b""), (6, b"omega")],
    );
    for cut in 0..=valid.len() {
        fuzz_decode_segment(&valid[..cut]);
    }
    for at in 0..valid.len() {
        for bit in [0x01u8, 0x80] {
            let mut flipped = valid.clone();
            flipped[at] ^= bit;
            fuzz_decode_segment(&flipped);
        }
    }
}
