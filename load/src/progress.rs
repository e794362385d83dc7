//! The live progress bar: elapsed time against the planned duration, the
//! current request rate and the failures so far, redrawn twice a second from
//! the shared counters (never from the request path).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;

use crate::stats::LiveCounters;

const REDRAW_INTERVAL: Duration = Duration::from_millis(500);

/// Draws until `done` changes or the planned duration plus a grace is over.
pub async fn show_progress(
    live: Arc<LiveCounters>,
    duration: Duration,
    mut done: watch::Receiver<bool>,
) {
    let bar = ProgressBar::new(duration.as_millis() as u64);
    let style = ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {percent:>3}% {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    let start = Instant::now();
    let mut last_answered = 0;
    let mut last_time = start;
    let redraws_max =
        (duration + Duration::from_secs(30)).as_millis() / REDRAW_INTERVAL.as_millis();
    for _ in 0..redraws_max {
        tokio::select! {
            _ = done.changed() => break,
            () = tokio::time::sleep(REDRAW_INTERVAL) => {}
        }
        let now = Instant::now();
        let answered = live.answered.load(Ordering::Relaxed);
        let seconds = now.duration_since(last_time).as_secs_f64().max(1e-3);
        let rate = (answered - last_answered) as f64 / seconds;
        (last_answered, last_time) = (answered, now);
        bar.set_position(now.duration_since(start).as_millis() as u64);
        bar.set_message(format!(
            "{rate:>9.0} req/s  answered {answered}  4xx {}  failed {}",
            live.rejected.load(Ordering::Relaxed),
            live.failed.load(Ordering::Relaxed),
        ));
    }
    bar.finish_and_clear();
}
