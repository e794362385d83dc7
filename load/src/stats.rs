//! Latency histograms and outcome counters, per endpoint. Each worker owns its
//! own `Stats` (no sharing, no locks on the hot path) and they are merged once
//! at the end; only two relaxed atomic counters are shared, for the progress bar.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest latency the histograms hold exactly; slower answers are clamped
/// here (the request timeout is lower anyway).
const LATENCY_US_MAX: u64 = 60_000_000;
/// Significant decimal digits of the histograms: 0.1% relative error.
const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

/// The endpoints under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Checkout,
    Purchase,
    ListItems,
}

impl Endpoint {
    pub const ALL: [Endpoint; 3] = [Endpoint::Checkout, Endpoint::Purchase, Endpoint::ListItems];

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Checkout => "checkout",
            Endpoint::Purchase => "purchase",
            Endpoint::ListItems => "list_items",
        }
    }
}

/// The SPEC's error codes, and `other` for anything else a server says.
pub const ERROR_CODES: [&str; 16] = [
    "invalid_request",
    "not_found",
    "sale_not_found",
    "item_not_found",
    "checkout_not_found",
    "method_not_allowed",
    "sale_not_active",
    "item_sold_out",
    "sale_sold_out",
    "user_limit_reached",
    "sale_full",
    "payload_too_large",
    "rate_limited",
    "unavailable",
    "undecodable_error_body",
    "other",
];
const ERROR_OTHER: usize = ERROR_CODES.len() - 1;
const ERROR_UNDECODABLE: usize = ERROR_CODES.len() - 2;

/// Index of an error code in `ERROR_CODES`.
pub fn error_code_index(code: Option<&str>) -> usize {
    match code {
        None => ERROR_UNDECODABLE,
        Some(code) => ERROR_CODES[..ERROR_UNDECODABLE]
            .iter()
            .position(|known| *known == code)
            .unwrap_or(ERROR_OTHER),
    }
}

fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, LATENCY_SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Outcomes of one endpoint.
#[derive(Debug, Clone)]
pub struct EndpointStats {
    pub latency_us: Histogram<u64>,
    /// Answers by HTTP status, indexed by status (100..=599; others at 0).
    pub status_counts: Box<[u64; 600]>,
    pub error_counts: [u64; ERROR_CODES.len()],
    /// Requests that got no HTTP answer (connect, timeout, malformed answer).
    pub transport_errors: u64,
}

impl EndpointStats {
    fn new() -> Self {
        Self {
            latency_us: new_latency_histogram(),
            status_counts: Box::new([0; 600]),
            error_counts: [0; ERROR_CODES.len()],
            transport_errors: 0,
        }
    }

    /// Every answered request.
    pub fn answered_count(&self) -> u64 {
        self.status_counts.iter().sum()
    }

    fn merge(&mut self, other: &EndpointStats) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        for (mine, theirs) in self
            .status_counts
            .iter_mut()
            .zip(other.status_counts.iter())
        {
            *mine += theirs;
        }
        for (mine, theirs) in self.error_counts.iter_mut().zip(other.error_counts.iter()) {
            *mine += theirs;
        }
        self.transport_errors += other.transport_errors;
    }
}

/// One worker's (or, merged, the whole run's) outcomes.
#[derive(Debug, Clone)]
pub struct Stats {
    pub endpoints: [EndpointStats; 3],
    /// Open loop only: how late each request left after its intended send
    /// time: the pacer's and the generator's wake-up delays, plus waiting for
    /// the connection's previous answer. It is part of every latency figure;
    /// when it is high while the connections are idle (low rate), the latency
    /// figures measure the generator or a busy machine, not the server.
    pub send_lag_us: Histogram<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            endpoints: [
                EndpointStats::new(),
                EndpointStats::new(),
                EndpointStats::new(),
            ],
            send_lag_us: new_latency_histogram(),
        }
    }
}

impl Stats {
    pub fn endpoint(&self, endpoint: Endpoint) -> &EndpointStats {
        &self.endpoints[endpoint as usize]
    }

