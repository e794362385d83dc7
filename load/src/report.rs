//! The end of a run: a table for people and a JSON result file for scripts
//! (`benches/compare.sh` reads the flat top-level keys with grep, so those stay
//! flat and at the top).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::audit::AuditReport;
use crate::stats::{Endpoint, EndpointStats, Stats, ERROR_CODES};

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latencies {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latencies {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            p50: histogram.value_at_quantile(0.5),
            p90: histogram.value_at_quantile(0.9),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        }
    }
}

/// One endpoint's line of the result.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointResult {
    pub answered: u64,
    pub throughput_per_second: f64,
    pub latency_us: Latencies,
    pub status_counts: BTreeMap<String, u64>,
    pub error_counts: BTreeMap<String, u64>,
    pub transport_errors: u64,
}

/// `part` as a percentage of `whole` (0 when `whole` is 0).
fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        100.0 * part / whole
    } else {
        0.0
    }
}

impl EndpointResult {
    /// Answers with a 2xx status, as a percentage of all answers: what
    /// share of the requests did what the client asked.
    pub fn success_percent(&self) -> f64 {
        let success: u64 = self
            .status_counts
            .iter()
            .filter(|(status, _)| status.starts_with('2'))
            .map(|(_, count)| count)
            .sum();
        percent(success as f64, self.answered as f64)
    }

    fn of(stats: &EndpointStats, elapsed_seconds: f64) -> Self {
        let status_counts = (0..stats.status_counts.len())
            .filter(|&status| stats.status_counts[status] > 0)
            .map(|status| (status.to_string(), stats.status_counts[status]))
            .collect();
        let error_counts = ERROR_CODES
            .iter()
            .zip(stats.error_counts.iter())
            .filter(|(_, &count)| count > 0)
            .map(|(code, &count)| (code.to_string(), count))
            .collect();
        Self {
            answered: stats.answered_count(),
            throughput_per_second: stats.answered_count() as f64 / elapsed_seconds,
            latency_us: Latencies::of(&stats.latency_us),
            status_counts,
            error_counts,
            transport_errors: stats.transport_errors,
        }
    }
}

/// The whole result file. The first keys are flat on purpose (see module doc).
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub throughput_per_second: f64,
    pub success_per_second: f64,
    pub latency_us_p50: u64,
    pub latency_us_p90: u64,
    pub latency_us_p99: u64,
    pub latency_us_p999: u64,
    pub latency_us_max: u64,
    pub answered: u64,
    pub transport_errors: u64,
    /// Open loop only: lateness of sends after their intended time (see `Stats::send_lag_us`).
    pub send_lag_us: Option<Latencies>,
    pub audit_status: String,
    pub scenario: String,
    pub mode: String,
    pub rate_per_second: Option<f64>,
    pub checkout_only: bool,
    pub target: String,
    pub target_is_baseline: bool,
    pub connections: u32,
    pub users: u64,
    pub duration_seconds_planned: f64,
    pub elapsed_seconds: f64,
    pub generator_cpu_seconds: Option<f64>,
    pub generator_cpu_percent_of_one_core: Option<f64>,
    pub schedule_missed: u64,
    pub schedule_unsent: u64,
    pub tcp_connects: u64,
    pub sale_id: String,
    pub acknowledged_purchases: u64,
    pub acknowledged_purchased_items: u64,
    pub endpoints: BTreeMap<String, EndpointResult>,
    pub audit: Option<AuditReport>,
}

/// The figures a `RunResult` takes from the merged stats.
pub struct Figures {
    pub send_lag: Option<Latencies>,
    pub endpoints: BTreeMap<String, EndpointResult>,
    pub all: Latencies,
    pub answered: u64,
    pub success: u64,
    pub transport_errors: u64,
}

