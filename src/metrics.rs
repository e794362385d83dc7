//! Prometheus metrics of the service: requests, outcomes, the log, the
//! build and the process.
//!
//! Every name of our own carries the `flashsale_` prefix written in full
//! (not a registry prefix), so that a grep for a dashboard's metric finds
//! its definition, and so that the standard `process_*` metrics registered
//! on the same registry keep their names.
//!
//! Labels only take values from small fixed sets (route patterns, status
//! codes, outcome codes), so no client input can grow the number of series.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Latency buckets in seconds, from 50 µs to 5 s.
const LATENCY_BUCKETS_SECONDS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128,
    0.256, 0.512, 1.0, 5.0,
];
/// Records per group-commit batch.
const BATCH_RECORDS_BUCKETS: [f64; 12] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

pub struct Metrics {
    pub registry: Registry,
    pub http_requests_total: IntCounterVec,
    pub http_request_duration_seconds: HistogramVec,
    pub checkout_outcomes_total: IntCounterVec,
    pub purchase_outcomes_total: IntCounterVec,
    pub active_sale_items_sold: IntGauge,
    pub active_sale_items_total: IntGauge,
    pub write_requests_in_flight: IntGauge,
    pub wal: Arc<WalMetrics>,
    /// 1 when the log runs with `--unsafe-no-fsync`.
    pub unsafe_no_fsync: IntGauge,
    /// Bytes of the files in `DATA_DIR/wal/`, measured at every scrape.
    pub log_disk_bytes: IntGauge,
    /// Keys a rate limiter holds (`limiter` = `user` or `client`), set at
    /// each scrape: shows a flood of distinct keys nearing the cap.
    pub limiter_keys: IntGaugeVec,
    /// The log's directory, once the server knows it.
    wal_dir: OnceLock<PathBuf>,
}

/// The log's metrics; the log calls them through `flashsale_wal::WalObserver`.
pub struct WalMetrics {
    pub appends_total: IntCounter,
    pub batch_records: Histogram,
    pub batch_bytes_total: IntCounter,
    pub write_and_sync_latency_seconds: Histogram,
    pub failed: IntGauge,
}

/// A latency histogram's options, with the shared buckets.
fn latency_opts(name: &str, help: &str) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS_SECONDS.to_vec())
}

