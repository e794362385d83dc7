//! Replays the committed corpus of the `decode_snapshot` fuzz target
//! through the target's function, so that CI covers it on stable Rust
//! without libFuzzer.

use std::fs;
use std::path::PathBuf;

use flashsale::snapshot::format::{self, fuzz_decode_snapshot, SNAPSHOT_HEADER_BYTES};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode_snapshot")
}

/// The golden snapshot file's bytes.
fn golden() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/snapshot-v1.hex");
    let text = fs::read_to_string(path).unwrap();
    let hex: String = text.lines().filter(|l| !l.starts_with('#')).collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Interesting inputs: the golden file, its body alone, and damage.
fn seed_inputs() -> Vec<(String, Vec<u8>)> {
    let golden = golden();
    let body = golden[SNAPSHOT_HEADER_BYTES..].to_vec();
    let mut inputs = vec![
        ("empty".to_string(), Vec::new()),
        ("golden".to_string(), golden.clone()),
        ("golden-body".to_string(), body.clone()),
        ("zeros".to_string(), vec![0u8; 200]),
        ("ones".to_string(), vec![0xFFu8; 200]),
        (
            "header-only".to_string(),
            golden[..SNAPSHOT_HEADER_BYTES].to_vec(),
        ),
    ];
    let mut huge = golden[..SNAPSHOT_HEADER_BYTES].to_vec();
    huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    inputs.push(("huge-length".to_string(), huge));
    let mut long_vec = body.clone();
    // A length prefix claiming u64::MAX users right after the sale fields.
    long_vec.extend_from_slice(&[0xFF; 9]);
    inputs.push(("body-long-claim".to_string(), long_vec));
    for cut in (0..golden.len()).step_by(7) {
        inputs.push((format!("golden-cut-{cut}"), golden[..cut].to_vec()));
    }
    for at in (0..body.len()).step_by(5) {
        let mut flipped = body.clone();
        flipped[at] ^= 0x41;
        inputs.push((format!("body-flip-{at}"), flipped));
    }
    inputs
}

/// Regenerates the corpus; run once with `SNAPSHOT_FUZZ_CORPUS_WRITE=1`.
#[test]
fn write_snapshot_fuzz_corpus_when_asked() {
    if std::env::var_os("SNAPSHOT_FUZZ_CORPUS_WRITE").is_none() {
        return;
    }
    fs::create_dir_all(corpus_dir()).unwrap();
    for (name, bytes) in seed_inputs() {
        fs::write(corpus_dir().join(name), bytes).unwrap();
    }
}

#[test]
fn every_committed_snapshot_corpus_input_decodes_without_panicking() {
    let mut files = 0;
    for entry in fs::read_dir(corpus_dir()).expect("the corpus is committed") {
        let bytes = fs::read(entry.unwrap().path()).unwrap();
        fuzz_decode_snapshot(&bytes);
        files += 1;
    }
    assert!(files >= 30, "corpus has only {files} files");
}

#[test]
fn every_prefix_and_byte_flip_of_the_golden_snapshot_is_refused_without_panicking() {
    let golden = golden();
    assert!(format::decode(&golden).is_ok());
    for cut in 0..golden.len() {
        assert!(format::decode(&golden[..cut]).is_err());
        fuzz_decode_snapshot(&golden[..cut]);
    }
    let body = &golden[SNAPSHOT_HEADER_BYTES..];
    for at in 0..body.len() {
        for bit in [0x01u8, 0x80] {
            let mut flipped = body.to_vec();
            flipped[at] ^= bit;
            fuzz_decode_snapshot(&flipped);
        }
    }
}
