//! Open connections: counted, capped below the open-file limit, and made
//! room for. actix stops accepting at its per-worker cap and waits for a
//! connection to close; idle keep-alive or silent connections would then
//! lock new users out for the whole keep-alive time. So from
//! `connections_near_cap` on, the tracker closes the connections that have
//! been silent longest (at least `CONNECTION_IDLE_EVICTION_AGE_MIN`): at
//! each new connection, and every `SWEEP_INTERVAL` while above the mark.
//! actix cannot close a connection from outside; the stream wrapper
//! (`stream.rs`) does it by ending the read side.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::{IntCounter, IntGauge, Registry};

use super::open_files::ConnectionCaps;
use super::stream::ConnectionShared;
use crate::config::CONNECTION_IDLE_EVICTION_AGE_MIN;

/// Idle connections closed per new connection while near the cap.
const EVICTIONS_PER_CONNECTION_MAX: usize = 8;
/// Idle connections closed per sweep while near the cap.
const EVICTIONS_PER_SWEEP_MAX: usize = 256;
/// How often the sweeper checks the count.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

struct ConnectionMetrics {
    open: IntGauge,
    max: IntGauge,
    evicted_total: IntCounter,
    at_cap_total: IntCounter,
    write_stalls_total: IntCounter,
}

impl ConnectionMetrics {
    fn new(registry: &Registry) -> Result<ConnectionMetrics, prometheus::Error> {
        let metrics = ConnectionMetrics {
            open: IntGauge::new("flashsale_http_connections_open", "Open HTTP connections")?,
            max: IntGauge::new(
                "flashsale_http_connections_max",
                "Connection cap, derived from the open-file limit",
            )?,
            evicted_total: IntCounter::new(
                "flashsale_http_connections_evicted_total",
                "Idle connections closed to make room near the cap",
            )?,
            at_cap_total: IntCounter::new(
                "flashsale_http_connections_at_cap_total",
                "Connections accepted at the cap (new ones wait until one closes)",
            )?,
            write_stalls_total: IntCounter::new(
                "flashsale_http_response_write_stalls_total",
                "Connections closed because the client stopped reading",
            )?,
        };
        registry.register(Box::new(metrics.open.clone()))?;
        registry.register(Box::new(metrics.max.clone()))?;
        registry.register(Box::new(metrics.evicted_total.clone()))?;
        registry.register(Box::new(metrics.at_cap_total.clone()))?;
        registry.register(Box::new(metrics.write_stalls_total.clone()))?;
        Ok(metrics)
    }
}

pub struct Tracker {
    caps: ConnectionCaps,
    epoch: Instant,
    next_id: AtomicU64,
    open: AtomicUsize,
    live: Mutex<HashMap<u64, Arc<ConnectionShared>>>,
    metrics: ConnectionMetrics,
}

