//! What decoding reports when bytes cannot be trusted.
//!
//! It exists so that recovery, readers and the fuzz target speak of damage
//! in one vocabulary. Promise: every kind says whether an interrupted append
//! can explain it ([`DamageKind::is_torn_write_compatible`]); recovery cuts
//! off only such damage, and only at the end of the newest segment.

use std::fmt;

/// Why a segment or a record in it cannot be trusted. Non-exhaustive like
/// [`crate::WalError`], which carries it: a new check may add a kind.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DamageKind {
    /// The file is shorter than a segment header.
    HeaderTruncated { len_bytes: u64 },
    /// The file does not start with [`SEGMENT_MAGIC`](super::SEGMENT_MAGIC).
    BadMagic,
    /// The header names a format version this crate does not know.
    UnsupportedVersion { version: u32 },
    /// The reserved header bytes are not zero.
    ReservedNotZero,
    /// The header checksum does not match.
    HeaderChecksumMismatch,
    /// The header's first sequence number differs from the file name's.
    FirstSeqMismatch { name_seq: u64, header_seq: u64 },
    /// The segment does not continue where the previous one ended.
    SegmentSeqGap { expected: u64, found: u64 },
    /// The file ends inside a record.
    RecordTruncated,
    /// The record's length field exceeds the configured maximum.
    RecordTooLarge { len_bytes: u32, max_bytes: u32 },
    /// The record checksum does not match.
    RecordChecksumMismatch,
    /// Zeros where a record header should be, but non-zero bytes after
    /// them: not the clean end of a preallocated segment.
    ZeroedRecordHeader { nonzero_offset: u64 },
    /// A well-formed record carries the wrong sequence number.
    UnexpectedSeq { expected: u64, found: u64 },
    /// Damage whose non-zero bytes reach further than one batch past the
    /// last whole record: more than an interrupted append can write.
    BeyondOneBatch {
        damage: Box<DamageKind>,
        end_offset: u64,
    },
    /// Damage that is followed by a valid record, so it is not a torn write.
    FollowedByValidRecord {
        damage: Box<DamageKind>,
        valid_record_offset: u64,
    },
}

impl DamageKind {
    /// Whether an interrupted append can leave this damage behind. Only such
    /// damage, at the end of the newest segment, is cut off as a torn write.
    pub fn is_torn_write_compatible(&self) -> bool {
        matches!(
            self,
            DamageKind::RecordTruncated
                | DamageKind::RecordTooLarge { .. }
                | DamageKind::RecordChecksumMismatch
                | DamageKind::ZeroedRecordHeader { .. }
        )
    }
}

impl fmt::Display for DamageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DamageKind::HeaderTruncated { len_bytes } => {
                write!(f, "segment header truncated ({len_bytes} bytes)")
            }
            DamageKind::BadMagic => write!(f, "bad segment magic"),
            DamageKind::UnsupportedVersion { version } => {
                write!(f, "unsupported segment format version {version}")
            }
            DamageKind::ReservedNotZero => write!(f, "reserved segment header bytes are not zero"),
            DamageKind::HeaderChecksumMismatch => write!(f, "segment header checksum mismatch"),
            DamageKind::FirstSeqMismatch { name_seq, header_seq } => write!(
                f,
                "segment header first sequence number {header_seq} differs from the file name's {name_seq}"
            ),
            DamageKind::SegmentSeqGap { expected, found } => write!(
                f,
                "sequence gap between segments: expected first sequence number {expected}, found {found}"
            ),
            DamageKind::RecordTruncated => write!(f, "record truncated"),
            DamageKind::RecordTooLarge { len_bytes, max_bytes } => write!(
                f,
                "record length {len_bytes} exceeds record_size_max_bytes {max_bytes}"
            ),
            DamageKind::RecordChecksumMismatch => write!(f, "record checksum mismatch"),
            DamageKind::ZeroedRecordHeader { nonzero_offset } => write!(
                f,
                "record header of zeros, but non-zero bytes at byte offset {nonzero_offset}"
            ),
            DamageKind::UnexpectedSeq { expected, found } => write!(
                f,
                "sequence gap: expected sequence number {expected}, found {found}"
            ),
            DamageKind::BeyondOneBatch { damage, end_offset } => write!(
                f,
                "{damage}, with non-zero bytes up to byte offset {end_offset}, further than one batch after the last whole record (not a torn write)"
            ),
            DamageKind::FollowedByValidRecord { damage, valid_record_offset } => write!(
                f,
                "{damage}, followed by a valid record at byte offset {valid_record_offset} (not a torn write)"
            ),
        }
    }
}

/// Where and why a segment stops being trustworthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentDamage {
    /// Byte offset in the segment file.
    pub offset: u64,
    /// What is wrong there.
    pub kind: DamageKind,
}

impl SegmentDamage {
    /// Damage an interrupted append can explain: cut it off when it is at
    /// the end of the newest segment.
    pub fn is_torn_tail(&self) -> bool {
        self.kind.is_torn_write_compatible()
    }
}

impl fmt::Display for SegmentDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte offset {}: {}", self.offset, self.kind)
    }
}
