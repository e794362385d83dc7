//! The on-disk format: segment header and record framing, as pure functions.
//!
//! This module exists so that the byte layout lives in one place, next to
//! the constants that `docs/wal-format.md` documents. Every offset is derived
//! from the previous one, so the documentation and the code cannot drift
//! apart without the golden-bytes test noticing. Nothing here does I/O: the
//! scanner reads through a [`ByteSource`], which is a file window in the log
//! and a plain slice in [`decode_segment`] (the fuzz target).
//!
//! Promise: decoding never panics and never allocates more than
//! `O(bytes.len())` (records are returned as borrowed slices), whatever the
//! input bytes are.

use std::fmt;
use std::io;

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

/// Why a segment or a record in it cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DamageKind {
    /// The file is shorter than a segment header.
    HeaderTruncated { len_bytes: u64 },
    /// The file does not start with [`SEGMENT_MAGIC`].
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
    /// A well-formed record carries the wrong sequence number.
    UnexpectedSeq { expected: u64, found: u64 },
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
            DamageKind::UnexpectedSeq { expected, found } => write!(
                f,
                "sequence gap: expected sequence number {expected}, found {found}"
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

/// The decoded header of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub first_seq: u64,
}

/// One record of a decoded segment, borrowing its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord<'a> {
    pub seq: u64,
    /// Byte offset of the record header in the segment.
    pub offset: u64,
    pub payload: &'a [u8],
}

/// A segment decoded by [`decode_segment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedSegment<'a> {
    pub header: SegmentHeader,
    pub records: Vec<DecodedRecord<'a>>,
    /// Length of the valid prefix: header plus every valid record.
    pub valid_len_bytes: u64,
    /// The first damage after the valid prefix, if any.
    pub damage: Option<SegmentDamage>,
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

/// Appends one framed record to `out`.
///
/// The caller has checked `payload.len()` against the configured maximum;
/// a payload that does not fit a u32 is a caller bug and panics rather than
/// frame a record whose length field lies.
pub fn encode_record(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len())
        .expect("a record payload must fit the u32 length field (append checks the maximum)");
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&out[start..start + RECORD_CRC_OFFSET]);
    hasher.update(payload);
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(payload);
    // The queue accounts `RECORD_HEADER_SIZE + len` per record; a frame of
    // another size would throw off its byte budget and the reader's offsets.
    assert_eq!(
        out.len() - start,
        RECORD_HEADER_SIZE + payload.len(),
        "a framed record must be its header plus its payload"
    );
}

fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut le = [0u8; 4];
    le.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(le)
}

fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    let mut le = [0u8; 8];
    le.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(le)
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

/// The result of looking at the bytes where a record should start.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RecordParse<'a> {
    /// A whole record with a matching checksum (its sequence number is
    /// checked by the caller, who knows which one is expected).
    Valid {
        seq: u64,
        payload: &'a [u8],
    },
    /// `bytes` is shorter than the record; this many bytes are needed.
    NeedMore {
        total_bytes: usize,
    },
    Invalid(DamageKind),
}

/// Parses the record at the start of `bytes`.
pub(crate) fn parse_record(bytes: &[u8], record_size_max_bytes: u32) -> RecordParse<'_> {
    if bytes.len() < RECORD_HEADER_SIZE {
        return RecordParse::NeedMore {
            total_bytes: RECORD_HEADER_SIZE,
        };
    }
    let len = read_u32(bytes, RECORD_LEN_OFFSET);
    if len > record_size_max_bytes {
        return RecordParse::Invalid(DamageKind::RecordTooLarge {
            len_bytes: len,
            max_bytes: record_size_max_bytes,
        });
    }
    let total_bytes = RECORD_HEADER_SIZE + len as usize;
    if bytes.len() < total_bytes {
        return RecordParse::NeedMore { total_bytes };
    }
    let payload = &bytes[RECORD_HEADER_SIZE..total_bytes];
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[..RECORD_CRC_OFFSET]);
    hasher.update(payload);
    if hasher.finalize() != read_u32(bytes, RECORD_CRC_OFFSET) {
        return RecordParse::Invalid(DamageKind::RecordChecksumMismatch);
    }
    RecordParse::Valid {
        seq: read_u64(bytes, RECORD_SEQ_OFFSET),
        payload,
    }
}

/// Random access to the bytes of one segment.
pub(crate) trait ByteSource {
    /// Up to `len` bytes starting at `offset`; fewer only at the end.
    fn bytes_at(&mut self, offset: u64, len: usize) -> io::Result<&[u8]>;
}

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

/// The record found at an offset by [`read_record_at`].
pub(crate) enum RecordAt<'a> {
    Valid {
        seq: u64,
        payload: &'a [u8],
        total_bytes: usize,
    },
    /// No byte at all at this offset: the clean end of the segment.
    End,
    Damaged(DamageKind),
}

