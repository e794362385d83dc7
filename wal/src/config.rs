//! Settings of a log, with units in their names and explicit limits.
//!
//! This module exists so that every limit the log enforces (segment size,
//! record size, batch size, queue memory) is a named, validated value.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::WalError;
use crate::format::{RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE};

/// Whether a batch is synced before its records are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// One `fdatasync` a batch; acknowledged records survive power loss.
    #[default]
    Fdatasync,
    /// UNSAFE, for benchmarks only: no sync at all. Records are
    /// "durable" as soon as they are written to the page cache, so a crash
    /// of the machine loses acknowledged records.
    UnsafeNoSync,
}

/// How new segments get their disk space.
///
/// A segment created at its full size, zero-filled and synced (as
/// PostgreSQL does with its WAL segments), is written in place afterwards:
/// a batch's `fdatasync` then flushes data only, with no file-size change
/// for the file system to journal. Recovery reads zeros where the next
/// record would start as the end of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preallocation {
    /// A background thread prepares the next segment (zero-filled, synced,
    /// under the name [`crate::PREPARED_SEGMENT_FILE_NAME`]) while the
    /// current one fills, off the commit path. A new log starts with a
    /// plain segment, which is left for the first prepared one as soon as
    /// that is ready, so opening a new log costs no zero-fill.
    #[default]
    Ahead,
    /// The writer zero-fills a segment when it needs it: rotation waits for
    /// the zero-fill. Deterministic, for tests on a simulated file system.
    Inline,
    /// Segments grow with every batch (each sync also journals the length).
    Off,
}

/// Receives timing of every batch, e.g. to feed metrics. Called on the
/// writer thread: keep it cheap and never block.
pub trait WalObserver: Send + Sync {
    /// A batch of `records` records, `bytes` bytes, was written and synced
    /// in `write_and_sync_latency`.
    fn on_batch(&self, records: usize, bytes: usize, write_and_sync_latency: Duration);
    /// The log entered the failed state.
    fn on_failed(&self, reason: &str) {
        let _ = reason;
    }
}

/// Settings of a log. [`WalConfig::new`] gives the defaults.
#[derive(Clone)]
pub struct WalConfig {
    /// Directory of the segment files (created if missing).
    pub dir: PathBuf,
    /// A segment is rotated before a batch would make it larger than this.
    pub segment_size_max_bytes: u64,
    /// Largest payload `append` accepts.
    pub record_size_max_bytes: u32,
    /// Largest batch (framed records) written with one write and one sync.
    pub batch_bytes_max: usize,
    /// Largest amount of framed records waiting for the writer; a full
    /// queue makes `append` wait.
    pub queue_bytes_max: usize,
    /// Whether batches are synced before they are acknowledged.
    pub sync_mode: SyncMode,
    /// How segments get their disk space.
    pub preallocation: Preallocation,
    /// Longest the writer holds a batch back so that appenders known to be
    /// on their way join it (one sync for more records). Applied only while
    /// the log is busy (the previous batch held several records and the
    /// writer was not idle for longer than this); an idle log never waits.
    /// Zero: never wait.
    pub commit_delay_max: Duration,
    /// Told of every batch and of a failure, e.g. to feed metrics.
    pub observer: Option<Arc<dyn WalObserver>>,
}

/// Default segment size: 64 MiB.
pub const SEGMENT_SIZE_MAX_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Default record size limit: 1 MiB.
pub const RECORD_SIZE_MAX_BYTES_DEFAULT: u32 = 1024 * 1024;
/// Default batch size limit: 4 MiB.
pub const BATCH_BYTES_MAX_DEFAULT: usize = 4 * 1024 * 1024;
/// Default queue limit: 16 MiB.
pub const QUEUE_BYTES_MAX_DEFAULT: usize = 16 * 1024 * 1024;

/// Default longest commit delay: 200 µs, a fraction of one `fdatasync`.
pub const COMMIT_DELAY_MAX_DEFAULT: Duration = Duration::from_micros(200);
/// Largest accepted commit delay: 10 ms.
pub const COMMIT_DELAY_MAX_LIMIT: Duration = Duration::from_millis(10);

impl WalConfig {
    /// The defaults, with the log in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        WalConfig {
            dir: dir.into(),
            segment_size_max_bytes: SEGMENT_SIZE_MAX_BYTES_DEFAULT,
            record_size_max_bytes: RECORD_SIZE_MAX_BYTES_DEFAULT,
            batch_bytes_max: BATCH_BYTES_MAX_DEFAULT,
            queue_bytes_max: QUEUE_BYTES_MAX_DEFAULT,
            sync_mode: SyncMode::default(),
            preallocation: Preallocation::default(),
            commit_delay_max: COMMIT_DELAY_MAX_DEFAULT,
            observer: None,
        }
    }

    /// Checks that the limits fit inside each other: a record fits a batch,
    /// a batch fits the queue and an empty segment.
    pub fn validate(&self) -> Result<(), WalError> {
        let record_framed_max = RECORD_HEADER_SIZE as u64 + u64::from(self.record_size_max_bytes);
        if (self.batch_bytes_max as u64) < record_framed_max {
            return Err(WalError::Config(format!(
                "batch_bytes_max {} is smaller than a framed record of record_size_max_bytes {}",
                self.batch_bytes_max, self.record_size_max_bytes
            )));
        }
        if self.queue_bytes_max < self.batch_bytes_max {
            return Err(WalError::Config(format!(
                "queue_bytes_max {} is smaller than batch_bytes_max {}",
                self.queue_bytes_max, self.batch_bytes_max
            )));
        }
        if self.segment_size_max_bytes < SEGMENT_HEADER_SIZE as u64 + self.batch_bytes_max as u64 {
            return Err(WalError::Config(format!(
                "segment_size_max_bytes {} cannot hold a header and a batch of batch_bytes_max {}",
                self.segment_size_max_bytes, self.batch_bytes_max
            )));
        }
        if self.commit_delay_max > COMMIT_DELAY_MAX_LIMIT {
            return Err(WalError::Config(format!(
                "commit_delay_max {:?} exceeds {COMMIT_DELAY_MAX_LIMIT:?}",
                self.commit_delay_max
            )));
        }
        Ok(())
    }
}

impl fmt::Debug for WalConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalConfig")
            .field("dir", &self.dir)
            .field("segment_size_max_bytes", &self.segment_size_max_bytes)
            .field("record_size_max_bytes", &self.record_size_max_bytes)
            .field("batch_bytes_max", &self.batch_bytes_max)
            .field("queue_bytes_max", &self.queue_bytes_max)
            .field("sync_mode", &self.sync_mode)
            .field("preallocation", &self.preallocation)
            .field("commit_delay_max", &self.commit_delay_max)
            .field(
                "observer",
                &self.observer.as_ref().map(|_| "dyn WalObserver"),
            )
            .finish()
    }
}
