//! The segment header: the first 32 bytes of every segment file.
//!
//! It exists so that a segment says which format it is in and where in the
//! log it starts. Promise: a header that decodes has the magic, a matching
//! checksum, a known version and zero reserved bytes.

use super::{
    read_u32, read_u64, DamageKind, FORMAT_VERSION, SEGMENT_CRC_OFFSET, SEGMENT_CRC_SIZE,
    SEGMENT_FIRST_SEQ_OFFSET, SEGMENT_FIRST_SEQ_SIZE, SEGMENT_HEADER_SIZE, SEGMENT_MAGIC,
    SEGMENT_MAGIC_OFFSET, SEGMENT_MAGIC_SIZE, SEGMENT_RESERVED_OFFSET, SEGMENT_VERSION_OFFSET,
    SEGMENT_VERSION_SIZE,
};

/// The decoded header of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Sequence number of the segment's first record (and of its file name).
    pub first_seq: u64,
}

/// Encodes a segment header for a segment whose first record is `first_seq`.
pub fn encode_segment_header(first_seq: u64) -> [u8; SEGMENT_HEADER_SIZE] {
    let mut header = [0u8; SEGMENT_HEADER_SIZE];
    header[SEGMENT_MAGIC_OFFSET..][..SEGMENT_MAGIC_SIZE].copy_from_slice(&SEGMENT_MAGIC);
    header[SEGMENT_VERSION_OFFSET..][..SEGMENT_VERSION_SIZE]
        .copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[SEGMENT_FIRST_SEQ_OFFSET..][..SEGMENT_FIRST_SEQ_SIZE]
        .copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32fast::hash(&header[..SEGMENT_CRC_OFFSET]);
    header[SEGMENT_CRC_OFFSET..][..SEGMENT_CRC_SIZE].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Decodes a segment header from the first bytes of a segment.
pub fn decode_segment_header(bytes: &[u8]) -> Result<SegmentHeader, DamageKind> {
    if bytes.len() < SEGMENT_HEADER_SIZE {
        return Err(DamageKind::HeaderTruncated {
            len_bytes: bytes.len() as u64,
        });
    }
    if bytes[SEGMENT_MAGIC_OFFSET..][..SEGMENT_MAGIC_SIZE] != SEGMENT_MAGIC {
        return Err(DamageKind::BadMagic);
    }
    let stored_crc = read_u32(bytes, SEGMENT_CRC_OFFSET);
    if crc32fast::hash(&bytes[..SEGMENT_CRC_OFFSET]) != stored_crc {
        return Err(DamageKind::HeaderChecksumMismatch);
    }
    let version = read_u32(bytes, SEGMENT_VERSION_OFFSET);
    if version != FORMAT_VERSION {
        return Err(DamageKind::UnsupportedVersion { version });
    }
    if read_u64(bytes, SEGMENT_RESERVED_OFFSET) != 0 {
        return Err(DamageKind::ReservedNotZero);
    }
    Ok(SegmentHeader {
        first_seq: read_u64(bytes, SEGMENT_FIRST_SEQ_OFFSET),
    })
}
