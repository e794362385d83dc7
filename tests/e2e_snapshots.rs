//! Snapshots with the real binary: kill -9 while snapshots are written
//! under load (a small `--snapshot-interval-records`), restart, and every
//! acknowledged cart and purchase is there; a restart after retention
//! deleted log segments rebuilds everything; `/health` and `/metrics` show
//! the snapshot; `flashsale snapshot inspect` reads it.
//!
//! The kill -9 test is also the soak of issue 11 (`benches/kill9_soak.sh`):
//! its cycles and load shape come from `FLASHSALE_SOAK_*` variables, whose
//! defaults are the short version `cargo test` runs.

mod common;
mod snapshot_soak;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ledger::{client_loop, verify, Ledger};
use common::{mid_hour_clock_offset_seconds, Server};
use snapshot_soak::{files_ending, hour_start_clock_offset_seconds, Run, Seen, Tally, SHORT};

/// Runs `run.clients` clients against `server` for `run.load`, then
/// `stop`s it; returns `/metrics` as it was just before the stop.
async fn load_then(
    server: Server,
    run: &Run,
    seed: u64,
    ledger: &Arc<parking_lot::Mutex<Ledger>>,
    stop: impl FnOnce(Server),
) -> String {
    let sale = server.active_sale_id().await;
    let deadline = Instant::now() + run.load * 3;
    let tasks: Vec<_> = (0..run.clients)
        .map(|n| {
            let url = server.base_url.clone();
            let task = client_loop(
                url,
                sale.clone(),
                seed + n,
                deadline,
                run.shape,
                ledger.clone(),
            );
            tokio::spawn(task)
        })
        .collect();
    tokio::time::sleep(run.load).await;
    let metrics = server.metrics_text().await;
    stop(server);
    for task in tasks {
        task.await.unwrap();
    }
    metrics
}

fn snapshot_files(data_dir: &Path) -> Vec<String> {
    files_ending(&data_dir.join("snapshots"), "")
}

fn oldest_segment(data_dir: &Path) -> String {
    files_ending(&data_dir.join("wal"), ".wal")[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_snapshots_are_written_loses_no_acknowledged_cart_or_purchase() {
    let started = Instant::now();
    let run = Run::from_env();
    let dir = tempfile::tempdir().unwrap();
    let args = run.server_args(hour_start_clock_offset_seconds());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (mut tally, mut pending, mut seen) = (Tally::default(), Ledger::default(), Seen::default());
    for cycle in 0..run.cycles {
        let server = tally
            .start_and_verify(dir.path(), &args, &run, pending)
            .await;
        let ledger = Arc::new(parking_lot::Mutex::new(Ledger::default()));
        let seed = run.seed + cycle * 1000 + 1;
        let metrics = load_then(server, &run, seed, &ledger, Server::kill9).await;
        seen.note(dir.path(), cycle, &metrics);
        if run.cycles >= 50 && (cycle + 1) % (run.cycles / 20) == 0 {
            let (carts, purchases) = (tally.total.carts.len(), tally.total.purchases.len());
            let seconds = started.elapsed().as_secs();
            eprintln!(
                "cycle {}/{}: {seconds} s, {carts} carts, {purchases} purchases",
                cycle + 1,
                run.cycles
            );
        }
        pending = std::mem::take(&mut *ledger.lock());
    }
    let server = tally
        .start_and_verify(dir.path(), &args, &run, pending)
        .await;
    // The acknowledged writes and the sale's rules first, then the summary,
    // then whether snapshots and retention really ran all along.
    tally.verify_all(&server, &run).await;
    let remaining = files_ending(&dir.path().join("wal"), ".wal");
    let deleted = seen.segments.iter().filter(|s| !remaining.contains(s));
    let deleted = deleted.count();
    let total = &tally.total;
    println!(
        "kill -9 soak: {} cycles, {} acknowledged carts, {} acknowledged purchases \
         ({} by clients, {} carts bought by the check), {} items bought, {} snapshots seen \
         ({} written, {} kills during a snapshot write, the last new one after cycle {:?}), \
         {} segments deleted, {:.0} s",
        run.cycles,
        total.carts.len(),
        total.purchases.len(),
        total.purchases.len() - tally.carts_bought_by_check,
        tally.carts_bought_by_check,
        total.items_bought(),
        seen.snapshots.len(),
        seen.snapshots_written,
        seen.partial_snapshots.len(),
        seen.cycles_with_new_snapshot.last(),
        deleted,
        started.elapsed().as_secs_f64()
    );
    seen.assert_snapshots_across(run.cycles);
    if run.log_segment_bytes.is_some() {
        assert!(deleted > 0, "no segment was deleted: {remaining:?}");
    }
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
    let run = Run {
        load: Duration::from_secs(1),
        ..SHORT
    };
    load_then(server, &run, 7, &ledger, stop).await;
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
