//! Test support shared by the integration tests: a simulated file system
//! that loses unsynced state at a crash, a fault injector, a small PRNG and
//! helpers around `Wal`.
#![allow(dead_code)]

pub mod sim;

use std::path::Path;

use flashsale_wal::{Preallocation, Record, SyncMode, Wal, WalConfig};

/// A config with tiny limits so that tests rotate segments often. Segments
/// are preallocated (zero-filled at full size) on the writer thread, so
/// that where segments start does not depend on a background thread.
pub fn small_config(dir: &Path) -> WalConfig {
    let mut config = WalConfig::new(dir);
    config.record_size_max_bytes = 200;
    config.batch_bytes_max = 512;
    config.queue_bytes_max = 2048;
    config.segment_size_max_bytes = 1024;
    config.sync_mode = SyncMode::Fdatasync;
    config.preallocation = Preallocation::Inline;
    config
}

/// Every durable record from `from_seq`, panicking on any error.
pub fn replay(wal: &Wal, from_seq: u64) -> Vec<Record> {
    wal.read_from(from_seq)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// Appends and waits for each payload; returns their sequence numbers.
pub fn append_all(wal: &Wal, payloads: &[Vec<u8>]) -> Vec<u64> {
    let seqs: Vec<u64> = payloads.iter().map(|p| wal.append(p).unwrap()).collect();
    if let Some(&last) = seqs.last() {
        wal.wait_durable(last).unwrap();
    }
    seqs
}

/// A deterministic payload of `len` bytes for record `tag`.
pub fn payload(tag: u64, len: usize) -> Vec<u8> {
    let mut bytes = tag.to_le_bytes().to_vec();
    let mut x = tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.push(x as u8);
    }
    bytes.truncate(len.max(8));
    bytes
}

/// xorshift64*: tiny, seeded, good enough to pick crash points.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}
