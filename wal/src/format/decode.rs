//! Decoding a segment held in memory: the fuzz target.
//!
//! It exists so that the scanner the log recovers with can be fuzzed and
//! replayed without a file system. Promise: [`decode_segment`] never panics
//! and returns records as slices borrowed from its input.

use std::io;

use super::record::ByteSource;
use super::scan::scan_segment;
use super::segment_header::SegmentHeader;
use super::{SegmentDamage, RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE};

/// One record of a decoded segment, borrowing its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord<'a> {
    /// The record's sequence number.
    pub seq: u64,
    /// Byte offset of the record header in the segment.
    pub offset: u64,
    /// The payload, borrowed from the decoded bytes.
    pub payload: &'a [u8],
}

/// A segment decoded by [`decode_segment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedSegment<'a> {
    /// The segment's checked header.
    pub header: SegmentHeader,
    /// Every record of the valid prefix, in order.
    pub records: Vec<DecodedRecord<'a>>,
    /// Length of the valid prefix: header plus every valid record. Without
    /// damage, only zeros (a preallocated segment's unused end) follow it.
    pub valid_len_bytes: u64,
    /// The first damage after the valid prefix, if any.
    pub damage: Option<SegmentDamage>,
}

/// A segment already in memory: reading it cannot fail.
struct SliceSource<'a>(&'a [u8]);

impl ByteSource for SliceSource<'_> {
    fn bytes_at(&mut self, offset: u64, len: usize) -> io::Result<&[u8]> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.0.len());
        let end = start.saturating_add(len).min(self.0.len());
        Ok(&self.0[start..end])
    }
}

/// Decodes one whole segment from memory: the pure function behind the
/// fuzz target. Never panics; allocates at most one entry per 16 input bytes.
pub fn decode_segment(
    bytes: &[u8],
    record_size_max_bytes: u32,
) -> Result<DecodedSegment<'_>, SegmentDamage> {
    let mut offsets: Vec<(u64, u64, usize)> = Vec::new();
    let scan = scan_segment(
        &mut SliceSource(bytes),
        bytes.len() as u64,
        record_size_max_bytes,
        |seq, offset, payload| offsets.push((seq, offset, payload.len())),
    );
    // A slice source cannot fail.
    let scan = match scan {
        Ok(scan) => scan?,
        Err(_) => unreachable_io(),
    };
    let records = offsets
        .into_iter()
        .map(|(seq, offset, len)| {
            let start = offset as usize + RECORD_HEADER_SIZE;
            DecodedRecord {
                seq,
                offset,
                payload: &bytes[start..start + len],
            }
        })
        .collect();
    Ok(DecodedSegment {
        header: scan.header,
        records,
        valid_len_bytes: scan.valid_len_bytes,
        damage: scan.damage,
    })
}

#[cold]
fn unreachable_io() -> ! {
    unreachable!("a slice source never returns an I/O error")
}

/// Record size limit the fuzz target and its corpus replay decode with.
#[doc(hidden)]
pub const FUZZ_RECORD_SIZE_MAX_BYTES: u32 = 1024;

/// The fuzz target's body, shared with the corpus-replay test so that CI on
/// stable Rust runs exactly what the fuzzer runs: decode arbitrary bytes and
/// check that whatever comes out is consistent with the input.
#[doc(hidden)]
pub fn fuzz_decode_segment(bytes: &[u8]) {
    let Ok(decoded) = decode_segment(bytes, FUZZ_RECORD_SIZE_MAX_BYTES) else {
        return;
    };
    assert!(decoded.valid_len_bytes as usize <= bytes.len());
    assert!(decoded.records.len() <= bytes.len() / RECORD_HEADER_SIZE);
    let mut expected_offset = SEGMENT_HEADER_SIZE as u64;
    let mut expected_seq = decoded.header.first_seq;
    for record in &decoded.records {
        assert_eq!(record.offset, expected_offset);
        assert_eq!(record.seq, expected_seq);
        assert!(record.payload.len() <= FUZZ_RECORD_SIZE_MAX_BYTES as usize);
        expected_offset += (RECORD_HEADER_SIZE + record.payload.len()) as u64;
        expected_seq = expected_seq.wrapping_add(1);
    }
    assert_eq!(expected_offset, decoded.valid_len_bytes);
    match &decoded.damage {
        // No damage: the valid prefix is followed by nothing, or by zeros
        // only (the unused end of a preallocated segment).
        None => assert!(bytes[decoded.valid_len_bytes as usize..]
            .iter()
            .all(|&byte| byte == 0)),
        Some(damage) => assert_eq!(damage.offset, decoded.valid_len_bytes),
    }
}
