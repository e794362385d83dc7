//! Snapshots with the real binary: kill -9 while snapshots are written
//! under load (a small `--snapshot-interval-records`), restart, and every
//! acknowledged cart and purchase is there; a restart after retention
//! deleted log segments rebuilds everything; `/health` and `/metrics` show
//! the snapshot; `flashsale snapshot inspect` reads it.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ledger::{client_loop, verify, Ledger, LoadShape};
use common::{mid_hour_clock_offset_seconds, Server};

const CLIENTS: usize = 12;
const SHAPE: LoadShape = LoadShape {
    users: 60,
    items: 300,
};

/// Runs `CLIENTS` clients against `server` for `load`, then `stop`s it.
async fn load_then(
    server: Server,
    load: Duration,
    seed: u64,
    ledger: &Arc<parking_lot::Mutex<Ledger>>,
    stop: impl FnOnce(Server),
) {
    let sale = server.active_sale_id().await;
    let deadline = Instant::now() + load * 3;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let url = server.base_url.clone();
            let task = client_loop(
                url,
                sale.clone(),
                seed + n as u64,
                deadline,
                SHAPE,
                ledger.clone(),
            );
            tokio::spawn(task)
        })
        .collect();
    tokio::time::sleep(load).await;
    stop(server);
    for task in tasks {
        task.await.unwrap();
    }
}

fn snapshot_files(data_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("snapshots")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn oldest_segment(data_dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(data_dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".wal"))
        .collect();
    names.sort();
    names[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_snapshots_are_written_loses_no_acknowledged_cart_or_purchase() {
    let dir = tempfile::tempdir().unwrap();
    let offset = mid_hour_clock_offset_seconds().to_string();
    let args = [
        "--clock-offset-seconds",
        &offset,
        "--items-per-sale",
        "300",
        "--user-writes-per-second",
        "0",
        "--snapshot-interval-records",
        "150",
    ];
    let ledger = Arc::new(parking_lot::Mutex::new(Ledger::default()));
    for cycle in 0..3u64 {
        let server = Server::start(dir.path(), &args);
        let acknowledged = ledger.lock().clone();
        verify(&server, &acknowledged).await;
        let load = Duration::from_millis(900);
        load_then(server, load, cycle * 100 + 1, &ledger, Server::kill9).await;
    }
    assert!(
        snapshot_files(dir.path())
            .iter()
            .any(|f| f.ends_with(".snap")),
        "no snapshot was written: {:?}",
        snapshot_files(dir.path())
    );
    let server = Server::start(dir.path(), &args);
    let ledger = ledger.lock().clone();
    assert!(
        ledger.purchases.len() > 10,
        "too little load: {}",
        ledger.purchases.len()
    );
    verify(&server, &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_retention_deleted_segments_rebuilds_everything_and_shows_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mid_hour_offset = mid_hour_clock_offset_seconds();
    let offset = mid_hour_offset.to_string();
    let args = [
        "--clock-offset-seconds",
        &offset,
        "--items-per-sale",
        "300",
        "--user-writes-per-second",
        "0",
        "--snapshot-interval-records",
        "20000",
        "--log-segment-bytes",
        "1048576",
    ];
    // Over three segments of records, written in-process (HTTP in a debug
    // build is too slow to fill megabytes in a test).
    generate_log(dir.path(), mid_hour_offset, 30_000);
    let first = oldest_segment(dir.path());
    let ledger = Arc::new(parking_lot::Mutex::new(Ledger::default()));
    let server = Server::start(dir.path(), &args);
    // The first snapshot comes at once (30,000 records since none).
    wait_for_snapshot(&server).await;
    let stop = |server: Server| assert!(server.terminate().success());
    load_then(server, Duration::from_secs(1), 7, &ledger, stop).await;
    // The shutdown snapshot is the second one: retention ran.
    assert_ne!(oldest_segment(dir.path()), first, "no segment was deleted");
    assert_eq!(snapshot_files(dir.path()).len(), 2);
    let server = Server::start(dir.path(), &args);
    let acknowledged = ledger.lock().clone();
    verify(&server, &acknowledged).await;
    let (status, health) = server.get("/health").await;
    assert_eq!(status, 200, "{health}");
    let snapshot = &health["snapshot"];
    assert!(snapshot["seq"].as_u64().unwrap() > 0, "{health}");
    let file = snapshot["file"].as_str().unwrap();
    assert!(
        snapshot_files(dir.path()).contains(&file.to_string()),
        "{health}"
    );
    assert!(!file.contains('/'), "no paths in /health: {file}");
    let metrics = server.metrics_text().await;
    for name in [
        "flashsale_log_disk_bytes",
        "flashsale_snapshot_disk_bytes",
        "flashsale_snapshot_seq",
        "flashsale_snapshot_age_seconds",
        "flashsale_records_since_snapshot",
        "flashsale_snapshots_written_total",
        "flashsale_snapshot_failures_total",
        "flashsale_snapshot_duration_seconds_count",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    drop(server);
    let output = std::process::Command::new(common::binary())
        .args(["snapshot", "inspect"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("covers records up to") && text.contains("open carts"),
        "{text}"
    );
}

/// Writes `records` checkout records (404s of long user ids) into the log
/// of `data_dir` in 1 MiB segments, as the server would.
fn generate_log(data_dir: &Path, offset_seconds: i64, records: u64) {
    use flashsale::domain::{ItemId, SystemClock, UserId};
    use flashsale::engine::{Engine, EngineConfig};
    let mut config = flashsale_wal::WalConfig::new(data_dir.join("wal"));
    config.segment_size_max_bytes = 1024 * 1024;
    config.batch_bytes_max = 256 * 1024;
    config.record_size_max_bytes = 64 * 1024;
    config.sync_mode = flashsale_wal::SyncMode::UnsafeNoSync;
    let wal = Arc::new(flashsale_wal::Wal::open(config).unwrap());
    let journal = Arc::new(flashsale::journal::WalJournal::new(wal.clone()));
    let clock = Arc::new(SystemClock { offset_seconds });
    let engine_config = EngineConfig {
        items_per_sale: 300,
        ..EngineConfig::default()
    };
    let engine = Engine::new(engine_config, clock, journal).unwrap();
    let sale = engine.active_sale().id;
    let filler = "g".repeat(56);
    for n in 0..records {
        let user = UserId::parse(&format!("{filler}{n:08}")).unwrap();
        let item = ItemId {
            sale,
            index: (n % 400) as u32,
        };
        engine.checkout(&user, item).unwrap();
    }
    wal.wait_durable(wal.last_seq()).unwrap();
    wal.close();
}

async fn wait_for_snapshot(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, health) = server.get("/health").await;
        if health["snapshot"]["seq"].as_u64().unwrap_or(0) > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no snapshot: {health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
