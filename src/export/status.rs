//! What the exporter tells the rest of the server: a status for `/health`
//! and the segment cleaner, and Prometheus metrics.
//!
//! What it promises: reading the status never waits for the exporter (it is
//! a few atomics and a short-held lock); `last_exported_seq` only grows while
//! a process runs and is never above what PostgreSQL has committed, so
//! deleting log segments at or below it never loses an unexported record.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use serde::Serialize;

/// The exporter's state, as `/health` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportState {
    /// No `--database-url`: nothing is exported.
    Disabled,
    /// Connecting and migrating for the first time.
    Starting,
    /// The last attempt succeeded.
    Running,
    /// The last attempt failed; the exporter is backing off.
    Retrying { last_error: String },
    /// The exporter stopped for good: no retry can cure `reason` (the
    /// database holds another log's export). A restart with the right
    /// database or data directory is needed.
    Refused { reason: String },
}

impl ExportState {
    pub fn name(&self) -> &'static str {
        match self {
            ExportState::Disabled => "disabled",
            ExportState::Starting => "starting",
            ExportState::Running => "running",
            ExportState::Retrying { .. } => "retrying",
            ExportState::Refused { .. } => "refused",
        }
    }
}

/// A shared, cheaply cloned view of the exporter's progress.
#[derive(Debug, Clone)]
pub struct ExportStatus {
    inner: Arc<StatusInner>,
}

#[derive(Debug)]
struct StatusInner {
    state: parking_lot::Mutex<ExportState>,
    last_exported_seq: AtomicU64,
    lag_records: AtomicU64,
    /// 0 until the first success.
    last_success_unix_seconds: AtomicI64,
}

/// A point-in-time copy of the status, as JSON for `/health`:
/// `{"state":"retrying","last_error":"...","last_exported_seq":41,
///   "lag_records":7,"last_success_unix_seconds":1795291200}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportStatusSnapshot {
    pub state: &'static str,
    /// Why the last attempt failed, while `state` is `retrying`; why the
    /// exporter stopped, when it is `refused`.
    pub last_error: Option<String>,
    /// Every record up to this one is committed in PostgreSQL (0: none
    /// known yet; the server must then delete no segment).
    pub last_exported_seq: u64,
    /// Durable records not yet exported, as of the last attempt.
    pub lag_records: u64,
    pub last_success_unix_seconds: Option<i64>,
}

impl ExportStatus {
    pub fn new(state: ExportState) -> ExportStatus {
        ExportStatus {
            inner: Arc::new(StatusInner {
                state: parking_lot::Mutex::new(state),
                last_exported_seq: AtomicU64::new(0),
                lag_records: AtomicU64::new(0),
                last_success_unix_seconds: AtomicI64::new(0),
            }),
        }
    }

    /// The status of a server started without `--database-url`.
    pub fn disabled() -> ExportStatus {
        ExportStatus::new(ExportState::Disabled)
    }

    pub fn state(&self) -> ExportState {
        self.inner.state.lock().clone()
    }

    /// Every record up to this sequence number is committed in PostgreSQL.
    pub fn last_exported_seq(&self) -> u64 {
        self.inner.last_exported_seq.load(Ordering::Acquire)
    }

    pub fn lag_records(&self) -> u64 {
        self.inner.lag_records.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> ExportStatusSnapshot {
        let state = self.state();
        let last_error = match &state {
            ExportState::Retrying { last_error } => Some(last_error.clone()),
            ExportState::Refused { reason } => Some(reason.clone()),
            _ => None,
        };
        let last_success = self.inner.last_success_unix_seconds.load(Ordering::Relaxed);
        ExportStatusSnapshot {
            state: state.name(),
            last_error,
            last_exported_seq: self.last_exported_seq(),
            lag_records: self.lag_records(),
            last_success_unix_seconds: (last_success > 0).then_some(last_success),
        }
    }

    pub(crate) fn set_state(&self, state: ExportState) {
        *self.inner.state.lock() = state;
    }

    /// Records a committed cursor. The value read from PostgreSQL is the
    /// truth; it only moves backwards if someone rewinds the database, and
    /// then the smaller value is the safe one for segment deletion.
    pub(crate) fn set_last_exported_seq(&self, seq: u64) {
        self.inner.last_exported_seq.store(seq, Ordering::Release);
    }

    pub(crate) fn set_lag_records(&self, lag: u64) {
        self.inner.lag_records.store(lag, Ordering::Relaxed);
    }

    pub(crate) fn set_last_success_unix_seconds(&self, seconds: i64) {
        self.inner
            .last_success_unix_seconds
            .store(seconds, Ordering::Relaxed);
    }
}

impl Serialize for ExportStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.snapshot().serialize(serializer)
    }
}

