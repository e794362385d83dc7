//! The snapshot thread: every `SNAPSHOT_POLL_INTERVAL` it refreshes the
//! snapshot gauges and, once `interval_records` durable records follow the
//! newest snapshot, takes one. A failure is logged, counted and shown in
//! `/health`, and retried after `SNAPSHOT_RETRY_INTERVAL`; it never stops
//! the server (the log still holds everything).
//!
//! The thread runs at a lower CPU priority (`SNAPSHOT_THREAD_NICE`): a
//! snapshot of 10^6 users takes a core for seconds, and on a busy machine
//! that core should go to requests first. It is never starved: a niced
//! thread still gets its (smaller) share under full load.

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

/// Nice value of the snapshot thread (0 is normal, 19 the lowest): under
/// contention a thread at 0 gets about ten times its share of a core.
pub const SNAPSHOT_THREAD_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority to `nice` (on Linux a nice
/// value belongs to the thread, not the process); never raises it.
pub fn lower_this_thread_priority(nice: i32) {
    let current = rustix::process::getpriority_process(None).unwrap_or(0);
    if current >= nice {
        return;
    }
    if let Err(error) = rustix::process::setpriority_process(None, nice) {
        tracing::warn!(%error, nice, "cannot lower the snapshot thread's CPU priority");
    }
}

fn run(snapshotter: &Snapshotter, interval_records: u64, stop: &(Mutex<bool>, Condvar)) {
    lower_this_thread_priority(SNAPSHOT_THREAD_NICE);
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
        if snapshotter.records_since_snapshot() < interval_records || Instant::now() < next_try {
            continue;
        }
        if snapshotter.report("snapshot", snapshotter.take()) {
            next_try = Instant::now() + SNAPSHOT_RETRY_INTERVAL;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowering_the_snapshot_threads_priority_leaves_the_other_threads_alone() {
        let before = rustix::process::getpriority_process(None).unwrap();
        let inside = thread::spawn(|| {
            lower_this_thread_priority(SNAPSHOT_THREAD_NICE);
            rustix::process::getpriority_process(None).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(inside, SNAPSHOT_THREAD_NICE.max(before));
        assert_eq!(rustix::process::getpriority_process(None).unwrap(), before);
    }
}
