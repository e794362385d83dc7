//! Prometheus metrics of the service: requests, outcomes, the log.
//!
//! Labels only take values from small fixed sets (route patterns, status
//! codes, outcome codes), so no client input can grow the number of series.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
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
    pub write_requests_in_flight: IntGauge,
    pub wal: Arc<WalMetrics>,
}

/// The log's metrics; the log calls them through `flashsale_wal::WalObserver`.
pub struct WalMetrics {
    pub appends_total: IntCounter,
    pub batch_records: Histogram,
    pub batch_bytes_total: IntCounter,
    pub write_and_sync_latency_seconds: Histogram,
    pub failed: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let latency = |name: &str, help: &str| {
            HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS_SECONDS.to_vec())
        };
        let metrics = Metrics {
            http_requests_total: IntCounterVec::new(
                Opts::new(
                    "http_requests_total",
                    "HTTP requests by route pattern and status",
                ),
                &["route", "status"],
            )?,
            http_request_duration_seconds: HistogramVec::new(
                latency(
                    "http_request_duration_seconds",
                    "HTTP request latency by route",
                ),
                &["route"],
            )?,
            checkout_outcomes_total: IntCounterVec::new(
                Opts::new(
                    "checkout_outcomes_total",
                    "Checkout answers by outcome code",
                ),
                &["outcome"],
            )?,
            purchase_outcomes_total: IntCounterVec::new(
                Opts::new(
                    "purchase_outcomes_total",
                    "Purchase answers by outcome code",
                ),
                &["outcome"],
            )?,
            active_sale_items_sold: IntGauge::new(
                "active_sale_items_sold",
                "Items sold in the active sale",
            )?,
            write_requests_in_flight: IntGauge::new(
                "write_requests_in_flight",
                "Checkouts and purchases waiting for the log",
            )?,
            wal: Arc::new(WalMetrics {
                appends_total: IntCounter::new("wal_appends_total", "Records made durable")?,
                batch_records: Histogram::with_opts(
                    HistogramOpts::new("wal_batch_records", "Records per group commit")
                        .buckets(BATCH_RECORDS_BUCKETS.to_vec()),
                )?,
                batch_bytes_total: IntCounter::new("wal_written_bytes_total", "Bytes written")?,
                write_and_sync_latency_seconds: Histogram::with_opts(latency(
                    "wal_fsync_latency_seconds",
                    "Time of one group commit's write and fdatasync",
                ))?,
                failed: IntGauge::new("wal_failed", "1 when the log refuses writes")?,
            }),
            registry,
        };
        metrics.register_all()?;
        Ok(metrics)
    }

    fn register_all(&self) -> Result<(), prometheus::Error> {
        let r = &self.registry;
        r.register(Box::new(self.http_requests_total.clone()))?;
        r.register(Box::new(self.http_request_duration_seconds.clone()))?;
        r.register(Box::new(self.checkout_outcomes_total.clone()))?;
        r.register(Box::new(self.purchase_outcomes_total.clone()))?;
        r.register(Box::new(self.active_sale_items_sold.clone()))?;
        r.register(Box::new(self.write_requests_in_flight.clone()))?;
        r.register(Box::new(self.wal.appends_total.clone()))?;
        r.register(Box::new(self.wal.batch_records.clone()))?;
        r.register(Box::new(self.wal.batch_bytes_total.clone()))?;
        r.register(Box::new(self.wal.write_and_sync_latency_seconds.clone()))?;
        r.register(Box::new(self.wal.failed.clone()))?;
        Ok(())
    }

    /// The registry in Prometheus' text format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        prometheus::TextEncoder::new().encode_to_string(&self.registry.gather())
    }
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