impl Tracker {
    pub fn new(
        caps: ConnectionCaps,
        registry: &Registry,
    ) -> Result<Arc<Tracker>, prometheus::Error> {
        let metrics = ConnectionMetrics::new(registry)?;
        metrics.max.set(caps.connections_max as i64);
        Ok(Arc::new(Tracker {
            caps,
            epoch: Instant::now(),
            next_id: AtomicU64::new(1),
            open: AtomicUsize::new(0),
            live: Mutex::new(HashMap::new()),
            metrics,
        }))
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A new connection: counted, and room made if near the cap.
    pub(super) fn opened(&self) -> (u64, Arc<ConnectionShared>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(ConnectionShared::default());
        shared
            .last_active_ms
            .store(self.now_ms(), Ordering::Relaxed);
        self.live.lock().insert(id, shared.clone());
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.metrics.open.set(open as i64);
        if open >= self.caps.connections_max {
            self.metrics.at_cap_total.inc();
        }
        if open >= self.caps.connections_near_cap {
            self.evict_idle(EVICTIONS_PER_CONNECTION_MAX);
        }
        (id, shared)
    }

    pub(super) fn closed(&self, id: u64) {
        self.live.lock().remove(&id);
        let open = self.open.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        self.metrics.open.set(open as i64);
    }

    pub(super) fn write_stalled(&self) {
        self.metrics.write_stalls_total.inc();
    }

    /// Closes up to `count` connections silent for at least the minimum
    /// age, the longest silent first. Returns how many were marked.
    fn evict_idle(&self, count: usize) -> usize {
        let now = self.now_ms();
        let age_min = CONNECTION_IDLE_EVICTION_AGE_MIN.as_millis() as u64;
        let mut candidates: Vec<(u64, Arc<ConnectionShared>)> = self
            .live
            .lock()
            .values()
            .filter(|c| !c.evict.load(Ordering::Relaxed))
            .map(|c| (c.last_active_ms.load(Ordering::Relaxed), c.clone()))
            .filter(|(last, _)| now.saturating_sub(*last) >= age_min)
            .collect();
        if candidates.len() > count {
            candidates.select_nth_unstable_by_key(count, |(last, _)| *last);
            candidates.truncate(count);
        }
        for (_, connection) in &candidates {
            connection.evict.store(true, Ordering::Release);
            connection.read_waker.wake();
        }
        self.metrics.evicted_total.inc_by(candidates.len() as u64);
        candidates.len()
    }

    /// `/health`'s view: the count, the cap, and whether the server is
    /// making room (`near_cap`) or new connections wait (`at_cap`).
    pub fn health(&self) -> serde_json::Value {
        let open = self.open.load(Ordering::Relaxed);
        let state = if open >= self.caps.connections_max {
            "at_cap"
        } else if open >= self.caps.connections_near_cap {
            "near_cap"
        } else {
            "ok"
        };
        serde_json::json!({
            "state": state,
            "open": open,
            "max": self.caps.connections_max,
            "open_files_max": self.caps.open_files_max,
            "evicted_total": self.metrics.evicted_total.get(),
        })
    }
}

/// Runs until the tracker is dropped: while near the cap, closes idle
/// connections even when no new connection arrives (actix accepts none at
/// the cap, so `opened` alone could wait forever).
pub fn spawn_sweeper(tracker: &Arc<Tracker>) {
    let weak: Weak<Tracker> = Arc::downgrade(tracker);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(tracker) = weak.upgrade() else {
                return;
            };
            let open = tracker.open.load(Ordering::Relaxed);
            if open >= tracker.caps.connections_near_cap {
                let excess = open + 1 - tracker.caps.connections_near_cap;
                let marked = tracker.evict_idle(excess.clamp(1, EVICTIONS_PER_SWEEP_MAX));
                tracing::debug!(
                    open,
                    marked,
                    "near the connection cap: closing idle connections"
                );
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::open_files::connection_caps;

    fn tracker(open_files: u64) -> Arc<Tracker> {
        Tracker::new(connection_caps(open_files, 1), &Registry::new()).unwrap()
    }

    #[test]
    fn closed_connections_leave_the_count() {
        let tracker = tracker(300);
        let (a, _) = tracker.opened();
        let (_b, _) = tracker.opened();
        tracker.closed(a);
        assert_eq!(tracker.health()["open"], 1);
    }

    #[test]
    fn near_the_cap_the_longest_silent_connection_is_evicted_not_a_fresh_one() {
        // 300 files - 256 reserve = 44 connections; near cap at 39.
        let tracker = tracker(300);
        let (_, oldest) = tracker.opened();
        oldest.last_active_ms.store(0, Ordering::Relaxed);
        let mut fresh = Vec::new();
        for _ in 0..10 {
            let (_, shared) = tracker.opened();
            shared.last_active_ms.store(u64::MAX / 2, Ordering::Relaxed);
            fresh.push(shared);
        }
        // `now` must be past the minimum age for the oldest one.
        std::thread::sleep(CONNECTION_IDLE_EVICTION_AGE_MIN);
        assert_eq!(tracker.evict_idle(1), 1);
        assert!(oldest.evict.load(Ordering::Relaxed));
        assert!(fresh.iter().all(|c| !c.evict.load(Ordering::Relaxed)));
    }
}
