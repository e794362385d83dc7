//! The public handle of a log: open, append, wait, read, retain, close;
//! and what the log knows about itself (identity, start).
//!
//! It exists to tie recovery, the shared queue, the writer thread and the
//! readers together behind one `Send + Sync` value that the service keeps in
//! an `Arc`.

use std::path::Path;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use parking_lot::Mutex;

use crate::commit_queue::CommitQueue;
use crate::config::{Preallocation, WalConfig};
use crate::error::WalError;
use crate::format::LogMeta;
use crate::log_meta::write_log_meta;
use crate::preparer::{PrepareJob, Preparer, PreparerThread};
use crate::reader::WalReader;
use crate::recovery::recover;
use crate::storage::{DirLock, FsStorage, Storage};
use crate::writer::Writer;

/// A segmented, group-committed write-ahead log of opaque payloads.
pub struct Wal {
    shared: Arc<CommitQueue>,
    storage: Arc<dyn Storage>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// With `Preallocation::Ahead`: the thread zero-filling the next segment.
    preparer: Mutex<Option<PreparerThread>>,
    /// What `LOG_META` holds; locked for the whole of a deletion, so that
    /// two deletions never write the file at once.
    meta: Mutex<LogMeta>,
    /// Held for the life of the handle: one process per log.
    _dir_lock: Option<DirLock>,
}

impl Wal {
    /// Opens (or creates) the log in `config.dir` on the real file system.
    pub fn open(config: WalConfig) -> Result<Wal, WalError> {
        Wal::open_with_storage(config, Arc::new(FsStorage))
    }

    /// Opens the log on `storage` (tests use a fault-injecting one).
    /// Reads `LOG_META` (creating it for a new or a legacy log), checks
    /// every segment against the start, cuts a torn tail of the newest one
    /// into a side file, syncs what it recovered, and starts the writer
    /// thread.
    pub fn open_with_storage(
        config: WalConfig,
        storage: Arc<dyn Storage>,
    ) -> Result<Wal, WalError> {
        config.validate()?;
        let dir_lock = lock_dir(&config, storage.as_ref())?;
        let recovered = recover(&config, storage.as_ref())?;
        let active_path = match recovered.segments.last() {
            Some(segment) => segment.path.clone(),
            None => unreachable!("recovery always leaves an active segment"),
        };
        let dir = config.dir.clone();
        let meta = recovered.meta;
        let preparer = start_preparer(&config, &storage)?;
        let shared = CommitQueue::new(
            config,
            recovered.last_seq,
            meta.start_seq,
            recovered.segments,
        );
        let writer = Writer {
            shared: Arc::clone(&shared),
            storage: Arc::clone(&storage),
            active: recovered.active,
            active_path,
            active_len_bytes: recovered.active_len_bytes,
            active_preallocated: recovered.active_preallocated,
            preparer: preparer.as_ref().map(|(p, _)| Arc::clone(p)),
        };
        let spawned = thread::Builder::new()
            .name("wal-writer".to_string())
            .spawn(move || writer.run());
        let handle = match spawned {
            Ok(handle) => handle,
            Err(error) => {
                // No writer: stop the preparer too, rather than leave it.
                if let Some((preparer, _)) = &preparer {
                    preparer.close();
                }
                return Err(WalError::io("spawn writer thread for", dir, error));
            }
        };
        Ok(Wal {
            shared,
            storage,
            writer: Mutex::new(Some(handle)),
            preparer: Mutex::new(preparer),
            meta: Mutex::new(meta),
            _dir_lock: dir_lock,
        })
    }

    /// Queues `payload` under the next sequence number and returns it at
    /// once. Blocks only while the queue is full; never does I/O, so it can
    /// be called under a short lock that orders the caller's decisions.
    pub fn append(&self, payload: &[u8]) -> Result<u64, WalError> {
        self.shared.append(payload)
    }

    /// Blocks until record `seq` is durable. Never succeeds for a record
    /// whose batch failed.
    pub fn wait_durable(&self, seq: u64) -> Result<(), WalError> {
        self.shared.wait_durable(seq)
    }

    /// [`Wal::wait_durable`] without blocking a thread; needs no runtime.
    pub async fn wait_durable_async(&self, seq: u64) -> Result<(), WalError> {
        self.shared.wait_durable_async(seq).await
    }

    /// Completes once record `seq` is durable, appended yet or not: for a
    /// reader that follows the log's end (the replication of its records).
    /// Fails once the log has failed; waits for ever if nothing more is
    /// ever appended, so a caller bounds it with a timeout.
    pub async fn wait_end_durable_async(&self, seq: u64) -> Result<(), WalError> {
        self.shared.wait_end_durable_async(seq).await
    }

    /// Every record up to this one is durable (0: none yet).
    pub fn durable_seq(&self) -> u64 {
        self.shared.durable_seq()
    }

    /// The last sequence number assigned by `append` (0: none yet).
    pub fn last_seq(&self) -> u64 {
        self.shared.last_seq()
    }

    /// The first retained sequence number (1 until segments are deleted):
    /// the start ([`Wal::start_seq`]); no reader is handed a record before it.
    pub fn first_seq(&self) -> u64 {
        self.shared.first_retained_seq()
    }

