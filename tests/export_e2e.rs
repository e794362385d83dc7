//! The export of the real binary: kill -9 of the server under load, several
//! times, while it exports every second; after a clean restart PostgreSQL
//! holds every durable record exactly once, and `flashsale export --once`
//! of the same log directory gives the same tables; `flashsale export`
//! refuses a database that holds another log's export.
//!
//! Needs PostgreSQL like `tests/export_postgres.rs`
//! (`FLASHSALE_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`); fails if it is unreachable.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::postgres::{connect_or_fail, dump, TestDatabase};
use common::{mid_hour_clock_offset_seconds, Server};
use tokio_postgres::Client;

const CRASH_CYCLES: u64 = 4;
const CLIENTS: u64 = 8;
const USERS: u64 = 60;
const ITEMS: u64 = 200;

/// Random checkouts, and a purchase after about one checkout in three.
async fn load(server_url: String, sale: String, seed: u64, deadline: Instant) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut next = common::numbers_below(seed);
    while Instant::now() < deadline {
        let (user, item) = (next(USERS), next(ITEMS));
        let url = format!("{server_url}/checkout?user_id=user{user}&id={sale}-{item}");
        let Ok(response) = client.post(url).send().await else {
            return; // the server was killed
        };
        let Ok(body) = response.json::<serde_json::Value>().await else {
            return;
        };
        if let (Some(code), 0) = (body["code"].as_str(), next(3)) {
            let url = format!("{server_url}/purchase?code={code}");
            if client.post(url).send().await.is_err() {
                return;
            }
        }
    }
}

/// Waits until the exporter has exported everything the log holds.
async fn wait_until_caught_up(server: &Server) -> u64 {
    let started = Instant::now();
    loop {
        let (_, health) = server.get("/health").await;
        let durable = health["log"]["durable_seq"].as_u64().expect("durable_seq");
        let exported = health["exporter"]["last_exported_seq"].as_u64();
        if durable > 0 && exported == Some(durable) {
            return durable;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "export did not catch up: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `seq` runs from 1 to `durable` over the record tables, once each.
async fn assert_exactly_once(client: &Client, durable: u64) {
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT seq), coalesce(min(seq), 0), coalesce(max(seq), 0)
             FROM (SELECT seq FROM checkout_attempts UNION ALL SELECT seq FROM purchases
                   UNION ALL SELECT seq FROM sale_openings) s",
            &[],
        )
        .await
        .expect("count");
    let durable = durable as i64;
    let counts: (i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(counts, (durable, durable, 1, durable));
    let cursor: i64 = client
        .query_one("SELECT last_seq FROM export_cursor", &[])
        .await
        .expect("cursor")
        .get(0);
    assert_eq!(cursor, durable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_is_exactly_once_across_kill_9_of_the_server() {
    let (live, offline) = (TestDatabase::create().await, TestDatabase::create().await);
    let dir = tempfile::tempdir().expect("tempdir");
    let offset = mid_hour_clock_offset_seconds().to_string();
    let args = [
        "--clock-offset-seconds",
        offset.as_str(),
        "--items-per-sale",
        "200",
        "--database-url",
        live.url.as_str(),
        "--export-interval",
        "1",
    ];
    for cycle in 0..CRASH_CYCLES {
        let server = Server::start(dir.path(), &args);
        let sale = server.active_sale_id().await;
        let deadline = Instant::now() + Duration::from_secs(4);
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|n| {
                let url = server.base_url.clone();
                tokio::spawn(load(url, sale.clone(), cycle * 100 + n + 1, deadline))
            })
            .collect();
        // Kill at a different point of the export interval each cycle.
        tokio::time::sleep(Duration::from_millis(1_300 + cycle * 370)).await;
        server.kill9();
        for task in tasks {
            task.await.expect("load task");
        }
    }

    let server = Server::start(dir.path(), &args);
    let durable = wait_until_caught_up(&server).await;
    assert!(durable > 100, "too little load to mean anything: {durable}");
    assert!(server.terminate().success());
    let live_client = connect_or_fail(&live.url).await;
    assert_exactly_once(&live_client, durable).await;

    let status = Command::new(common::binary())
        .args(["export", "--once", "--items-per-sale", "200"])
        .arg("--database-url")
        .arg(&offline.url)
        .arg("--data-dir")
        .arg(dir.path())
        .status()
        .expect("run flashsale export");
    assert!(status.success());
    let offline_client = connect_or_fail(&offline.url).await;
    assert_exactly_once(&offline_client, durable).await;
    assert_eq!(dump(&live_client).await, dump(&offline_client).await);
}

/// `flashsale export` on a database that holds another log's export: a
/// non-zero exit, one line on stderr naming both logs, nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_export_refuses_a_database_of_another_log() {
    use flashsale::engine::{PurchaseOutcome, PurchaseRecord, Record, Rejection};
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let wal_config = flashsale_wal::WalConfig::new(dir.path().join("wal"));
    let wal = flashsale_wal::Wal::open(wal_config).expect("open the log");
    for code in 1..=20u128 {
        let record = Record::Purchase(PurchaseRecord {
            at_unix_ms: 1_795_291_200_000,
            sale_id: None,
            user_id: None,
            code,
            outcome: PurchaseOutcome::Rejected(Rejection::CheckoutNotFound),
            items: vec![],
        });
        let payload = flashsale::journal::encode(&record).expect("encode");
        wal.append(&payload).expect("append");
    }
    wal.wait_durable(20).expect("durable");
    wal.close();
    drop(wal);
    let export = || {
        Command::new(common::binary())
            .args(["export", "--once", "--database-url", db.url.as_str()])
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .expect("run flashsale export")
    };
    assert!(export().status.success());
    let client = connect_or_fail(&db.url).await;
    client
        .batch_execute(
            "UPDATE export_cursor SET log_id = 'ffffffffffffffffffffffffffffffff', last_seq = 10;
             DELETE FROM purchases WHERE seq > 10;",
        )
        .await
        .expect("make the export another log's");
    let refused = export();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("ffffffffffffffffffffffffffffffff"),
        "{stderr}"
    );
    assert!(stderr.contains("refusing to mix"), "{stderr}");
    let rows: i64 = client
        .query_one("SELECT count(*) FROM purchases", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, 10, "nothing written for another log");
}
