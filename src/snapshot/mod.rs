//! Snapshots: the engine's whole state at a log sequence number, on disk
//! in `DATA_DIR/snapshots/`, so that a start replays only the log after
//! the newest one and old log segments can be deleted.
//!
//! Files, by idea: `format` (the bytes: header, checksum, bincode body),
//! `store` (files: durable write, at most two kept, read, list), `start`
//! (the start: newest valid snapshot, the log after it, the audit;
//! fallback and refusal), `taker` (building a snapshot off the request
//! path, and retention of log segments), `runner` (the thread that takes
//! them), `status` (what `/health` and `/metrics` show), `inspect` (the
//! operators' view).
//!
//! Promises: a start from a snapshot and the log after it rebuilds exactly
//! the state a start from the whole log would; a damaged snapshot is never
//! used; no log record is deleted unless two snapshots cover it (and,
//! with the exporter on, it is exported).

pub mod format;
pub mod inspect;
pub mod runner;
pub mod start;
pub mod status;
pub mod store;
pub mod taker;

#[cfg(test)]
mod format_tests;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

pub use format::{SnapshotBody, SnapshotDamage};
pub use runner::SnapshotThread;
pub use start::{start, StartError, StartPhases, Started, UsedSnapshot};
pub use status::{SnapshotHealth, SnapshotMetrics, SnapshotStatus};
pub use store::StoreError;
pub use taker::{Snapshotter, TakeError, Taken};

/// Directory of the snapshots in a data directory.
pub fn dir_in(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("snapshots")
}
