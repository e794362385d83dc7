//! The commit queue: state shared by appenders, the writer thread, waiters
//! and readers.
//!
//! This module exists to keep the synchronisation in one place. The queue is
//! a list of batches, each at most `batch_bytes_max`, together at most
//! `queue_bytes_max`: appenders fill the newest batch while the writer
//! writes and syncs the oldest one (double buffering without a copy).
//!
//! Promises: sequence numbers are assigned contiguously under the queue
//! lock, in the order records enter the queue; `durable_seq` only grows and
//! only after the batch that contains it was written and synced; once the log
//! has failed, `durable_seq` never moves again and every waiter above it
//! gets the failure.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::config::WalConfig;
use crate::error::WalError;
use crate::format::{encode_record, RECORD_HEADER_SIZE};
use crate::segment::SegmentMeta;

/// Framed records with contiguous sequence numbers, written as one.
pub(crate) struct Batch {
    pub bytes: Vec<u8>,
    pub first_seq: u64,
    pub last_seq: u64,
    pub records: usize,
}

struct Queue {
    batches: VecDeque<Batch>,
    /// Emptied buffers, reused so the steady state allocates nothing.
    free: Vec<Vec<u8>>,
    queued_bytes: usize,
    next_seq: u64,
    closed: bool,
    space_waiters: usize,
    /// Records of the batch the writer took last: how many appenders are
    /// known to be coming back while the log is busy (1: idle).
    last_batch_records: usize,
    /// While the writer waits: the number of records in the oldest batch
    /// that makes it worth waking (0: it is not waiting).
    writer_waits_for_records: usize,
}

pub(crate) struct CommitQueue {
    pub config: WalConfig,
    queue: Mutex<Queue>,
    writer_wake: Condvar,
    space_free: Condvar,
    last_seq: AtomicU64,
    durable_seq: AtomicU64,
    durable_lock: Mutex<()>,
    durable_changed: Condvar,
    /// Async waiters by the sequence number they wait for: a batch wakes
    /// only the waiters it made durable, not every waiter.
    durable_wakers: Mutex<BTreeMap<u64, Vec<Waker>>>,
    failure: OnceLock<WalError>,
    pub segments: Mutex<Vec<SegmentMeta>>,
    /// The log's first record, as `LOG_META` says (raised before segments
    /// are deleted, so it is never below a record that is gone).
    start_seq: AtomicU64,
}

impl CommitQueue {
    pub(crate) fn new(
        config: WalConfig,
        last_seq: u64,
        start_seq: u64,
        segments: Vec<SegmentMeta>,
    ) -> Arc<Self> {
        assert!(!segments.is_empty(), "a log always has an active segment");
        let free_buffers_max = config.queue_bytes_max / config.batch_bytes_max + 1;
        Arc::new(CommitQueue {
            config,
            queue: Mutex::new(Queue {
                batches: VecDeque::with_capacity(free_buffers_max),
                free: Vec::with_capacity(free_buffers_max),
                queued_bytes: 0,
                next_seq: last_seq + 1,
                closed: false,
                space_waiters: 0,
                last_batch_records: 1,
                writer_waits_for_records: 0,
            }),
            writer_wake: Condvar::new(),
            space_free: Condvar::new(),
            last_seq: AtomicU64::new(last_seq),
            durable_seq: AtomicU64::new(last_seq),
            durable_lock: Mutex::new(()),
            durable_changed: Condvar::new(),
            durable_wakers: Mutex::new(BTreeMap::new()),
            failure: OnceLock::new(),
            segments: Mutex::new(segments),
            start_seq: AtomicU64::new(start_seq),
        })
    }

    /// The log's start: its first record, as `LOG_META` says.
    pub(crate) fn start_seq(&self) -> u64 {
        self.start_seq.load(Ordering::Acquire)
    }

    /// Records the start just made durable in `LOG_META`.
    pub(crate) fn raise_start_seq(&self, start_seq: u64) {
        self.start_seq.fetch_max(start_seq, Ordering::AcqRel);
    }

    /// The first record readers may be handed: the start, or the oldest
    /// segment's first record if that is later.
    pub(crate) fn first_retained_seq(&self) -> u64 {
        let oldest = self
            .segments
            .lock()
            .first()
            .map_or(1, |segment| segment.first_seq);
        oldest.max(self.start_seq())
    }

