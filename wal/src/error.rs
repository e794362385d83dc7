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

use crate::format::DamageKind;

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
}
