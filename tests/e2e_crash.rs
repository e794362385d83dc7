//! Crash safety of the real binary: kill -9 under load, restart on the same
//! data directory, and every acknowledged cart and purchase is there and
//! answers identically. Damaged logs: a torn tail starts, a damaged older
//! record stops the start with a message naming segment and offset.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ledger::{audit, client_loop, verify, Ledger, LoadShape};
use common::{mid_hour_clock_offset_seconds, Server};
use serde_json::Value;

const CRASH_CYCLES: usize = 5;
const CLIENTS_PER_CYCLE: usize = 16;
const SHAPE: LoadShape = LoadShape {
    users: 40,
    items: 200,
};
const LOAD_BEFORE_KILL: Duration = Duration::from_millis(700);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_carts_and_purchases_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let offset = mid_hour_clock_offset_seconds().to_string();
    let args = [
        "--clock-offset-seconds",
        offset.as_str(),
        "--items-per-sale",
        "200",
    ];
    let ledger = Arc::new(parking_lot::Mutex::new(Ledger::default()));
    for cycle in 0..CRASH_CYCLES {
        let server = Server::start(dir.path(), &args);
        let acknowledged = ledger.lock().clone();
        verify(&server, &acknowledged).await;
        let sale = server.active_sale_id().await;
        let deadline = Instant::now() + LOAD_BEFORE_KILL * 3;
        let tasks: Vec<_> = (0..CLIENTS_PER_CYCLE)
            .map(|n| {
                tokio::spawn(client_loop(
                    server.base_url.clone(),
                    sale.clone(),
                    (cycle * 100 + n) as u64 + 1,
                    deadline,
                    SHAPE,
                    ledger.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(LOAD_BEFORE_KILL).await;
        server.kill9();
        for task in tasks {
            task.await.unwrap();
        }
        let ledger = ledger.lock();
        assert!(
            !ledger.carts.is_empty(),
            "cycle {cycle}: no load was acknowledged"
        );
        audit(&ledger, 10);
    }
    let server = Server::start(dir.path(), &args);
    let ledger = ledger.lock().clone();
    verify(&server, &ledger).await;
    assert!(
        ledger.purchases.len() > 10,
        "too few purchases to mean anything: {}",
        ledger.purchases.len()
    );
    let (_, sale) = server.get("/sales/active").await;
    let bought: usize = ledger
        .purchases
        .values()
        .map(|b| b["total_purchased"].as_u64().unwrap() as usize)
        .sum();
    assert!(sale["items_sold"].as_u64().unwrap() as usize >= bought);
}

fn newest_segment(data_dir: &std::path::Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(data_dir.join("wal"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    segments.pop().expect("a segment")
}

async fn write_some_history(dir: &tempfile::TempDir, args: &[&str]) -> (String, Value) {
    let server = Server::start(dir.path(), args);
    let sale = server.active_sale_id().await;
    for n in 0..20 {
        server
            .post(&format!("/checkout?user_id=filler{n}&id={sale}-{n}"))
            .await;
    }
    let (_, cart) = server
        .post(&format!("/checkout?user_id=keeper&id={sale}-50"))
        .await;
    let code = cart["code"].as_str().unwrap().to_string();
    let (status, receipt) = server.post(&format!("/purchase?code={code}")).await;
    assert_eq!(status, 200);
    assert_eq!(server.terminate().code(), Some(0), "SIGTERM must exit 0");
    (code, receipt)
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_the_server_starts() {
    let dir = tempfile::tempdir().unwrap();
    let offset = mid_hour_clock_offset_seconds().to_string();
    let args = ["--clock-offset-seconds", offset.as_str()];
    let (code, receipt) = write_some_history(&dir, &args).await;
    let segment = newest_segment(dir.path());
    let mut bytes = std::fs::read(&segment).unwrap();
    // Half a record header right after the last whole record: what a crash
    // in the middle of a write leaves (in a preallocated segment, over the
    // zeros that follow the records).
    let decoded =
        flashsale_wal::decode_segment(&bytes, flashsale_wal::RECORD_SIZE_MAX_BYTES_DEFAULT)
            .unwrap();
    let end = decoded.valid_len_bytes as usize;
    let half_header = [0x2a, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00];
    bytes.resize(bytes.len().max(end + half_header.len()), 0);
    bytes[end..end + half_header.len()].copy_from_slice(&half_header);
    std::fs::write(&segment, &bytes).unwrap();

    let server = Server::start(dir.path(), &args);
    let (status, again) = server.post(&format!("/purchase?code={code}")).await;
    assert_eq!(status, 200);
    assert_eq!(again, receipt);
}

#[tokio::test]
async fn a_damaged_older_record_stops_the_start_with_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let offset = mid_hour_clock_offset_seconds().to_string();
    let args = ["--clock-offset-seconds", offset.as_str()];
    write_some_history(&dir, &args).await;
    let segment = newest_segment(dir.path());
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();

    let failure = Server::try_start(dir.path(), &args)
        .err()
        .expect("start must fail");
    assert_ne!(failure.status.and_then(|s| s.code()), Some(0));
    let stderr = failure.stderr.trim();
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr}");
    let file_name = segment.file_name().unwrap().to_str().unwrap();
    assert!(stderr.contains(file_name), "names the segment: {stderr}");
    assert!(stderr.contains("offset"), "names the offset: {stderr}");
}

#[tokio::test]
async fn a_second_process_cannot_open_a_log_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let second = Server::try_start(dir.path(), &[])
        .err()
        .expect("a second server must not start");
    assert!(
        second.stderr.contains("in use by another process"),
        "{}",
        second.stderr
    );
    let export = std::process::Command::new(common::binary())
        .args([
            "export",
            "--once",
            "--database-url",
            "postgres://postgres@127.0.0.1:1/none",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!export.status.success());
    let stderr = String::from_utf8_lossy(&export.stderr);
    assert!(stderr.contains("in use by another process"), "{stderr}");
    drop(server);
}
