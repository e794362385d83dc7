//! Decodes arbitrary bytes as a snapshot file and as a snapshot body:
//! must never panic, and a body that decodes must round-trip and rebuild
//! (or be refused) without panicking. `tests/snapshot_fuzz_corpus.rs`
//! replays the committed corpus through the same function on stable Rust.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    flashsale::snapshot::format::fuzz_decode_snapshot(data);
});
