//! Decodes arbitrary bytes as a journal record (bincode 2.0.1, the format of
//! every log record's payload): must never panic, and what decodes must
//! round-trip. `tests/fuzz_corpus_records.rs` replays the committed corpus
//! through the same function on stable Rust.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    flashsale::journal::fuzz_decode_record(data);
});