/// The exporter's Prometheus metrics.
#[derive(Debug, Clone)]
pub struct ExportMetrics {
    lag_records: IntGauge,
    last_success_timestamp_seconds: Gauge,
    rows_total: IntCounterVec,
    refusals_total: IntCounter,
    errors_total: IntCounter,
}

impl ExportMetrics {
    pub fn register(registry: &Registry) -> Result<ExportMetrics, prometheus::Error> {
        let metrics = ExportMetrics {
            lag_records: IntGauge::new(
                "flashsale_export_lag_records",
                "Durable log records not yet exported to PostgreSQL",
            )?,
            last_success_timestamp_seconds: Gauge::new(
                "flashsale_export_last_success_timestamp_seconds",
                "Unix time of the last export attempt that caught up without error",
            )?,
            rows_total: IntCounterVec::new(
                Opts::new(
                    "flashsale_export_rows_total",
                    "Rows committed to PostgreSQL",
                ),
                &["table"],
            )?,
            refusals_total: IntCounter::new(
                "flashsale_export_refusals_total",
                "Times the exporter stopped for good: the database holds another log's export",
            )?,
            errors_total: IntCounter::new(
                "flashsale_export_errors_total",
                "Export runs that failed (PostgreSQL unreachable or refusing); each is retried",
            )?,
        };
        registry.register(Box::new(metrics.lag_records.clone()))?;
        registry.register(Box::new(metrics.last_success_timestamp_seconds.clone()))?;
        registry.register(Box::new(metrics.rows_total.clone()))?;
        registry.register(Box::new(metrics.refusals_total.clone()))?;
        registry.register(Box::new(metrics.errors_total.clone()))?;
        Ok(metrics)
    }

    pub(crate) fn set_lag_records(&self, lag: u64) {
        self.lag_records.set(i64::try_from(lag).unwrap_or(i64::MAX));
    }

    pub(crate) fn set_last_success_unix_seconds(&self, seconds: i64) {
        self.last_success_timestamp_seconds.set(seconds as f64);
    }

    pub(crate) fn add_rows(&self, table: &str, rows: u64) {
        self.rows_total.with_label_values(&[table]).inc_by(rows);
    }

    pub(crate) fn count_refusal(&self) {
        self.refusals_total.inc();
    }

    pub(crate) fn count_error(&self) {
        self.errors_total.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_serialises_for_health() {
        let status = ExportStatus::new(ExportState::Starting);
        status.set_state(ExportState::Retrying {
            last_error: "connection refused".into(),
        });
        status.set_last_exported_seq(41);
        status.set_lag_records(7);
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "state": "retrying",
                "last_error": "connection refused",
                "last_exported_seq": 41,
                "lag_records": 7,
                "last_success_unix_seconds": null,
            })
        );
        assert_eq!(ExportStatus::disabled().snapshot().state, "disabled");
        status.set_state(ExportState::Refused {
            reason: "another log".into(),
        });
        let refused = status.snapshot();
        assert_eq!(refused.state, "refused");
        assert_eq!(refused.last_error.as_deref(), Some("another log"));
    }

    #[test]
    fn metrics_register_once_per_registry() {
        let registry = Registry::new();
        let metrics = ExportMetrics::register(&registry).unwrap();
        metrics.add_rows("purchases", 3);
        metrics.set_lag_records(5);
        assert!(ExportMetrics::register(&registry).is_err());
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|family| family.name().to_string())
            .collect();
        assert!(names.contains(&"flashsale_export_rows_total".to_string()));
        assert!(names.contains(&"flashsale_export_lag_records".to_string()));
        assert!(names.contains(&"flashsale_export_refusals_total".to_string()));
    }
}
