//! The one writer thread: group commit.
//!
//! It exists because one `fdatasync` for many records is the only way to
//! make durable appends fast. When it is free it takes the oldest queued
//! batch (everything appended since the previous batch was taken, up to
//! `batch_bytes_max`), writes it with one write, syncs it with one
//! `fdatasync`, and then wakes every waiter of that batch. A batch is as
//! large as the load made it while the previous one was being synced, and,
//! while the log is busy, as the appenders known to be coming make it within
//! `commit_delay_max` (see `CommitQueue::next_batch`).
//!
//! Segments are written in place at the end of their last record: a
//! preallocated segment is already at its full size (zero-filled), so a
//! batch's sync flushes data only. See `preparer` for where the next one
//! comes from.
//!
//! Promise: a batch is acknowledged only after its write and sync both
//! succeeded; after the first failed write or sync nothing is written or
//! synced again (fsync is never retried: the page cache may already have
//! dropped the dirty pages), and the log is failed.

use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::commit_queue::{Batch, CommitQueue};
use crate::config::{Preallocation, SyncMode};
use crate::error::WalError;
use crate::format::SEGMENT_HEADER_SIZE;
use crate::preparer::Preparer;
use crate::segment::{create_segment, install_segment, PreparedSegment, SegmentMeta};
use crate::storage::{Storage, WriteFile};

pub(crate) struct Writer {
    pub shared: Arc<CommitQueue>,
    pub storage: Arc<dyn Storage>,
    pub active: Box<dyn WriteFile>,
    pub active_path: PathBuf,
    /// Where the next batch is written: the end of the last record.
    pub active_len_bytes: u64,
    /// The active segment is zero-filled to its full size, so a sync of a
    /// batch written into it changes no file length.
    pub active_preallocated: bool,
    /// With [`Preallocation::Ahead`]: the thread preparing the next segment.
    pub preparer: Option<Arc<Preparer>>,
}

impl Writer {
    /// Runs until the log is closed and drained, or fails. A panic in here
    /// fails the log rather than leaving waiters hanging.
    pub(crate) fn run(self) {
        let shared = Arc::clone(&self.shared);
        let result = panic::catch_unwind(AssertUnwindSafe(move || self.run_batches()));
        if result.is_err() {
            fail(&shared, "the wal writer thread panicked".to_string());
        }
    }

    fn run_batches(mut self) {
        while let Some(batch) = self.shared.next_batch() {
            let started = Instant::now();
            if let Err(error) = self.write_batch(&batch) {
                fail(&self.shared, error.to_string());
                return;
            }
            let latency = started.elapsed();
            self.shared.publish_durable(batch.last_seq);
            if let Some(observer) = &self.shared.config.observer {
                observer.on_batch(batch.records, batch.bytes.len(), latency);
            }
            self.shared.recycle(batch.bytes);
        }
    }

    fn write_batch(&mut self, batch: &Batch) -> Result<(), WalError> {
        assert!(
            batch.records > 0
                && batch.last_seq.wrapping_sub(batch.first_seq).wrapping_add(1)
                    == batch.records as u64,
            "a batch must hold {} contiguous records, not {}..={}",
            batch.records,
            batch.first_seq,
            batch.last_seq
        );
        let batch_len = batch.bytes.len() as u64;
        let has_records = self.active_len_bytes > SEGMENT_HEADER_SIZE as u64;
        if has_records
            && self.active_len_bytes + batch_len > self.shared.config.segment_size_max_bytes
        {
            self.rotate(batch.first_seq)?;
        } else if has_records && !self.active_preallocated {
            // A plain segment (a new log's first, or one written before
            // preallocation) is left as soon as a zero-filled one is ready.
            if let Some(prepared) = self.preparer.as_ref().and_then(|p| p.try_take()) {
                self.install_prepared(prepared, batch.first_seq)?;
            }
        }
        let path = &self.active_path;
        self.active
            .write_all_at(self.active_len_bytes, &batch.bytes)
            .map_err(|e| WalError::io("write", path, e))?;
        self.active_len_bytes += batch_len;
        if self.shared.config.sync_mode == SyncMode::Fdatasync {
            self.active
                .sync_data()
                .map_err(|e| WalError::io("fdatasync", path, e))?;
        }
        Ok(())
    }

    /// Starts a new segment at `first_seq`. The old one is complete and
    /// synced (every batch is); the new one's header and directory entry are
    /// durable before the first record goes into it.
    fn rotate(&mut self, first_seq: u64) -> Result<(), WalError> {
        if let Some(preparer) = &self.preparer {
            // Waits only if the next segment is still being zero-filled.
            let prepared = preparer.take()?;
            return self.install_prepared(prepared, first_seq);
        }
        let config = &self.shared.config;
        let preallocate_bytes =
            (config.preallocation != Preallocation::Off).then_some(config.segment_size_max_bytes);
        let (meta, file) = create_segment(
            self.storage.as_ref(),
            &config.dir,
            first_seq,
            config.sync_mode,
            preallocate_bytes,
        )?;
        self.activate(meta, file, preallocate_bytes.is_some());
        Ok(())
    }

    /// Makes a file the preparer zero-filled the segment at `first_seq`,
    /// then lets the preparer start on the next one.
    fn install_prepared(
        &mut self,
        prepared: PreparedSegment,
        first_seq: u64,
    ) -> Result<(), WalError> {
        let config = &self.shared.config;
        let (meta, file) = install_segment(
            self.storage.as_ref(),
            &config.dir,
            prepared,
            first_seq,
            config.sync_mode,
        )?;
        self.activate(meta, file, true);
        if let Some(preparer) = &self.preparer {
            preparer.want_next();
        }
        Ok(())
    }

    fn activate(&mut self, meta: SegmentMeta, file: Box<dyn WriteFile>, preallocated: bool) {
        let first_seq = meta.first_seq;
        self.active = file;
        self.active_path = meta.path.clone();
        self.active_len_bytes = SEGMENT_HEADER_SIZE as u64;
        self.active_preallocated = preallocated;
        let mut segments = self.shared.segments.lock();
        assert!(
            segments
                .last()
                .is_some_and(|last| last.first_seq < first_seq),
            "a new segment at {first_seq} must start after the newest one"
        );
        segments.push(meta);
    }
}

/// Fails the log; `CommitQueue::fail` tells the observer once.
fn fail(shared: &CommitQueue, reason: String) {
    shared.fail(reason);
}
