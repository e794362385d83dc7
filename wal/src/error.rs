//! The one error type of the log.
//!
//! It is `Clone` so that every waiter of a failed batch receives the same
//! failure; corruption errors name the segment file and byte offset.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::format::DamageKind;

/// Everything that can go wrong in the log.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalError {
    #[error("invalid wal config: {0}")]
    Config(String),
    #[error("record of {len_bytes} bytes is larger than record_size_max_bytes {max_bytes}")]
    RecordTooLarge { len_bytes: usize, max_bytes: u32 },
    /// A write or sync failed earlier; the log accepts nothing until it is
    /// reopened (fsync is never retried).
    #[error("wal failed: {reason}")]
    Failed { reason: Arc<str> },
    #[error("wal closed")]
    Closed,
    /// Another process (a server, an offline exporter) has the log open.
    #[error("the log in {dir} is in use by another process (it holds the LOCK file)")]
    Locked { dir: PathBuf },
    #[error("wal I/O error: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: Arc<io::Error>,
    },
    #[error("wal corrupt: segment {segment} at byte offset {offset}: {kind}")]
    Corrupt {
        segment: PathBuf,
        offset: u64,
        kind: DamageKind,
    },
    #[error(
        "sequence number {seq} is no longer retained: the first retained record is {first_seq}"
    )]
    NotRetained { seq: u64, first_seq: u64 },
    #[error("sequence number {seq} has not been assigned (last assigned is {last_seq})")]
    NotAssigned { seq: u64, last_seq: u64 },
}

impl WalError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        WalError::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }
}