impl WalMetrics {
    fn new() -> Result<WalMetrics, prometheus::Error> {
        Ok(WalMetrics {
            appends_total: IntCounter::new("flashsale_wal_appends_total", "Records made durable")?,
            batch_records: Histogram::with_opts(
                HistogramOpts::new("flashsale_wal_batch_records", "Records per group commit")
                    .buckets(BATCH_RECORDS_BUCKETS.to_vec()),
            )?,
            batch_bytes_total: IntCounter::new(
                "flashsale_wal_written_bytes_total",
                "Bytes written",
            )?,
            write_and_sync_latency_seconds: Histogram::with_opts(latency_opts(
                "flashsale_wal_fsync_latency_seconds",
                "Time of one group commit's write and fdatasync",
            ))?,
            failed: IntGauge::new("flashsale_wal_failed", "1 when the log refuses writes")?,
        })
    }
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let metrics = Metrics {
            http_requests_total: IntCounterVec::new(
                Opts::new(
                    "flashsale_http_requests_total",
                    "HTTP requests by route pattern and status",
                ),
                &["route", "status"],
            )?,
            http_request_duration_seconds: HistogramVec::new(
                latency_opts(
                    "flashsale_http_request_duration_seconds",
                    "HTTP request latency by route",
                ),
                &["route"],
            )?,
            checkout_outcomes_total: IntCounterVec::new(
                Opts::new(
                    "flashsale_checkout_outcomes_total",
                    "Checkout answers by outcome code",
                ),
                &["outcome"],
            )?,
            purchase_outcomes_total: IntCounterVec::new(
                Opts::new(
                    "flashsale_purchase_outcomes_total",
                    "Purchase answers by outcome code",
                ),
                &["outcome"],
            )?,
            active_sale_items_sold: IntGauge::new(
                "flashsale_active_sale_items_sold",
                "Items sold in the active sale",
            )?,
            active_sale_items_total: IntGauge::new(
                "flashsale_active_sale_items_total",
                "Items of the active sale, sold or not",
            )?,
            write_requests_in_flight: IntGauge::new(
                "flashsale_write_requests_in_flight",
                "Checkouts and purchases waiting for the log",
            )?,
            wal: Arc::new(WalMetrics::new()?),
            unsafe_no_fsync: IntGauge::new(
                "flashsale_unsafe_no_fsync",
                "1 when the log never fsyncs (--unsafe-no-fsync): acknowledged writes can be lost",
            )?,
            log_disk_bytes: IntGauge::new(
                "flashsale_log_disk_bytes",
                "Bytes of the log's segment files in DATA_DIR/wal/",
            )?,
            limiter_keys: IntGaugeVec::new(
                Opts::new(
                    "flashsale_limiter_keys",
                    "Keys held by a rate limiter (at most 400000 each)",
                ),
                &["limiter"],
            )?,
            wal_dir: OnceLock::new(),
            registry,
        };
        metrics.register_all()?;
        metrics.register_build_and_process()?;
        Ok(metrics)
    }

    /// `flashsale_build_info{version} 1` and the standard `process_*`
    /// metrics (CPU, memory, open files) of this process.
    fn register_build_and_process(&self) -> Result<(), prometheus::Error> {
        let build_info = IntGaugeVec::new(
            Opts::new(
                "flashsale_build_info",
                "Always 1; the labels name the running build",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        self.registry.register(Box::new(build_info))?;
        let process = prometheus::process_collector::ProcessCollector::for_self();
        self.registry.register(Box::new(process))
    }

    /// Records how the log syncs, for `flashsale_unsafe_no_fsync`, and
    /// where it lives, for `flashsale_log_disk_bytes`.
    pub fn set_log(&self, wal_dir: &Path, unsafe_no_fsync: bool) {
        self.unsafe_no_fsync.set(i64::from(unsafe_no_fsync));
        // Set once per process; a second call keeps the first directory.
        let _ = self.wal_dir.set(wal_dir.to_path_buf());
    }

    fn register_all(&self) -> Result<(), prometheus::Error> {
        let r = &self.registry;
        r.register(Box::new(self.http_requests_total.clone()))?;
        r.register(Box::new(self.http_request_duration_seconds.clone()))?;
        r.register(Box::new(self.checkout_outcomes_total.clone()))?;
        r.register(Box::new(self.purchase_outcomes_total.clone()))?;
        r.register(Box::new(self.active_sale_items_sold.clone()))?;
        r.register(Box::new(self.active_sale_items_total.clone()))?;
        r.register(Box::new(self.write_requests_in_flight.clone()))?;
        r.register(Box::new(self.wal.appends_total.clone()))?;
        r.register(Box::new(self.wal.batch_records.clone()))?;
        r.register(Box::new(self.wal.batch_bytes_total.clone()))?;
        r.register(Box::new(self.wal.write_and_sync_latency_seconds.clone()))?;
        r.register(Box::new(self.wal.failed.clone()))?;
        r.register(Box::new(self.unsafe_no_fsync.clone()))?;
        r.register(Box::new(self.log_disk_bytes.clone()))?;
        r.register(Box::new(self.limiter_keys.clone()))?;
        Ok(())
    }

    /// The registry in Prometheus' text format; measures the log's size on
    /// disk first, so every scrape sees it fresh.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        if let Some(dir) = self.wal_dir.get() {
            let bytes = dir_file_bytes(dir);
            self.log_disk_bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        prometheus::TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

/// Sum of the sizes of the regular files directly in `dir`. A file removed
/// while we count (a deleted segment) is skipped; an unreadable directory
/// counts 0, which the disk alert cannot mistake for a full disk.
fn dir_file_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.metadata().ok())
        .filter(std::fs::Metadata::is_file)
        .map(|metadata| metadata.len())
        .sum()
}

impl flashsale_wal::WalObserver for WalMetrics {
    fn on_batch(&self, records: usize, bytes: usize, write_and_sync_latency: Duration) {
        self.appends_total.inc_by(records as u64);
        self.batch_records.observe(records as f64);
        self.batch_bytes_total.inc_by(bytes as u64);
        self.write_and_sync_latency_seconds
            .observe(write_and_sync_latency.as_secs_f64());
    }

    fn on_failed(&self, reason: &str) {
        self.failed.set(1);
        tracing::error!(reason, "the log failed; writes are refused until a restart");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_of_ours_is_prefixed_and_process_metrics_keep_their_names() {
        let metrics = Metrics::new().unwrap();
        metrics.wal.failed.set(0);
        let text = metrics.render().unwrap();
        let names: Vec<&str> = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| line.split(['{', ' ']).next())
            .collect();
        assert!(names.contains(&"flashsale_build_info"), "{text}");
        assert!(names.contains(&"process_resident_memory_bytes"), "{text}");
        for name in names {
            assert!(
                name.starts_with("flashsale_") || name.starts_with("process_"),
                "{name} lacks the flashsale_ prefix"
            );
        }
    }

    #[test]
    fn log_disk_bytes_counts_the_files_of_the_log_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![0u8; 1000]).unwrap();
        std::fs::write(dir.path().join("b"), vec![0u8; 24]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let metrics = Metrics::new().unwrap();
        metrics.set_log(dir.path(), true);
        let text = metrics.render().unwrap();
        assert!(text.contains("flashsale_log_disk_bytes 1024"), "{text}");
        assert!(text.contains("flashsale_unsafe_no_fsync 1"), "{text}");
    }
}
