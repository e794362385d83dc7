//! The one error type of the log.
//!
//! It is `Clone` so that every waiter of a failed batch receives the same
//! failure; corruption errors name the segment file and byte offset. It is
//! `#[non_exhaustive]` so that the log can learn a new way to fail without
//! breaking its callers' `match`es. An I/O failure keeps its `io::Error` as
//! the `source()`, behind an `Arc` because `io::Error` is not `Clone`.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::format::{DamageKind, LogMetaDamage};

/// Everything that can go wrong in the log.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// `WalConfig::validate` refused the configuration; the text says which
    /// field and why.
    #[error("invalid wal config: {0}")]
    Config(String),
    /// `append` was given a payload above `record_size_max_bytes`; nothing
    /// was queued.
    #[error("record of {len_bytes} bytes is larger than record_size_max_bytes {max_bytes}")]
    RecordTooLarge { len_bytes: usize, max_bytes: u32 },
    /// A write or sync failed earlier; the log accepts nothing until it is
    /// reopened (fsync is never retried).
    #[error("wal failed: {reason}")]
    Failed { reason: Arc<str> },
    /// The log was closed; it accepts no more appends.
    #[error("wal closed")]
    Closed,
    /// Another process (a server, an offline exporter) has the log open.
    #[error("the log in {dir} is in use by another process (it holds the LOCK file)")]
    Locked { dir: PathBuf },
    /// A file-system call failed: `op` names the call, `path` its file.
    #[error("wal I/O error: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },
    /// Damage found by recovery that a crash cannot explain, or met by a
    /// reader: the segment file, the byte offset in it, and what is wrong.
    #[error("wal corrupt: segment {segment} at byte offset {offset}: {kind}")]
    Corrupt {
        segment: PathBuf,
        offset: u64,
        kind: DamageKind,
    },
    /// A read asked for a record in a segment that was already deleted.
    #[error(
        "sequence number {seq} is no longer retained: the first retained record is {first_seq}"
    )]
    NotRetained { seq: u64, first_seq: u64 },
    /// The metadata file (`LOG_META`: the log's identity and start) cannot
    /// be trusted; `open` refuses the log rather than guess where it starts.
    #[error("wal metadata file {path} is damaged: {kind}")]
    MetaCorrupt { path: PathBuf, kind: LogMetaDamage },
    /// The oldest segment starts after the log's start: the records between
    /// were lost (a segment file went missing), not deleted by retention.
    #[error(
        "the log should start at record {start_seq} but its oldest segment {segment} starts at \
         {found_first_seq}: records {start_seq}..{} are missing",
        .found_first_seq.saturating_sub(1)
    )]
    StartMissing {
        start_seq: u64,
        segment: PathBuf,
        found_first_seq: u64,
    },
    /// The newest segment ends before the log's start: the records between
    /// its end and the start are missing.
    #[error(
        "the log should start at record {start_seq} but its newest segment {segment} ends at record \
         {last_seq}: records {}..{} are missing",
        .last_seq.saturating_add(1),
        .start_seq.saturating_sub(1)
    )]
    EndsBeforeStart {
        start_seq: u64,
        segment: PathBuf,
        last_seq: u64,
    },
    /// The log has a metadata file but no segment file. The metadata file is
    /// written only after the first segment is durable and the newest
    /// segment is never deleted, so every segment was lost.
    #[error(
        "the log in {dir} has a metadata file (start {start_seq}) but no segment file: \
         its segments are missing"
    )]
    SegmentsMissing { dir: PathBuf, start_seq: u64 },
    /// A wait asked for a sequence number `append` has not handed out yet.
    #[error("sequence number {seq} has not been assigned (last assigned is {last_seq})")]
    NotAssigned { seq: u64, last_seq: u64 },
}

impl WalError {
    /// A [`WalError::Io`] for `op` on `path`, keeping `source` as the cause.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        WalError::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn an_io_error_keeps_its_cause_and_its_text() {
        let cause = io::Error::new(io::ErrorKind::PermissionDenied, "no");
        let error = WalError::io("write", "/log/1.wal", cause);
        assert_eq!(error.to_string(), "wal I/O error: write /log/1.wal: no");
        let source = error.source().expect("the io::Error is the source");
        assert_eq!(source.to_string(), "no");
        assert!(error.clone().source().is_some(), "a clone keeps it too");
    }

    #[test]
    fn a_missing_start_names_the_segment_and_the_missing_records() {
        let error = WalError::StartMissing {
            start_seq: 1,
            segment: "/log/00000000000000000500.wal".into(),
            found_first_seq: 500,
        };
        assert_eq!(
            error.to_string(),
            "the log should start at record 1 but its oldest segment \
             /log/00000000000000000500.wal starts at 500: records 1..499 are missing"
        );
    }
}