    /// The log's first record, as its metadata file `LOG_META` keeps it: 1
    /// for a new log, raised by [`Wal::delete_segments_before`]. `open`
    /// refuses a log whose oldest segment starts after it.
    pub fn start_seq(&self) -> u64 {
        self.shared.start_seq()
    }

    /// The log's identity: 128 random bits created with the log and kept in
    /// `LOG_META`, the same after every reopen, different for every log.
    pub fn log_id(&self) -> u128 {
        self.meta.lock().log_id
    }

    /// Why the log is failed, if it is.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure().map(|failure| failure.to_string())
    }

    /// The directory of the segment files.
    pub fn dir(&self) -> &Path {
        &self.shared.config.dir
    }

    /// A reader from `from_seq` (0 means 1) up to the durable end.
    pub fn read_from(&self, from_seq: u64) -> Result<WalReader, WalError> {
        WalReader::new(
            Arc::clone(&self.shared),
            Arc::clone(&self.storage),
            from_seq,
        )
    }

    /// Deletes whole segments all of whose records are below `seq` and
    /// durable; never the active segment. Returns how many were deleted.
    /// First raises the start in `LOG_META` (durably) to the first record of
    /// the oldest segment that stays; then deletes, oldest first. A crash in
    /// between leaves segments wholly before the start, which the next
    /// `open` deletes; never a gap.
    pub fn delete_segments_before(&self, seq: u64) -> Result<usize, WalError> {
        let mut meta = self.meta.lock();
        let limit = seq.min(self.durable_seq().saturating_add(1));
        let Some(new_start) = self.new_start_seq(limit) else {
            return Ok(0);
        };
        let dir = &self.shared.config.dir;
        if new_start > meta.start_seq {
            let raised = LogMeta {
                start_seq: new_start,
                ..*meta
            };
            // Readers stop at the new start at once: if the write fails, the
            // file may hold either start, and the later one is the safe one.
            self.shared.raise_start_seq(new_start);
            write_log_meta(self.storage.as_ref(), dir, &raised)?;
            *meta = raised;
        }
        let mut deleted = 0;
        // Bounded by the number of segments: each iteration removes one.
        loop {
            let victim = {
                let mut segments = self.shared.segments.lock();
                match segments.get(1) {
                    Some(next) if next.first_seq <= new_start => segments.remove(0),
                    _ => return Ok(deleted),
                }
            };
            self.storage
                .remove_file(&victim.path)
                .map_err(|e| WalError::io("remove", &victim.path, e))?;
            self.storage
                .sync_dir(dir)
                .map_err(|e| WalError::io("fsync dir", dir, e))?;
            deleted += 1;
        }
    }

    /// The first record of the newest segment, other than the oldest, that
    /// starts at or before `limit`: where the log starts once the segments
    /// before it are deleted. `None`: no segment can be deleted.
    fn new_start_seq(&self, limit: u64) -> Option<u64> {
        let segments = self.shared.segments.lock();
        segments
            .iter()
            .skip(1)
            .take_while(|segment| segment.first_seq <= limit)
            .last()
            .map(|segment| segment.first_seq)
    }

    /// Stops accepting appends, makes everything queued durable (unless the
    /// log failed), and stops the writer thread. Idempotent.
    pub fn close(&self) {
        self.shared.close();
        let handle = self.writer.lock().take();
        if let Some(handle) = handle {
            // The writer catches its own panics; a join error cannot carry news.
            let _ = handle.join();
        }
        // After the writer: it may be waiting for the file being prepared.
        if let Some((preparer, handle)) = self.preparer.lock().take() {
            preparer.close();
            let _ = handle.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.shared.config.dir)
            .field("log_id", &format_args!("{:032x}", self.log_id()))
            .field("start_seq", &self.start_seq())
            .field("first_seq", &self.first_seq())
            .field("durable_seq", &self.durable_seq())
            .field("last_seq", &self.last_seq())
            .field("failure", &self.failure())
            .finish()
    }
}

/// Starts the thread that zero-fills the next segment, with
/// `Preallocation::Ahead`.
fn start_preparer(
    config: &WalConfig,
    storage: &Arc<dyn Storage>,
) -> Result<Option<PreparerThread>, WalError> {
    if config.preallocation != Preallocation::Ahead {
        return Ok(None);
    }
    let job = PrepareJob {
        storage: Arc::clone(storage),
        dir: config.dir.clone(),
        len_bytes: config.segment_size_max_bytes,
        sync_mode: config.sync_mode,
    };
    Preparer::start(job).map(Some)
}

/// Creates the log directory and locks it, or says which directory is in
/// use by another process.
fn lock_dir(config: &WalConfig, storage: &dyn Storage) -> Result<Option<DirLock>, WalError> {
    let dir = &config.dir;
    storage
        .create_dir_all(dir)
        .map_err(|e| WalError::io("create directory", dir, e))?;
    storage.lock_dir(dir).map_err(|error| match error.kind() {
        std::io::ErrorKind::WouldBlock => WalError::Locked { dir: dir.clone() },
        _ => WalError::io("lock", dir, error),
    })
}
