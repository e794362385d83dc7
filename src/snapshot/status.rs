//! What the server knows of its snapshots, for `/health` and `/metrics`:
//! the newest one (its seq, file name, when it was written), the last
//! failure's kind, and the gauges the snapshot thread keeps current.
//!
//! `/health` shows only fixed kinds of failure, never paths or system
//! text (those are in the server log).

use std::time::Duration;

use parking_lot::Mutex;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};
use serde::Serialize;

/// Seconds a snapshot may take, from 10 ms to 5 min.
const DURATION_BUCKETS_SECONDS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 300.0,
];

/// The snapshot metrics, full names with the `flashsale_` prefix.
#[derive(Debug, Clone)]
pub struct SnapshotMetrics {
    pub snapshot_disk_bytes: IntGauge,
    pub snapshot_seq: IntGauge,
    pub snapshot_age_seconds: IntGauge,
    pub records_since_snapshot: IntGauge,
    pub snapshots_written_total: IntCounter,
    pub snapshot_failures_total: IntCounter,
    pub snapshot_duration_seconds: Histogram,
}

impl SnapshotMetrics {
    /// The metrics, registered in `registry`.
    pub fn register(registry: &Registry) -> Result<SnapshotMetrics, prometheus::Error> {
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let gauge = IntGauge::new(name, help)?;
            registry.register(Box::new(gauge.clone()))?;
            Ok(gauge)
        };
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let counter = IntCounter::new(name, help)?;
            registry.register(Box::new(counter.clone()))?;
            Ok(counter)
        };
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "flashsale_snapshot_duration_seconds",
                "Time to build and write one snapshot",
            )
            .buckets(DURATION_BUCKETS_SECONDS.to_vec()),
        )?;
        registry.register(Box::new(duration.clone()))?;
        Ok(SnapshotMetrics {
            snapshot_disk_bytes: gauge(
                "flashsale_snapshot_disk_bytes",
                "Bytes of the snapshot files kept",
            )?,
            snapshot_seq: gauge(
                "flashsale_snapshot_seq",
                "Last record the newest snapshot covers (0: none)",
            )?,
            snapshot_age_seconds: gauge(
                "flashsale_snapshot_age_seconds",
                "Seconds since the newest snapshot was written (0: none)",
            )?,
            records_since_snapshot: gauge(
                "flashsale_records_since_snapshot",
                "Durable records after the newest snapshot",
            )?,
            snapshots_written_total: counter(
                "flashsale_snapshots_written_total",
                "Snapshots written",
            )?,
            snapshot_failures_total: counter(
                "flashsale_snapshot_failures_total",
                "Snapshots that failed to build or write",
            )?,
            snapshot_duration_seconds: duration,
        })
    }

    pub fn observe_duration(&self, elapsed: Duration) {
        self.snapshot_duration_seconds
            .observe(elapsed.as_secs_f64());
    }
}

/// The newest snapshot on disk, as `/health` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SnapshotHealth {
    /// Last record the newest snapshot covers (0: none yet).
    pub seq: u64,
    pub file: Option<String>,
    pub age_seconds: Option<u64>,
    /// The kind of the last failure, until a snapshot is written again.
    pub last_error: Option<&'static str>,
}

#[derive(Debug, Default)]
struct Newest {
    seq: u64,
    file: Option<String>,
    written_unix_ms: Option<i64>,
    last_error: Option<&'static str>,
}

/// Shared between the snapshot thread (writes) and `/health` (reads).
#[derive(Debug, Default)]
pub struct SnapshotStatus {
    newest: Mutex<Newest>,
}

impl SnapshotStatus {
    /// Last record the newest snapshot covers (0: none).
    pub fn seq(&self) -> u64 {
        self.newest.lock().seq
    }

    pub fn written_unix_ms(&self) -> Option<i64> {
        self.newest.lock().written_unix_ms
    }

    /// A snapshot covering up to `seq` is on disk as `file`.
    pub fn set_newest(&self, seq: u64, file: String, written_unix_ms: i64) {
        let mut newest = self.newest.lock();
        *newest = Newest {
            seq,
            file: Some(file),
            written_unix_ms: Some(written_unix_ms),
            last_error: None,
        };
    }

    pub fn set_failure(&self, kind: &'static str) {
        self.newest.lock().last_error = Some(kind);
    }

    /// The report at `now_unix_ms`.
    pub fn health(&self, now_unix_ms: i64) -> SnapshotHealth {
        let newest = self.newest.lock();
        SnapshotHealth {
            seq: newest.seq,
            file: newest.file.clone(),
            age_seconds: newest
                .written_unix_ms
                .map(|written| (now_unix_ms.saturating_sub(written).max(0) / 1000) as u64),
            last_error: newest.last_error,
        }
    }
}
