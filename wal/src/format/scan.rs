//! Scanning a whole segment, as recovery and [`super::decode_segment`] do.
//!
//! It exists because telling a torn tail from corruption needs the whole
//! segment: damage followed by any valid record cannot be an interrupted
//! append. Promise: records are accepted only with contiguous sequence
//! numbers from the header's `first_seq`; the scan stops at the first
//! damage and reports its offset; the work is bounded by the file length.

use std::io;

use super::record::{read_record_at, ByteSource, RecordAt};
use super::segment_header::{decode_segment_header, SegmentHeader};
use super::{
    read_u64, DamageKind, SegmentDamage, RECORD_HEADER_SIZE, RECORD_SEQ_OFFSET, SEGMENT_HEADER_SIZE,
};

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

/// Bytes read at a time when looking for non-zero bytes.
const ZERO_PROBE_BYTES: usize = 64 * 1024;

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
            RecordAt::Zeros => match first_nonzero(src, offset, file_len_bytes)? {
                // Zeros to the end: the clean end of a preallocated segment.
                None => break,
                Some(nonzero_offset) => DamageKind::ZeroedRecordHeader { nonzero_offset },
            },
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
        if header.iter().all(|&byte| byte == 0) {
            // A preallocated segment is mostly zeros: skip every candidate
            // whose header lies wholly in them (none can be a record).
            let probe = src.bytes_at(offset, ZERO_PROBE_BYTES)?;
            let zeros = probe.iter().take_while(|&&byte| byte == 0).count();
            offset += (zeros + 1).saturating_sub(RECORD_HEADER_SIZE).max(1) as u64;
            continue;
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

/// The offset of the first non-zero byte at or after `offset`, if any.
pub(crate) fn first_nonzero<S: ByteSource>(
    src: &mut S,
    mut offset: u64,
    file_len_bytes: u64,
) -> io::Result<Option<u64>> {
    // Bounded by the file length: every iteration advances or stops.
    while offset < file_len_bytes {
        let chunk = src.bytes_at(offset, ZERO_PROBE_BYTES)?;
        if chunk.is_empty() {
            break;
        }
        if let Some(at) = chunk.iter().position(|&byte| byte != 0) {
            return Ok(Some(offset + at as u64));
        }
        offset += chunk.len() as u64;
    }
    Ok(None)
}

/// The offset just past the last non-zero byte at or after `offset` (the
/// end of what a torn write left), `offset` if there is none.
pub(crate) fn nonzero_end<S: ByteSource>(
    src: &mut S,
    offset: u64,
    file_len_bytes: u64,
) -> io::Result<u64> {
    let mut end = offset;
    let mut at = offset;
    // Bounded by the file length: every iteration advances or stops.
    while at < file_len_bytes {
        let chunk = src.bytes_at(at, ZERO_PROBE_BYTES)?;
        if chunk.is_empty() {
            break;
        }
        if let Some(last) = chunk.iter().rposition(|&byte| byte != 0) {
            end = at + last as u64 + 1;
        }
        at += chunk.len() as u64;
    }
    Ok(end)
}
