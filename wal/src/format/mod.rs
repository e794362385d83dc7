//! The on-disk format: segment header and record framing, as pure functions.
//!
//! This module exists so that the byte layout lives in one place: the
//! constants below are the ones `docs/wal-format.md` documents. Every offset
//! is derived from the previous one, so the documentation and the code cannot
//! drift apart without the golden-bytes test noticing. Nothing here does I/O:
//! the scanner reads through a `ByteSource`, which is a file window in the
//! log and a plain slice in [`decode_segment`] (the fuzz target).
//!
//! Promise: decoding never panics and never allocates more than
//! `O(bytes.len())` (records are returned as borrowed slices), whatever the
//! input bytes are.
//!
//! # Layout
//!
//! - this file: the layout constants and the little-endian field readers.
//! - `damage`: [`DamageKind`] and [`SegmentDamage`], what decoding reports.
//! - `segment_header`: encoding and checking the 32-byte segment header.
//! - `record`: framing one record and checking the record at an offset.
//! - `scan`: walking a whole segment, telling a torn tail from corruption.
//! - `decode`: [`decode_segment`] over a slice, and the fuzz target's body.
//! - `log_meta`: the metadata file `LOG_META` (identity and start), 40 bytes.

mod damage;
mod decode;
mod log_meta;
mod record;
mod scan;
mod segment_header;

pub use damage::{DamageKind, SegmentDamage};
pub use decode::{decode_segment, DecodedRecord, DecodedSegment};
#[doc(hidden)]
pub use decode::{fuzz_decode_segment, FUZZ_RECORD_SIZE_MAX_BYTES};
pub use log_meta::{
    decode_log_meta, encode_log_meta, LogMeta, LogMetaDamage, LOG_META_CRC_OFFSET,
    LOG_META_ID_OFFSET, LOG_META_MAGIC, LOG_META_SIZE, LOG_META_START_SEQ_OFFSET, LOG_META_VERSION,
    LOG_META_VERSION_OFFSET,
};
pub use record::encode_record;
pub(crate) use record::{read_record_at, ByteSource, RecordAt};
pub(crate) use scan::{nonzero_end, scan_segment};
pub use segment_header::{decode_segment_header, encode_segment_header, SegmentHeader};

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"FSWALSEG";
/// The only segment format this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Segment header: magic.
pub const SEGMENT_MAGIC_OFFSET: usize = 0;
pub const SEGMENT_MAGIC_SIZE: usize = 8;
/// Segment header: format version, u32 little-endian.
pub const SEGMENT_VERSION_OFFSET: usize = SEGMENT_MAGIC_OFFSET + SEGMENT_MAGIC_SIZE;
pub const SEGMENT_VERSION_SIZE: usize = 4;
/// Segment header: sequence number of the first record, u64 little-endian.
pub const SEGMENT_FIRST_SEQ_OFFSET: usize = SEGMENT_VERSION_OFFSET + SEGMENT_VERSION_SIZE;
pub const SEGMENT_FIRST_SEQ_SIZE: usize = 8;
/// Segment header: reserved, must be zero.
pub const SEGMENT_RESERVED_OFFSET: usize = SEGMENT_FIRST_SEQ_OFFSET + SEGMENT_FIRST_SEQ_SIZE;
pub const SEGMENT_RESERVED_SIZE: usize = 8;
/// Segment header: CRC-32 (IEEE) of all header bytes before it, u32 LE.
pub const SEGMENT_CRC_OFFSET: usize = SEGMENT_RESERVED_OFFSET + SEGMENT_RESERVED_SIZE;
pub const SEGMENT_CRC_SIZE: usize = 4;
/// Total size of the segment header; the first record starts here.
pub const SEGMENT_HEADER_SIZE: usize = SEGMENT_CRC_OFFSET + SEGMENT_CRC_SIZE;

/// Record header: payload length in bytes, u32 LE.
pub const RECORD_LEN_OFFSET: usize = 0;
pub const RECORD_LEN_SIZE: usize = 4;
/// Record header: sequence number, u64 LE.
pub const RECORD_SEQ_OFFSET: usize = RECORD_LEN_OFFSET + RECORD_LEN_SIZE;
pub const RECORD_SEQ_SIZE: usize = 8;
/// Record header: CRC-32 (IEEE) of the header bytes before it and the payload.
pub const RECORD_CRC_OFFSET: usize = RECORD_SEQ_OFFSET + RECORD_SEQ_SIZE;
pub const RECORD_CRC_SIZE: usize = 4;
/// Total size of the record header; the payload follows it directly.
pub const RECORD_HEADER_SIZE: usize = RECORD_CRC_OFFSET + RECORD_CRC_SIZE;

const _: () = assert!(SEGMENT_HEADER_SIZE == 32);
const _: () = assert!(RECORD_HEADER_SIZE == 16);

/// The little-endian u32 at `offset`; the caller has checked the length.
fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut le = [0u8; 4];
    le.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(le)
}

/// The little-endian u64 at `offset`; the caller has checked the length.
fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    let mut le = [0u8; 8];
    le.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(le)
}
