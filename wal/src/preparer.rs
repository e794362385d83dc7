//! The segment preparer: a thread that zero-fills the next segment while
//! the current one fills ([`crate::Preallocation::Ahead`]).
//!
//! It exists to keep the zero-fill (64 MiB written and synced by default)
//! off the commit path: at rotation the writer takes a ready file and only
//! writes its header, syncs it and renames it. Promise: at most one prepared
//! file exists at a time, and the preparer never touches it between the
//! writer's [`Preparer::take`] and its [`Preparer::want_next`] (the writer
//! renames it in between); a failed preparation is handed to the writer,
//! which fails the log rather than write into a file of unknown state.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use parking_lot::{Condvar, Mutex};

use crate::config::SyncMode;
use crate::error::WalError;
use crate::segment::{prepare_segment, PreparedSegment};
use crate::storage::Storage;

#[derive(Default)]
struct State {
    ready: Option<PreparedSegment>,
    /// The writer wants a (next) prepared file and is not renaming one.
    wanted: bool,
    failure: Option<WalError>,
    closed: bool,
}

/// The preparer and its thread, as the log handle keeps them.
pub(crate) type PreparerThread = (Arc<Preparer>, JoinHandle<()>);

/// The shared slot between the preparer thread and the writer.
pub(crate) struct Preparer {
    state: Mutex<State>,
    changed: Condvar,
}

/// What the preparer thread needs to make a segment file.
pub(crate) struct PrepareJob {
    pub storage: Arc<dyn Storage>,
    pub dir: PathBuf,
    pub len_bytes: u64,
    pub sync_mode: SyncMode,
}

impl Preparer {
    /// Starts the thread, which prepares a first file at once.
    pub(crate) fn start(job: PrepareJob) -> Result<PreparerThread, WalError> {
        let preparer = Arc::new(Preparer {
            state: Mutex::new(State {
                wanted: true,
                ..State::default()
            }),
            changed: Condvar::new(),
        });
        let shared = Arc::clone(&preparer);
        let dir = job.dir.clone();
        let handle = thread::Builder::new()
            .name("wal-preparer".to_string())
            .spawn(move || shared.run(&job))
            .map_err(|e| WalError::io("spawn preparer thread for", &dir, e))?;
        Ok((preparer, handle))
    }

    fn run(&self, job: &PrepareJob) {
        // Bounded by `close`: every iteration prepares one file or waits.
        loop {
            {
                let mut state = self.state.lock();
                // Bounded by the writer's `want_next` and by `close`.
                loop {
                    if state.closed {
                        return;
                    }
                    if state.wanted && state.ready.is_none() {
                        break;
                    }
                    self.changed.wait(&mut state);
                }
            }
            let result = prepare_segment(
                job.storage.as_ref(),
                &job.dir,
                job.len_bytes,
                // Synced now, so that the header's sync at rotation
                // flushes one block, not the whole segment.
                job.sync_mode == SyncMode::Fdatasync,
                &|| self.state.lock().closed,
            );
            let mut state = self.state.lock();
            state.wanted = false;
            let failed = result.is_err();
            match result {
                Ok(prepared) => state.ready = Some(prepared),
                Err(error) => state.failure = Some(error),
            }
            self.changed.notify_all();
            if failed {
                return;
            }
        }
    }

    /// A ready file, if there is one, without waiting.
    pub(crate) fn try_take(&self) -> Option<PreparedSegment> {
        self.state.lock().ready.take()
    }

    /// Waits for the file being prepared (at most one zero-fill) and takes
    /// it; the error of a failed preparation, or `Closed` after `close`.
    pub(crate) fn take(&self) -> Result<PreparedSegment, WalError> {
        let mut state = self.state.lock();
        // Bounded by the preparer: it finishes its file, fails, or is closed.
        loop {
            if let Some(prepared) = state.ready.take() {
                return Ok(prepared);
            }
            if let Some(failure) = &state.failure {
                return Err(failure.clone());
            }
            if state.closed {
                return Err(WalError::Closed);
            }
            self.changed.wait(&mut state);
        }
    }

    /// The file taken last has its segment name now: prepare the next one.
    pub(crate) fn want_next(&self) {
        let mut state = self.state.lock();
        state.wanted = true;
        self.changed.notify_all();
    }

    /// Stops the thread; a zero-fill in progress stops at its next chunk.
    pub(crate) fn close(&self) {
        let mut state = self.state.lock();
        state.closed = true;
        self.changed.notify_all();
    }
}
