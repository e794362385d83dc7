//! The kill -9 run of `e2e_snapshots` as a soak: its settings (`Run`,
//! from `FLASHSALE_SOAK_*`), what the data directory showed after each
//! kill (`Seen`) and what was acknowledged and checked (`Tally`).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::common::ledger::{audit, verify_concurrently, Ledger, LoadShape};
use crate::common::Server;

/// How the kill -9 test loads the server; `from_env` reads the soak's.
pub struct Run {
    pub cycles: u64,
    pub clients: u64,
    pub shape: LoadShape,
    pub load: Duration,
    pub snapshot_interval_records: u64,
    /// `--log-segment-bytes`; `None`: the server's default (64 MiB).
    pub log_segment_bytes: Option<u64>,
    pub seed: u64,
}

/// The short version, as `cargo test` runs it (and the retention test).
pub const SHORT: Run = Run {
    cycles: 3,
    clients: 12,
    shape: LoadShape {
        users: 60,
        items: 300,
    },
    load: Duration::from_millis(900),
    snapshot_interval_records: 150,
    log_segment_bytes: None,
    seed: 0,
};

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
    )
}

impl Run {
    /// `SHORT`, with each `FLASHSALE_SOAK_*` variable that is set instead.
    pub fn from_env() -> Run {
        let or = |name: &str, default: u64| env_u64(name).unwrap_or(default);
        Run {
            cycles: or("FLASHSALE_SOAK_CYCLES", SHORT.cycles),
            clients: or("FLASHSALE_SOAK_CLIENTS", SHORT.clients),
            shape: LoadShape {
                users: or("FLASHSALE_SOAK_USERS", SHORT.shape.users),
                items: or("FLASHSALE_SOAK_ITEMS", SHORT.shape.items),
            },
            load: Duration::from_millis(or(
                "FLASHSALE_SOAK_LOAD_MS",
                SHORT.load.as_millis() as u64,
            )),
            snapshot_interval_records: or(
                "FLASHSALE_SOAK_SNAPSHOT_INTERVAL_RECORDS",
                SHORT.snapshot_interval_records,
            ),
            log_segment_bytes: env_u64("FLASHSALE_SOAK_LOG_SEGMENT_BYTES"),
            seed: or("FLASHSALE_SOAK_SEED", SHORT.seed),
        }
    }

    pub fn server_args(&self, clock_offset_seconds: i64) -> Vec<String> {
        let mut args: Vec<String> = [
            "--clock-offset-seconds",
            &clock_offset_seconds.to_string(),
            "--items-per-sale",
            &self.shape.items.to_string(),
            "--user-writes-per-second",
            "0",
            "--snapshot-interval-records",
            &self.snapshot_interval_records.to_string(),
        ]
        .map(String::from)
        .to_vec();
        if let Some(bytes) = self.log_segment_bytes {
            args.extend(["--log-segment-bytes".to_string(), bytes.to_string()]);
        }
        args
    }
}

