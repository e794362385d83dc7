//! Record framing: a 16-byte header (length, sequence number, CRC-32) and
//! the payload.
//!
//! It exists so that the writer's framing and every reader's checking are
//! the two halves of one file. Promise: a record is `Valid` only when it is
//! whole and its checksum matches; reading one fetches exactly the bytes it
//! needs and never more than `record_size_max_bytes` plus the header.

use std::io;

use super::{
    read_u32, read_u64, DamageKind, RECORD_CRC_OFFSET, RECORD_HEADER_SIZE, RECORD_LEN_OFFSET,
    RECORD_SEQ_OFFSET,
};

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

/// The result of looking at the bytes where a record should start.
#[derive(Debug, PartialEq, Eq)]
enum RecordParse<'a> {
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
fn parse_record(bytes: &[u8], record_size_max_bytes: u32) -> RecordParse<'_> {
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

/// The record found at an offset by [`read_record_at`].
pub(crate) enum RecordAt<'a> {
    Valid {
        seq: u64,
        payload: &'a [u8],
        total_bytes: usize,
    },
    /// No byte at all at this offset: the clean end of the segment.
    End,
    /// Only zeros where the record header should be (up to 16 bytes, fewer
    /// at the end of the file): no record was written here. The end of the
    /// log in a preallocated segment, if only zeros follow (the scanner
    /// checks); a record header is never all zeros (sequence numbers start
    /// at 1).
    Zeros,
    Damaged(DamageKind),
}

/// Reads and checks the record at `offset`, fetching exactly what it needs.
pub(crate) fn read_record_at<S: ByteSource>(
    src: &mut S,
    offset: u64,
    record_size_max_bytes: u32,
) -> io::Result<RecordAt<'_>> {
    let head = src.bytes_at(offset, RECORD_HEADER_SIZE)?;
    if head.is_empty() {
        return Ok(RecordAt::End);
    }
    if head.iter().all(|&byte| byte == 0) {
        return Ok(RecordAt::Zeros);
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