/// Reads and checks the record at `offset`, fetching exactly what it needs.
pub(crate) fn read_record_at<S: ByteSource>(
    src: &mut S,
    offset: u64,
    record_size_max_bytes: u32,
) -> io::Result<RecordAt<'_>> {
    let head_len = src.bytes_at(offset, RECORD_HEADER_SIZE)?.len();
    if head_len == 0 {
        return Ok(RecordAt::End);
    }
    let total_bytes = match parse_record(
        src.bytes_at(offset, RECORD_HEADER_SIZE)?,
        record_size_max_bytes,
    ) {
        RecordParse::NeedMore { total_bytes } => total_bytes,
        RecordParse::Invalid(kind) => return Ok(RecordAt::Damaged(kind)),
        RecordParse::Valid { .. } => RECORD_HEADER_SIZE,
    };
    let bytes = src.bytes_at(offset, total_bytes)?;
    Ok(match parse_record(bytes, record_size_max_bytes) {
        RecordParse::Valid { seq, payload } => RecordAt::Valid {
            seq,
            payload,
            total_bytes,
        },
        RecordParse::NeedMore { .. } => RecordAt::Damaged(DamageKind::RecordTruncated),
        RecordParse::Invalid(kind) => RecordAt::Damaged(kind),
    })
}

/// Summary of a scanned segment (see [`scan_segment`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentScan {
    pub header: SegmentHeader,
    pub record_count: u64,
    /// Sequence number of the last valid record, `first_seq - 1` if none.
    pub last_seq: u64,
    pub valid_len_bytes: u64,
    pub damage: Option<SegmentDamage>,
}

/// Scans a whole segment: header, then records with contiguous sequence
/// numbers until the end or the first damage. `on_record` sees every valid
/// record. Header damage is returned as `Err`; record damage in `damage`,
/// wrapped in [`DamageKind::FollowedByValidRecord`] when a valid record
/// follows it.
pub(crate) fn scan_segment<S: ByteSource>(
    src: &mut S,
    file_len_bytes: u64,
    record_size_max_bytes: u32,
    mut on_record: impl FnMut(u64, u64, &[u8]),
) -> io::Result<Result<SegmentScan, SegmentDamage>> {
    let header = match decode_segment_header(src.bytes_at(0, SEGMENT_HEADER_SIZE)?) {
        Ok(header) => header,
        Err(kind) => return Ok(Err(SegmentDamage { offset: 0, kind })),
    };
    let mut scan = SegmentScan {
        header,
        record_count: 0,
        last_seq: header.first_seq.wrapping_sub(1),
        valid_len_bytes: SEGMENT_HEADER_SIZE as u64,
        damage: None,
    };
    // Bounded by the file length: every iteration advances by >= 16 bytes.
    loop {
        let offset = scan.valid_len_bytes;
        let expected = scan.last_seq.wrapping_add(1);
        let kind = match read_record_at(src, offset, record_size_max_bytes)? {
            RecordAt::End => break,
            RecordAt::Valid {
                seq,
                payload,
                total_bytes,
            } if seq == expected => {
                on_record(seq, offset, payload);
                scan.record_count += 1;
                scan.last_seq = seq;
                scan.valid_len_bytes = offset + total_bytes as u64;
                continue;
            }
            RecordAt::Valid { seq, .. } => {
                // A well-formed record with the wrong number is never torn.
                let kind = DamageKind::UnexpectedSeq {
                    expected,
                    found: seq,
                };
                scan.damage = Some(SegmentDamage { offset, kind });
                break;
            }
            RecordAt::Damaged(kind) => kind,
        };
        let after =
            find_valid_record_after(src, offset, file_len_bytes, expected, record_size_max_bytes)?;
        let kind = match after {
            Some(valid_record_offset) => DamageKind::FollowedByValidRecord {
                damage: Box::new(kind),
                valid_record_offset,
            },
            None => kind,
        };
        scan.damage = Some(SegmentDamage { offset, kind });
        break;
    }
    Ok(Ok(scan))
}

/// Looks for a valid record anywhere after damage at `damage_offset`. Such a
/// record proves the damage is not a torn tail. Only candidates whose
/// sequence number could follow the damage are checksummed, which keeps the
/// search linear in practice.
fn find_valid_record_after<S: ByteSource>(
    src: &mut S,
    damage_offset: u64,
    file_len_bytes: u64,
    expected_seq: u64,
    record_size_max_bytes: u32,
) -> io::Result<Option<u64>> {
    let header_len = RECORD_HEADER_SIZE as u64;
    let mut offset = damage_offset + 1;
    while offset.saturating_add(header_len) <= file_len_bytes {
        let header = src.bytes_at(offset, RECORD_HEADER_SIZE)?;
        if header.len() < RECORD_HEADER_SIZE {
            break;
        }
        let seq = read_u64(header, RECORD_SEQ_OFFSET);
        let seq_max = expected_seq.saturating_add((file_len_bytes - offset) / header_len + 1);
        if seq >= expected_seq && seq <= seq_max {
            if let RecordAt::Valid { .. } = read_record_at(src, offset, record_size_max_bytes)? {
                return Ok(Some(offset));
            }
        }
        offset += 1;
    }
    Ok(None)
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
        None => assert_eq!(decoded.valid_len_bytes as usize, bytes.len()),
        Some(damage) => assert_eq!(damage.offset, decoded.valid_len_bytes),
    }
}