/// The file names in `dir` ending in `suffix`, sorted.
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// The value of the Prometheus sample `name` in `metrics` (0 if absent).
pub fn metric(metrics: &str, name: &str) -> u64 {
    let line = metrics
        .lines()
        .find(|line| line.split(' ').next() == Some(name));
    line.and_then(|line| line.split(' ').nth(1))
        .and_then(|value| value.parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

/// What the data directory showed after each kill -9.
#[derive(Default)]
pub struct Seen {
    pub snapshots: BTreeSet<String>,
    /// Temporary snapshot files: a kill that landed while one was written.
    pub partial_snapshots: BTreeSet<String>,
    pub segments: BTreeSet<String>,
    /// The cycles after which a snapshot not seen before was there.
    pub cycles_with_new_snapshot: Vec<u64>,
    pub snapshots_written: u64,
}

impl Seen {
    pub fn note(&mut self, data_dir: &Path, cycle: u64, metrics: &str) {
        self.snapshots_written += metric(metrics, "flashsale_snapshots_written_total");
        let before = self.snapshots.len();
        let snapshots = data_dir.join("snapshots");
        self.snapshots.extend(files_ending(&snapshots, ".snap"));
        self.partial_snapshots
            .extend(files_ending(&snapshots, ".tmp"));
        self.segments
            .extend(files_ending(&data_dir.join("wal"), ".wal"));
        if self.snapshots.len() > before {
            self.cycles_with_new_snapshot.push(cycle);
        }
    }

    /// Snapshots were written all along: a new one after at least one kill
    /// in every tenth of the run (windows of 10 cycles at least; for fewer
    /// than 10 cycles, at least one snapshot).
    pub fn assert_snapshots_across(&self, cycles: u64) {
        let windows = (cycles / 10).clamp(1, 10);
        for window in 0..windows {
            let range = window * cycles / windows..(window + 1) * cycles / windows;
            let new = self
                .cycles_with_new_snapshot
                .iter()
                .any(|c| range.contains(c));
            assert!(
                new || cycles < 10,
                "no new snapshot after the kills of cycles {range:?}; the last new one after \
                 cycle {:?} (a snapshot that takes longer than a server lives is never finished)",
                self.cycles_with_new_snapshot.last()
            );
        }
        assert!(!self.snapshots.is_empty(), "no snapshot was written");
    }
}

/// Everything acknowledged and checked so far in the kill -9 run.
#[derive(Default)]
pub struct Tally {
    /// The sale of the first start: a run that crossed an hour would check
    /// carts that can no longer be bought.
    pub sale: Option<String>,
    pub total: Ledger,
    /// Acknowledged carts the check bought (their receipts are in `total`).
    pub carts_bought_by_check: usize,
}

impl Tally {
    /// Starts the server on `dir`, checks it is still the same sale,
    /// verifies what `pending` acknowledged and moves it (with the receipts
    /// of the carts the check bought) into `total`.
    pub async fn start_and_verify(
        &mut self,
        dir: &Path,
        args: &[&str],
        run: &Run,
        pending: Ledger,
    ) -> Server {
        let server = Server::start(dir, args);
        let active = server.active_sale_id().await;
        let first = self.sale.get_or_insert_with(|| active.clone());
        assert_eq!(
            &active, first,
            "the run crossed an hour: fewer cycles or less load"
        );
        let receipts = verify_concurrently(&server, &pending, run.clients as usize).await;
        self.carts_bought_by_check += receipts.len();
        self.total.merge(pending);
        self.total.merge(Ledger {
            purchases: receipts,
            ..Ledger::default()
        });
        server
    }

    /// The whole run checked once more, then the sale's rules over every
    /// purchase, and the server's count of items sold.
    pub async fn verify_all(&self, server: &Server, run: &Run) {
        let total = &self.total;
        assert!(
            total.purchases.len() as u64 > run.cycles.max(10),
            "too little load: {} purchases",
            total.purchases.len()
        );
        let receipts = verify_concurrently(server, total, run.clients as usize).await;
        assert!(
            receipts.is_empty(),
            "carts left unbought: {}",
            receipts.len()
        );
        audit(total, USER_LIMIT);
        let (status, active) = server.get("/sales/active").await;
        assert_eq!(status, 200, "{active}");
        assert_eq!(
            active["items_sold"].as_u64(),
            Some(total.items_bought() as u64),
            "items sold by the server != items in the acknowledged purchases: {active}"
        );
    }
}

/// The server's default `--user-limit`.
const USER_LIMIT: usize = 10;

/// A clock offset that puts the server's "now" 30 s into the current hour:
/// a soak of up to 59 minutes stays in one sale.
pub fn hour_start_clock_offset_seconds() -> i64 {
    let seconds_into_hour = chrono::Utc::now().timestamp().rem_euclid(3600);
    30 - seconds_into_hour
}
