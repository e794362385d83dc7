//! Segment files: their names, and creating a new one durably.
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

/// Creates (or recreates, after a crash during rotation) the segment
/// starting at `first_seq`, writes its header, and makes both the header and
/// the directory entry durable before returning.
pub(crate) fn create_segment(
    storage: &dyn Storage,
    dir: &Path,
    first_seq: u64,
    sync_mode: SyncMode,
) -> Result<(SegmentMeta, Box<dyn WriteFile>), WalError> {
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
    file.write_all(&header)
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