    pub(crate) fn durable_seq(&self) -> u64 {
        self.durable_seq.load(Ordering::Acquire)
    }

    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq.load(Ordering::Acquire)
    }

    pub(crate) fn failure(&self) -> Option<&WalError> {
        self.failure.get()
    }

    /// Frames `payload` into the queue under the next sequence number.
    /// Waits while the queue is full; never does I/O.
    pub(crate) fn append(&self, payload: &[u8]) -> Result<u64, WalError> {
        let max_bytes = self.config.record_size_max_bytes;
        if payload.len() > max_bytes as usize {
            return Err(WalError::RecordTooLarge {
                len_bytes: payload.len(),
                max_bytes,
            });
        }
        let framed_bytes = RECORD_HEADER_SIZE + payload.len();
        let mut guard = self.queue.lock();
        // Bounded by the writer: it frees space or fails, and both wake us.
        loop {
            if let Some(failure) = self.failure.get() {
                return Err(failure.clone());
            }
            if guard.closed {
                return Err(WalError::Closed);
            }
            let fits = guard.queued_bytes + framed_bytes <= self.config.queue_bytes_max;
            if fits || guard.queued_bytes == 0 {
                break;
            }
            guard.space_waiters += 1;
            self.space_free.wait(&mut guard);
            guard.space_waiters -= 1;
        }
        let queue = &mut *guard;
        let seq = queue.next_seq;
        let fits_last = queue
            .batches
            .back()
            .is_some_and(|batch| batch.bytes.len() + framed_bytes <= self.config.batch_bytes_max);
        if !fits_last {
            let bytes = queue.free.pop().unwrap_or_default();
            queue.batches.push_back(Batch {
                bytes,
                first_seq: seq,
                last_seq: seq,
                records: 0,
            });
        }
        let batch = queue.batches.back_mut().expect("a batch was just ensured");
        assert!(
            batch.records == 0 || batch.last_seq + 1 == seq,
            "record {seq} must follow the last record {} of its batch",
            batch.last_seq
        );
        encode_record(seq, payload, &mut batch.bytes);
        batch.last_seq = seq;
        batch.records += 1;
        queue.queued_bytes += framed_bytes;
        queue.next_seq = seq + 1;
        self.last_seq.store(seq, Ordering::Release);
        // Wake the writer only when the oldest batch is what it waits for:
        // while it holds a batch for more appenders, each append need not
        // cost it a wake-up.
        let wanted = queue.writer_waits_for_records;
        let wake = wanted > 0
            && (queue.batches.len() > 1
                || queue.batches.front().is_some_and(|b| b.records >= wanted));
        drop(guard);
        if wake {
            self.writer_wake.notify_one();
        }
        Ok(seq)
    }

    /// The writer takes the oldest batch; `None` once closed and drained,
    /// or failed.
    ///
    /// Commit delay: while the log is busy, the writer holds the oldest
    /// batch until the appenders known to be on their way joined it (the
    /// records it held when the last batch was acknowledged, plus one per
    /// record of that batch, whose appenders were just woken), the batch is
    /// full, or `commit_delay_max` has passed. An idle log (the writer
    /// waited longer than `commit_delay_max` for an append), or one
    /// appender at a time, never waits. Only the moment of the write moves:
    /// every record is still acknowledged only after its batch's sync.
    pub(crate) fn next_batch(&self) -> Option<Batch> {
        let delay_max = self.config.commit_delay_max;
        let mut queue = self.queue.lock();
        let mut hold_until: Option<Instant> = None;
        let mut target =
            queue.batches.front().map_or(0, |batch| batch.records) + queue.last_batch_records;
        // Bounded: each wake either returns, re-checks after a notify, or
        // reaches the hold deadline.
        loop {
            if self.failure.get().is_some() {
                return None;
            }
            if let Some(front) = queue.batches.front() {
                let ready = front.records >= target || queue.batches.len() > 1 || queue.closed;
                if !ready && !delay_max.is_zero() {
                    let deadline = *hold_until.get_or_insert_with(|| Instant::now() + delay_max);
                    if Instant::now() < deadline {
                        queue.writer_waits_for_records = target;
                        self.writer_wake.wait_until(&mut queue, deadline);
                        queue.writer_waits_for_records = 0;
                        continue;
                    }
                }
                let Some(batch) = queue.batches.pop_front() else {
                    unreachable!("the front batch was just seen")
                };
                queue.queued_bytes -= batch.bytes.len();
                queue.last_batch_records = batch.records;
                if queue.space_waiters > 0 {
                    self.space_free.notify_all();
                }
                return Some(batch);
            }
            if queue.closed {
                return None;
            }
            let idle_since = Instant::now();
            queue.writer_waits_for_records = 1;
            self.writer_wake.wait(&mut queue);
            queue.writer_waits_for_records = 0;
            if idle_since.elapsed() > delay_max {
                // Idle for longer than a delay: nobody is known to be coming.
                target = 1;
            }
        }
    }

    /// Gives an emptied batch buffer back for reuse.
    pub(crate) fn recycle(&self, mut bytes: Vec<u8>) {
        bytes.clear();
        let mut queue = self.queue.lock();
        if queue.free.len() < queue.free.capacity() {
            queue.free.push(bytes);
        }
    }

    /// Publishes that every record up to `seq` is durable and wakes waiters.
    pub(crate) fn publish_durable(&self, seq: u64) {
        let previous = self.durable_seq.swap(seq, Ordering::AcqRel);
        assert!(seq > previous, "durable_seq must grow: {previous} -> {seq}");
        assert!(self.failure.get().is_none(), "no progress after a failure");
        {
            let _guard = self.durable_lock.lock();
            self.durable_changed.notify_all();
        }
        self.wake_async_waiters(Some(seq));
    }

    /// Enters the failed state (once) and wakes everybody who waits.
    pub(crate) fn fail(&self, reason: String) -> bool {
        let first = self
            .failure
            .set(WalError::Failed {
                reason: reason.as_str().into(),
            })
            .is_ok();
        // The observer hears of the failure before any waiter does, so that
        // whoever sees an error also finds it reported (metrics, logs).
        if first {
            if let Some(observer) = &self.config.observer {
                observer.on_failed(&reason);
            }
        }
        {
            let mut queue = self.queue.lock();
            // Queued records will never be written: drop them.
            queue.batches.clear();
            queue.queued_bytes = 0;
            self.space_free.notify_all();
        }
        {
            let _guard = self.durable_lock.lock();
            self.durable_changed.notify_all();
        }
        self.wake_async_waiters(None);
        first
    }

    /// Stops accepting appends; the writer drains the queue, then exits.
    pub(crate) fn close(&self) {
        let mut queue = self.queue.lock();
        queue.closed = true;
        self.space_free.notify_all();
        self.writer_wake.notify_one();
    }

    fn check_assigned(&self, seq: u64) -> Result<(), WalError> {
        let last_seq = self.last_seq();
        if seq > last_seq {
            return Err(WalError::NotAssigned { seq, last_seq });
        }
        Ok(())
    }

    /// Blocks until `seq` is durable or the log failed.
    pub(crate) fn wait_durable(&self, seq: u64) -> Result<(), WalError> {
        if seq <= self.durable_seq() {
            return Ok(());
        }
        self.check_assigned(seq)?;
        let mut guard = self.durable_lock.lock();
        // Bounded by the writer: every batch or a failure notifies.
        loop {
            if seq <= self.durable_seq() {
                return Ok(());
            }
            if let Some(failure) = self.failure.get() {
                return Err(failure.clone());
            }
            self.durable_changed.wait(&mut guard);
        }
    }

    /// Waits without blocking a thread; works on any executor.
    pub(crate) async fn wait_durable_async(&self, seq: u64) -> Result<(), WalError> {
        if seq <= self.durable_seq() {
            return Ok(());
        }
        self.check_assigned(seq)?;
        DurableWait { shared: self, seq }.await
    }

    /// `wait_durable_async` for a reader at the log's end: `seq` need not be
    /// appended yet (the wait ends once it is appended and durable).
    pub(crate) async fn wait_end_durable_async(&self, seq: u64) -> Result<(), WalError> {
        DurableWait { shared: self, seq }.await
    }

    /// `Some` once waiting for `seq` is over: it is durable, or the log failed.
    fn durable_outcome(&self, seq: u64) -> Option<Result<(), WalError>> {
        if seq <= self.durable_seq() {
            return Some(Ok(()));
        }
        self.failure.get().map(|failure| Err(failure.clone()))
    }

    /// Wakes the async waiters of every record up to `durable` (all of them
    /// when `None`: the log failed). Called after `durable_seq` or the
    /// failure was published, so a waiter that registers later sees it.
    fn wake_async_waiters(&self, durable: Option<u64>) {
        let woken = {
            let mut wakers = self.durable_wakers.lock();
            match durable {
                Some(seq) => {
                    let later = wakers.split_off(&(seq + 1));
                    std::mem::replace(&mut *wakers, later)
                }
                None => std::mem::take(&mut *wakers),
            }
        };
        woken.into_values().flatten().for_each(Waker::wake);
    }
}

/// The future of [`CommitQueue::wait_durable_async`].
struct DurableWait<'a> {
    shared: &'a CommitQueue,
    seq: u64,
}

impl Future for DurableWait<'_> {
    type Output = Result<(), WalError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(outcome) = self.shared.durable_outcome(self.seq) {
            return Poll::Ready(outcome);
        }
        let mut wakers = self.shared.durable_wakers.lock();
        // Checked again under the lock: the writer publishes before it takes
        // this lock to wake, so either we see its news or it sees our waker.
        if let Some(outcome) = self.shared.durable_outcome(self.seq) {
            return Poll::Ready(outcome);
        }
        let waiting = wakers.entry(self.seq).or_default();
        if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
            waiting.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