    /// Records an HTTP answer. `error_code` is the decoded `error` field of a
    /// non-2xx answer (`None` if it could not be decoded); ignored for 2xx.
    pub fn record_answer(
        &mut self,
        endpoint: Endpoint,
        status: u16,
        latency: Duration,
        error_code: Option<&str>,
    ) {
        let stats = &mut self.endpoints[endpoint as usize];
        stats.latency_us.saturating_record(latency_us(latency));
        let status_index = if (100..600).contains(&status) {
            status as usize
        } else {
            0
        };
        stats.status_counts[status_index] += 1;
        if !(200..300).contains(&status) {
            stats.error_counts[error_code_index(error_code)] += 1;
        }
    }

    /// Records a request that got no answer. Its latency is not recorded: it
    /// is a failure, counted apart, not a fast or slow success.
    pub fn record_transport_error(&mut self, endpoint: Endpoint) {
        self.endpoints[endpoint as usize].transport_errors += 1;
    }

    pub fn record_send_lag(&mut self, lag: Duration) {
        self.send_lag_us.saturating_record(latency_us(lag));
    }

    pub fn merge(&mut self, other: &Stats) {
        for (mine, theirs) in self.endpoints.iter_mut().zip(other.endpoints.iter()) {
            mine.merge(theirs);
        }
        // Same bounds on both sides: adding cannot fail.
        let _ = self.send_lag_us.add(&other.send_lag_us);
    }
}

/// Latency in whole microseconds, at least 1 (the histogram's lowest value).
pub fn latency_us(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, LATENCY_US_MAX)
}

/// The counters the progress bar reads while the run goes on.
#[derive(Debug, Default)]
pub struct LiveCounters {
    pub answered: AtomicU64,
    /// Answers with status 5xx, plus requests without an answer.
    pub failed: AtomicU64,
    /// Answers with status 4xx (mostly sold out and limits: business, not failures).
    pub rejected: AtomicU64,
}

impl LiveCounters {
    pub fn count_answer(&self, status: u16) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.failed.fetch_add(1, Ordering::Relaxed);
        } else if status >= 400 {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn count_transport_error(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut stats = Stats::default();
        // 1..=1000 microseconds, once each: the p-th percentile is p * 10 us.
        for micros in 1..=1000u64 {
            stats.record_answer(Endpoint::Checkout, 200, Duration::from_micros(micros), None);
        }
        let histogram = &stats.endpoint(Endpoint::Checkout).latency_us;
        assert_eq!(histogram.len(), 1000);
        assert_eq!(histogram.value_at_quantile(0.5), 500);
        assert_eq!(histogram.value_at_quantile(0.9), 900);
        assert_eq!(histogram.value_at_quantile(0.99), 990);
        assert_eq!(histogram.value_at_quantile(0.999), 999);
        assert_eq!(histogram.max(), 1000);
    }

    #[test]
    fn merge_adds_counts_and_histograms() {
        let mut first = Stats::default();
        let mut second = Stats::default();
        first.record_answer(Endpoint::Checkout, 200, Duration::from_micros(100), None);
        second.record_answer(
            Endpoint::Checkout,
            409,
            Duration::from_millis(5),
            Some("item_sold_out"),
        );
        second.record_answer(
            Endpoint::Purchase,
            503,
            Duration::ZERO,
            Some("brand_new_code"),
        );
        second.record_transport_error(Endpoint::Purchase);
        first.merge(&second);
        let checkout = first.endpoint(Endpoint::Checkout);
        assert_eq!(checkout.answered_count(), 2);
        assert_eq!(checkout.status_counts[409], 1);
        assert_eq!(
            checkout.error_counts[error_code_index(Some("item_sold_out"))],
            1
        );
        // 3 significant digits: 5000 us is stored as its bucket's highest equivalent value.
        assert!(checkout
            .latency_us
            .equivalent(checkout.latency_us.max(), 5000));
        let purchase = first.endpoint(Endpoint::Purchase);
        assert_eq!(purchase.error_counts[ERROR_OTHER], 1);
        assert_eq!(purchase.transport_errors, 1);
        assert_eq!(
            purchase.latency_us.min(),
            1,
            "zero latency is clamped to 1 us"
        );
    }
}
