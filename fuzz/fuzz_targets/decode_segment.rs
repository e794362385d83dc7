//! Decodes arbitrary bytes as a segment: must never panic, and may allocate
//! only in proportion to the input. `wal/tests/fuzz_corpus.rs` replays the
//! committed corpus through the same function on stable Rust.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    flashsale_wal::format::fuzz_decode_segment(data);
});
