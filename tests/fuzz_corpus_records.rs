//! Replays the committed corpus of the `decode_record` fuzz target through
//! the target's function, so that CI covers it without a nightly toolchain
//! or libFuzzer. Seeds: the golden records, their cuts and bit flips.

use std::fs;
use std::path::PathBuf;

use flashsale::journal::fuzz_decode_record;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode_record")
}

fn golden_records() -> Vec<Vec<u8>> {
    let golden = include_str!("golden/journal_records.hex");
    golden
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            (0..line.len())
                .step_by(2)
                .map(|at| u8::from_str_radix(&line[at..at + 2], 16).expect("hex"))
                .collect()
        })
        .collect()
}

fn seed_inputs() -> Vec<(String, Vec<u8>)> {
    let mut inputs = vec![
        ("empty".to_string(), Vec::new()),
        ("ones".to_string(), vec![0xFF; 64]),
        // A length prefix of 2^64 - 1 for the first string.
        ("huge-length".to_string(), {
            let mut bytes = vec![0u8, 0xFD];
            bytes.extend_from_slice(&[0xFF; 8]);
            bytes
        }),
    ];
    for (index, record) in golden_records().into_iter().enumerate() {
        for cut in (0..record.len()).step_by(7) {
            inputs.push((format!("golden-{index}-cut-{cut}"), record[..cut].to_vec()));
        }
        for at in (0..record.len()).step_by(5) {
            let mut flipped = record.clone();
            flipped[at] ^= 0x41;
            inputs.push((format!("golden-{index}-flip-{at}"), flipped));
        }
        inputs.push((format!("golden-{index}"), record));
    }
    inputs
}

/// Regenerates the seeds; run once with `RECORD_FUZZ_CORPUS_WRITE=1`.
#[test]
fn write_fuzz_corpus_when_asked() {
    if std::env::var_os("RECORD_FUZZ_CORPUS_WRITE").is_none() {
        return;
    }
    fs::create_dir_all(corpus_dir()).expect("corpus dir");
    for (name, bytes) in seed_inputs() {
        fs::write(corpus_dir().join(format!("seed-{name}")), bytes).expect("write seed");
    }
}

#[test]
fn the_seed_inputs_never_panic_the_decoder() {
    for (_, bytes) in seed_inputs() {
        fuzz_decode_record(&bytes);
    }
}

#[test]
fn the_committed_corpus_never_panics_the_decoder() {
    let entries = fs::read_dir(corpus_dir()).expect("the corpus is committed");
    let mut count = 0;
    for entry in entries {
        let path = entry.expect("corpus entry").path();
        fuzz_decode_record(&fs::read(&path).expect("corpus file"));
        count += 1;
    }
    assert!(count >= 20, "the corpus holds {count} inputs");
}
