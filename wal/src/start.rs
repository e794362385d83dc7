//! The start rule: the log knows which record is its first, so a lost
//! oldest segment stops `open` instead of silently shortening the log.
//!
//! The start (`start_seq`, kept in `LOG_META`) only grows, and only in
//! `Wal::delete_segments_before`, which raises it durably *before* it
//! deletes the segments below it. So at open:
//! - segments wholly before the start are what an interrupted deletion left
//!   behind: they are deleted (the deletion is finished), not refused;
//! - an oldest remaining segment that starts after the start means records
//!   were lost: `WalError::StartMissing`;
//! - a newest segment that ends more than one record before the start means
//!   the same: `WalError::EndsBeforeStart`.
//!
//! Promise: after [`finish_deletion`] and [`check_start`] the oldest
//! segment holds the start (or the log is empty and its next record is the
//! start).

use std::path::{Path, PathBuf};

use crate::error::WalError;
use crate::storage::Storage;

/// Deletes the segments of `found` (sorted, oldest first) that lie wholly
/// before `start_seq`, i.e. whose successor starts at or before it, and
/// makes the deletion durable. Returns the remaining segments. The newest
/// segment is never deleted here.
pub(crate) fn finish_deletion(
    storage: &dyn Storage,
    dir: &Path,
    start_seq: u64,
    found: Vec<(u64, PathBuf)>,
) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let before = found
        .windows(2)
        .take_while(|pair| pair[1].0 <= start_seq)
        .count();
    if before == 0 {
        return Ok(found);
    }
    for (_, path) in &found[..before] {
        storage
            .remove_file(path)
            .map_err(|e| WalError::io("remove (finishing a deletion)", path, e))?;
    }
    storage
        .sync_dir(dir)
        .map_err(|e| WalError::io("fsync dir", dir, e))?;
    Ok(found.into_iter().skip(before).collect())
}

/// Refuses a log whose oldest segment starts after `start_seq`.
pub(crate) fn check_start(start_seq: u64, oldest: &(u64, PathBuf)) -> Result<(), WalError> {
    let (first_seq, path) = oldest;
    if *first_seq > start_seq {
        return Err(WalError::StartMissing {
            start_seq,
            segment: path.clone(),
            found_first_seq: *first_seq,
        });
    }
    Ok(())
}

/// Refuses a log whose newest segment ends before the record just before
/// `start_seq` (an empty log whose next record is the start is fine).
pub(crate) fn check_end(start_seq: u64, last_seq: u64, newest: &Path) -> Result<(), WalError> {
    if start_seq > last_seq.saturating_add(1) {
        return Err(WalError::EndsBeforeStart {
            start_seq,
            segment: newest.to_path_buf(),
            last_seq,
        });
    }
    Ok(())
}
