//! Segment files: their names, and creating a new one durably, plain or
//! preallocated (zero-filled at its full size, as PostgreSQL does).
//!
//! Names are the first sequence number in 20 decimal digits, so that they
//! sort in log order as plain strings. A new segment's header and its
//! directory entry are synced before any record is written into it, so an
//! acknowledged record can never sit in a segment the directory forgets.

use std::path::{Path, PathBuf};

use crate::config::SyncMode;
use crate::error::WalError;
use crate::format::{encode_segment_header, SEGMENT_HEADER_SIZE};
use crate::storage::{Storage, WriteFile};

const SEGMENT_SUFFIX: &str = ".wal";
const SEGMENT_DIGITS: usize = 20;

/// A segment of the log, as the shared segment list knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentMeta {
    pub first_seq: u64,
    pub path: PathBuf,
}

/// The file name of the segment whose first record is `first_seq`.
pub fn segment_file_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SEGMENT_SUFFIX}")
}

/// The first sequence number a segment file name stands for, if `name` is a
/// segment file name at all (side files and strangers are not).
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Name under which the next segment is prepared (zero-filled at its full
/// size and synced) before it gets its header and its segment name. It is
/// not a segment name: recovery ignores the file, and a new preparation
/// overwrites it.
pub const PREPARED_SEGMENT_FILE_NAME: &str = "next-segment.prepared";

/// Zeros are written in chunks of this size.
const ZERO_CHUNK_BYTES: usize = 1024 * 1024;

/// A file of zeros at a segment's full size, durable with its directory
/// entry, waiting under [`PREPARED_SEGMENT_FILE_NAME`] to become a segment.
pub(crate) struct PreparedSegment {
    file: Box<dyn WriteFile>,
    len_bytes: u64,
}

/// Creates the prepared file at `len_bytes`, zero-filled; with `sync`,
/// makes its data and its length durable now (else the sync of its header
/// does), so that writes into it later change no metadata a sync must
/// journal. Its entry needs no sync: it only matters once renamed. Zeros are
/// written, not `fallocate`d: unwritten extents would be converted, a
/// metadata change, at the first write of each block. `cancelled` is asked
/// between chunks: `Err(WalError::Closed)` once it says yes.
pub(crate) fn prepare_segment(
    storage: &dyn Storage,
    dir: &Path,
    len_bytes: u64,
    sync: bool,
    cancelled: &dyn Fn() -> bool,
) -> Result<PreparedSegment, WalError> {
    let path = dir.join(PREPARED_SEGMENT_FILE_NAME);
    let mut file = storage
        .create(&path)
        .map_err(|e| WalError::io("create", &path, e))?;
    let zeros = vec![0u8; ZERO_CHUNK_BYTES.min(len_bytes as usize)];
    let mut offset = 0u64;
    // Bounded by `len_bytes`: every iteration writes at least one byte.
    while offset < len_bytes {
        if cancelled() {
            return Err(WalError::Closed);
        }
        let chunk = (len_bytes - offset).min(zeros.len() as u64) as usize;
        file.write_all_at(offset, &zeros[..chunk])
            .map_err(|e| WalError::io("zero-fill", &path, e))?;
        offset += chunk as u64;
    }
    if sync {
        file.sync_data()
            .map_err(|e| WalError::io("fdatasync", &path, e))?;
    }
    Ok(PreparedSegment { file, len_bytes })
}

/// Turns a prepared file into the segment starting at `first_seq`: its
/// header is written and synced (with the zeros, if they were not yet),
/// then it is renamed to the segment's name
/// and the directory is synced. A segment name therefore never appears
/// without its header being durable, and a crash before the rename leaves
/// only the prepared file, which recovery ignores.
pub(crate) fn install_segment(
    storage: &dyn Storage,
    dir: &Path,
    prepared: PreparedSegment,
    first_seq: u64,
    sync_mode: SyncMode,
) -> Result<(SegmentMeta, Box<dyn WriteFile>), WalError> {
    let from = dir.join(PREPARED_SEGMENT_FILE_NAME);
    let path = dir.join(segment_file_name(first_seq));
    let mut file = prepared.file;
    assert!(
        prepared.len_bytes >= SEGMENT_HEADER_SIZE as u64,
        "a prepared segment must hold at least a header"
    );
    file.write_all_at(0, &encode_segment_header(first_seq))
        .map_err(|e| WalError::io("write header", &from, e))?;
    if sync_mode == SyncMode::Fdatasync {
        file.sync_data()
            .map_err(|e| WalError::io("fdatasync", &from, e))?;
    }
    storage
        .rename(&from, &path)
        .map_err(|e| WalError::io("rename prepared segment to", &path, e))?;
    if sync_mode == SyncMode::Fdatasync {
        storage
            .sync_dir(dir)
            .map_err(|e| WalError::io("fsync dir", dir, e))?;
    }
    Ok((SegmentMeta { first_seq, path }, file))
}

/// Creates (or recreates, after a crash during rotation) the segment
/// starting at `first_seq` and makes its header and directory entry durable
/// before returning: zero-filled at `preallocate_bytes` if given, else a
/// plain file holding only the header.
pub(crate) fn create_segment(
    storage: &dyn Storage,
    dir: &Path,
    first_seq: u64,
    sync_mode: SyncMode,
    preallocate_bytes: Option<u64>,
) -> Result<(SegmentMeta, Box<dyn WriteFile>), WalError> {
    if let Some(len_bytes) = preallocate_bytes {
        // The zeros are synced with the header, by one `fdatasync`.
        let prepared = prepare_segment(storage, dir, len_bytes, false, &|| false)?;
        return install_segment(storage, dir, prepared, first_seq, sync_mode);
    }
    let path = dir.join(segment_file_name(first_seq));
    let mut file = storage
        .create(&path)
        .map_err(|e| WalError::io("create", &path, e))?;
    let header = encode_segment_header(first_seq);
    assert_eq!(
        header.len(),
        SEGMENT_HEADER_SIZE,
        "a segment header must be exactly the size the format defines"
    );
    file.write_all_at(0, &header)
        .map_err(|e| WalError::io("write header", &path, e))?;
    if sync_mode == SyncMode::Fdatasync {
        file.sync_data()
            .map_err(|e| WalError::io("fdatasync", &path, e))?;
        storage
            .sync_dir(dir)
            .map_err(|e| WalError::io("fsync dir", dir, e))?;
    }
    Ok((SegmentMeta { first_seq, path }, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_sort_in_log_order_and_round_trip() {
        let seqs = [1u64, 9, 10, 99_999, u64::MAX];
        let names: Vec<String> = seqs.iter().map(|&s| segment_file_name(s)).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        for (&seq, name) in seqs.iter().zip(&names) {
            assert_eq!(parse_segment_file_name(name), Some(seq));
        }
        assert_eq!(
            parse_segment_file_name("00000000000000000001.wal.torn-32"),
            None
        );
        assert_eq!(parse_segment_file_name("1.wal"), None);
    }
}
