//! The fixed-rate open-loop mode. Closed-loop latency lies: when the server
//! stalls, a closed-loop client stops sending, so the requests that *would*
//! have waited are never measured (coordinated omission). Here a pacer fixes
//! every request's intended send time in advance, and latency is measured from
//! that intended time, so a stall shows up in every request it delayed.
//!
//! The pacer is a plain OS thread: tokio's timer has a 1 ms granularity, which
//! would add up to 1 ms of false latency to every request at the rates we
//! care about; `std::thread::sleep` wakes within tens of microseconds.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// Requests a connection may have waiting for it before the pacer counts
/// further ones as missed instead of queueing them without limit.
pub const QUEUED_PER_CONNECTION_MAX: usize = 4096;
/// Longest the pacer sleeps at once, so that it notices a stop quickly.
const PACER_SLEEP_MAX: Duration = Duration::from_millis(50);

/// `count` requests evenly spaced from `start` at a fixed rate.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub start: Instant,
    interval_ns: u128,
    pub count: u64,
}

impl Schedule {
    /// A schedule of `rate_per_second` for `duration`. The rate must be positive.
    pub fn new(start: Instant, rate_per_second: f64, duration: Duration) -> Self {
        assert!(rate_per_second > 0.0, "rate must be positive");
        let interval_ns = (1e9 / rate_per_second).round().max(1.0) as u128;
        let count = (duration.as_nanos() / interval_ns) as u64;
        Self {
            start,
            interval_ns,
            count,
        }
    }

    /// When request `index` should be sent. Computed from the start (not by
    /// adding intervals) so that rounding never accumulates into drift.
    pub fn intended_send_time(&self, index: u64) -> Instant {
        let offset_ns = self.interval_ns * u128::from(index);
        let offset = Duration::new(
            (offset_ns / 1_000_000_000) as u64,
            (offset_ns % 1_000_000_000) as u32,
        );
        self.start + offset
    }

    /// How many requests are due at `now`.
    pub fn due_count(&self, now: Instant) -> u64 {
        let elapsed_ns = now.saturating_duration_since(self.start).as_nanos();
        let due = elapsed_ns / self.interval_ns + 1;
        u64::try_from(due).unwrap_or(u64::MAX).min(self.count)
    }
}

/// Runs the pacer on the calling thread until the schedule is done or `stop`
/// is set: request `i` goes, as its intended send time, to connection
/// `i % connections`. Returns how many requests were missed because their
/// connection's queue was full (the server, or the generator, fell behind).
pub fn run_pacer(
    schedule: Schedule,
    senders: Vec<mpsc::Sender<Instant>>,
    stop: Arc<AtomicBool>,
    missed: Arc<AtomicU64>,
) {
    let mut next_index = 0;
    while next_index < schedule.count && !stop.load(Ordering::Relaxed) && !senders.is_empty() {
        let now = Instant::now();
        let due = schedule.due_count(now);
        for index in next_index..due {
            let sender = &senders[(index % senders.len() as u64) as usize];
            if sender.try_send(schedule.intended_send_time(index)).is_err() {
                missed.fetch_add(1, Ordering::Relaxed);
            }
        }
        next_index = next_index.max(due);
        if next_index < schedule.count {
            let wait = schedule
                .intended_send_time(next_index)
                .saturating_duration_since(Instant::now());
            std::thread::sleep(wait.min(PACER_SLEEP_MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_spaces_requests_evenly_without_drift() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 3000.0, Duration::from_secs(2));
        assert_eq!(schedule.count, 6000);
        // 1/3000 s = 333,333.33 ns, rounded to 333,333: the last request is
        // at most `index` ns early, never a whole interval.
        let last = schedule.intended_send_time(5999) - start;
        assert_eq!(last, Duration::from_nanos(5999 * 333_333));
        assert_eq!(schedule.intended_send_time(0), start);
    }

    #[test]
    fn due_count_follows_the_clock_and_stops_at_count() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 1000.0, Duration::from_secs(1));
        assert_eq!(schedule.due_count(start), 1, "request 0 is due at once");
        assert_eq!(schedule.due_count(start + Duration::from_micros(999)), 1);
        assert_eq!(schedule.due_count(start + Duration::from_millis(1)), 2);
        assert_eq!(schedule.due_count(start + Duration::from_millis(10)), 11);
        assert_eq!(schedule.due_count(start + Duration::from_secs(5)), 1000);
    }

    #[test]
    fn pacer_hands_out_every_request_round_robin_with_its_intended_time() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 10_000.0, Duration::from_millis(20));
        let (first_sender, mut first) = mpsc::channel(QUEUED_PER_CONNECTION_MAX);
        let (second_sender, mut second) = mpsc::channel(QUEUED_PER_CONNECTION_MAX);
        let missed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        run_pacer(
            schedule,
            vec![first_sender, second_sender],
            stop,
            Arc::clone(&missed),
        );
        assert!(Instant::now() >= schedule.intended_send_time(schedule.count - 1));
        assert_eq!(missed.load(Ordering::Relaxed), 0);
        let mut index = 0;
        while let Ok(intended) = first.try_recv() {
            assert_eq!(intended, schedule.intended_send_time(index));
            index += 2;
        }
        assert_eq!(index, schedule.count);
        let mut received = 0;
        while second.try_recv().is_ok() {
            received += 1;
        }
        assert_eq!(received, schedule.count / 2);
    }
}
