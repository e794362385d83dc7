//! The snapshot thread: every `SNAPSHOT_POLL_INTERVAL` it refreshes the
//! snapshot gauges and, once `interval_records` durable records follow the
//! newest snapshot, takes one. A failure is logged, counted and shown in
//! `/health`, and retried after `SNAPSHOT_RETRY_INTERVAL`; it never stops
//! the server (the log still holds everything).

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use super::taker::{Snapshotter, SNAPSHOT_POLL_INTERVAL, SNAPSHOT_RETRY_INTERVAL};

/// The running snapshot thread; `stop` ends it.
pub struct SnapshotThread {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl SnapshotThread {
    /// Starts the thread.
    pub fn spawn(
        snapshotter: Arc<Snapshotter>,
        interval_records: u64,
    ) -> std::io::Result<SnapshotThread> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let handle = thread::Builder::new()
            .name("snapshots".to_string())
            .spawn({
                let stop = Arc::clone(&stop);
                move || run(&snapshotter, interval_records, &stop)
            })?;
        Ok(SnapshotThread {
            stop,
            handle: Some(handle),
        })
    }

    /// Stops the thread after the snapshot it may be taking.
    pub fn stop(mut self) {
        self.signal_and_join();
    }

    fn signal_and_join(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock() = true;
        wake.notify_all();
        if let Some(handle) = self.handle.take() {
            // The thread catches nothing; a panic there is already reported.
            let _ = handle.join();
        }
    }
}

impl Drop for SnapshotThread {
    fn drop(&mut self) {
        self.signal_and_join();
    }
}

fn run(snapshotter: &Snapshotter, interval_records: u64, stop: &(Mutex<bool>, Condvar)) {
    let (stopped, wake) = stop;
    let mut next_try = Instant::now();
    loop {
        {
            let mut stopped = stopped.lock();
            if !*stopped {
                wake.wait_for(&mut stopped, SNAPSHOT_POLL_INTERVAL);
            }
            if *stopped {
                return;
            }
        }
        snapshotter.refresh_gauges();
        let since = snapshotter
            .journal
            .durable_seq()
            .saturating_sub(snapshotter.status.seq());
        if since < interval_records || Instant::now() < next_try {
            continue;
        }
        match snapshotter.take() {
            Ok(Some(taken)) => tracing::info!(
                seq = taken.seq,
                file_bytes = taken.file_bytes,
                segments_deleted = taken.segments_deleted,
                "snapshot written"
            ),
            Ok(None) => {}
            Err(error) => {
                snapshotter.metrics.snapshot_failures_total.inc();
                snapshotter.status.set_failure(error.kind());
                let error = crate::error_chain(&error);
                tracing::error!(%error, "snapshot failed; retrying later");
                next_try = Instant::now() + SNAPSHOT_RETRY_INTERVAL;
            }
        }
    }
}