pub fn figures(stats: &Stats, elapsed_seconds: f64) -> Figures {
    let mut all = Histogram::<u64>::new_from(&stats.endpoint(Endpoint::Checkout).latency_us);
    let mut endpoints = BTreeMap::new();
    let (mut answered, mut success, mut transport_errors) = (0, 0, 0);
    for endpoint in Endpoint::ALL {
        let endpoint_stats = stats.endpoint(endpoint);
        // Same bounds for all endpoints: adding cannot fail.
        let _ = all.add(&endpoint_stats.latency_us);
        answered += endpoint_stats.answered_count();
        success += endpoint_stats.status_counts[200..300].iter().sum::<u64>();
        transport_errors += endpoint_stats.transport_errors;
        if endpoint_stats.answered_count() + endpoint_stats.transport_errors > 0 {
            endpoints.insert(
                endpoint.name().to_string(),
                EndpointResult::of(endpoint_stats, elapsed_seconds),
            );
        }
    }
    let send_lag = (!stats.send_lag_us.is_empty()).then(|| Latencies::of(&stats.send_lag_us));
    Figures {
        send_lag,
        endpoints,
        all: Latencies::of(&all),
        answered,
        success,
        transport_errors,
    }
}

/// The human-readable table: rates and latency percentiles per endpoint, then
/// the status and error-code counts.
pub fn table(result: &RunResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<11} {:>10} {:>10} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "endpoint", "answered", "req/s", "ok %", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    for (name, endpoint) in &result.endpoints {
        let latency = &endpoint.latency_us;
        let _ = writeln!(
            out,
            "{:<11} {:>10} {:>10.0} {:>6.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            name,
            endpoint.answered,
            endpoint.throughput_per_second,
            endpoint.success_percent(),
            milliseconds(latency.p50),
            milliseconds(latency.p90),
            milliseconds(latency.p99),
            milliseconds(latency.p999),
            milliseconds(latency.max),
        );
    }
    let _ = writeln!(
        out,
        "{:<11} {:>10} {:>10.0} {:>6.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
        "all",
        result.answered,
        result.throughput_per_second,
        percent(result.success_per_second, result.throughput_per_second),
        milliseconds(result.latency_us_p50),
        milliseconds(result.latency_us_p90),
        milliseconds(result.latency_us_p99),
        milliseconds(result.latency_us_p999),
        milliseconds(result.latency_us_max),
    );
    if let Some(lag) = &result.send_lag_us {
        let _ = writeln!(
            out,
            "{:<11} {:>10} {:>10} {:>6} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}  (send lag: part of the latencies above)",
            "send lag",
            "",
            "",
            "",
            milliseconds(lag.p50),
            milliseconds(lag.p90),
            milliseconds(lag.p99),
            milliseconds(lag.p999),
            milliseconds(lag.max),
        );
    }
    for (name, endpoint) in &result.endpoints {
        let statuses = joined(&endpoint.status_counts);
        let errors = joined(&endpoint.error_counts);
        let _ = writeln!(
            out,
            "{name}: status {statuses}; errors {}; no answer {}",
            if errors.is_empty() { "none" } else { &errors },
            endpoint.transport_errors
        );
    }
    out
}

fn milliseconds(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn joined(counts: &BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .map(|(key, count)| format!("{key}={count}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// CPU seconds (user + system) this process has used, from `/proc/self/stat`
/// (Linux only; `None` elsewhere). Ticks are taken as 100 per second, the
/// `USER_HZ` of every mainstream Linux build.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user_ticks: u64 = fields.next()?.parse().ok()?;
    let system_ticks: u64 = fields.next()?.parse().ok()?;
    Some((user_ticks + system_ticks) as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            let seconds = process_cpu_seconds().expect("/proc/self/stat");
            assert!(seconds >= 0.0);
        }
    }

    #[test]
    fn the_success_rate_counts_only_2xx_answers() {
        let endpoint = EndpointResult {
            answered: 8,
            throughput_per_second: 8.0,
            latency_us: Latencies::of(&Histogram::<u64>::new(3).expect("histogram")),
            status_counts: [("200", 2), ("204", 1), ("409", 4), ("503", 1)]
                .into_iter()
                .map(|(status, count)| (status.to_string(), count))
                .collect(),
            error_counts: BTreeMap::new(),
            transport_errors: 0,
        };
        assert!((endpoint.success_percent() - 37.5).abs() < 1e-9);
        assert!(percent(1.0, 0.0).abs() < 1e-9);
    }
}
