//! Replication with the real binary and real `nats-server` processes on
//! loopback: an owner answers only what the stream holds, a standby
//! applies the stream and refuses writes, a kill -9 of the owner under
//! load loses no acknowledged write (the standby takes over), a paused
//! owner is fenced once it wakes up, and a former owner whose log holds
//! records the stream never took refuses to follow (its rejoin is not
//! built: the log cannot be cut back yet).

mod common;
#[path = "common/nats.rs"]
mod nats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ledger::{audit, client_loop, verify_concurrently, Ledger, LoadShape};
use common::{mid_hour_clock_offset_seconds, Server};
use nats::NatsCluster;
use serde_json::Value;

const CLIENTS: usize = 8;
const SHAPE: LoadShape = LoadShape {
    users: 60,
    items: 300,
};
const LOAD_BEFORE_KILL: Duration = Duration::from_millis(800);
/// Failover cycles of the drill (the issue asks for 10 in CI).
const FAILOVER_CYCLES: usize = 10;
/// Longest wait for a node to own the writes: the lease (1 s here), the
/// catch-up and a NATS round or two, on a loaded 2-core machine.
const PRIMARY_TIMEOUT: Duration = Duration::from_secs(30);

/// One test at a time: each starts NATS servers and two or more nodes,
/// and two of them at once on 2 cores make confirmations time out.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn node_args(urls: &[String], node_id: &str, replicas: &str, offset: &str) -> Vec<String> {
    [
        "--replicate-to",
        &urls.join(","),
        "--node-id",
        node_id,
        "--stream-replicas",
        replicas,
        "--lease-seconds",
        "1",
        "--clock-offset-seconds",
        offset,
        "--items-per-sale",
        "300",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn start_node(dir: &std::path::Path, args: &[String]) -> Server {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(dir, &args)
}

/// Waits until `server` owns the writes; the time it took.
async fn wait_primary(server: &Server) -> Duration {
    let started = Instant::now();
    loop {
        let (status, body) = server.get("/health/primary").await;
        if status == 200 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < PRIMARY_TIMEOUT,
            "{} did not become the owner: {body}",
            server.base_url
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn replication(server: &Server) -> Value {
    let (_, body) = server.get("/health").await;
    body["replication"].clone()
}

/// Waits until `server`'s replication role is `role`.
async fn wait_role(server: &Server, role: &str) {
    let deadline = Instant::now() + PRIMARY_TIMEOUT;
    loop {
        let state = replication(server).await;
        if state["role"] == role {
            return;
        }
        assert!(Instant::now() < deadline, "never {role}: {state}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `standby` has applied every record up to `seq`.
async fn wait_applied(standby: &Server, seq: u64) {
    let deadline = Instant::now() + PRIMARY_TIMEOUT;
    loop {
        let applied = replication(standby).await["replicated_seq"]
            .as_u64()
            .unwrap_or(0);
        if applied >= seq {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "standby applied {applied} of {seq}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `standby` applies everything `owner` has written (there is some) and
/// reports the same items sold.
async fn assert_caught_up(owner: &Server, standby: &Server) {
    let owner_log = owner.get("/health").await.1["log"]["durable_seq"]
        .as_u64()
        .unwrap();
    assert!(owner_log > 0);
    wait_applied(standby, owner_log).await;
    let sale = owner.active_sale_id().await;
    let (_, at_owner) = owner.get(&format!("/sales/{sale}")).await;
    let (_, at_standby) = standby.get(&format!("/sales/{sale}")).await;
    assert_eq!(at_owner["items_sold"], at_standby["items_sold"]);
}

/// Load on `server` for `duration`, every acknowledged answer in `ledger`.
async fn load(
    server: &Server,
    seed: u64,
    duration: Duration,
    ledger: &Arc<parking_lot::Mutex<Ledger>>,
) {
    let sale = server.active_sale_id().await;
    let deadline = Instant::now() + duration;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|n| {
            tokio::spawn(client_loop(
                server.base_url.clone(),
                sale.clone(),
                seed * 100 + n as u64 + 1,
                deadline,
                SHAPE,
                ledger.clone(),
            ))
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_applies_the_owners_writes_and_refuses_its_own() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = NatsCluster::single();
    // The directories are bound: dropping them would delete them under
    // the running servers.
    let Pair {
        owner,
        standby,
        owner_dir: _owner_dir,
        _standby_dir,
        ..
    } = owner_and_standby(&cluster).await;
    let (status, health) = standby.get("/health").await;
    assert_eq!(status, 200, "a following standby does its part: {health}");
    let (status, _) = standby.get("/health/primary").await;
    assert_eq!(status, 503);
    let (status, body) = standby
        .post(&format!(
            "/checkout?user_id=u1&id={}-1",
            standby.active_sale_id().await
        ))
        .await;
    assert_eq!(status, 503, "{body}");

    let ledger = Arc::new(parking_lot::Mutex::new(Ledger::default()));
    load(&owner, 1, Duration::from_secs(1), &ledger).await;
    assert_caught_up(&owner, &standby).await;
    assert_eq!(replication(&owner).await["role"], "owner");
    assert_eq!(replication(&standby).await["role"], "standby");
}

/// A standby stopped cleanly (SIGTERM: it writes a shutdown snapshot)
/// and started again on its data directory starts from that snapshot and
/// its log, then follows on: the start must measure its log by the local
/// fsync, not by what the stream has confirmed to this new process (none
/// yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_restarted_after_a_clean_stop_starts_from_its_snapshot_and_follows() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = NatsCluster::single();
    let Pair {
        owner,
        standby,
        owner_dir: _owner_dir,
        _standby_dir: standby_dir,
        ..
    } = owner_and_standby(&cluster).await;
    let ledger = Arc::new(parking_lot::Mutex::new(Ledger::default()));
    load(&owner, 1, Duration::from_millis(500), &ledger).await;
    assert_caught_up(&owner, &standby).await;
    let standby_args = standby_args_of(&cluster);
    assert!(standby.terminate().success());
    let snapshots = std::fs::read_dir(standby_dir.path().join("snapshots")).unwrap();
    assert!(snapshots.count() > 0, "the clean stop wrote a snapshot");

    let restarted = start_node(standby_dir.path(), &standby_args);
    wait_role(&restarted, "standby").await;
    load(&owner, 2, Duration::from_millis(300), &ledger).await;
    assert_caught_up(&owner, &restarted).await;
}

/// The failover drill: each cycle loads the owner, kills it (-9) and
/// checks that the standby takes over with every acknowledged write; a
/// new standby (a fresh machine) joins for the next cycle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_owner_loses_no_acknowledged_write() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = NatsCluster::three();
    let urls = cluster.urls();
    let offset = mid_hour_clock_offset_seconds().to_string();
    let ledger = Arc::new(parking_lot::Mutex::new(Ledger::default()));
    let mut dirs = vec![tempfile::tempdir().unwrap()];
    let mut owner = start_node(dirs[0].path(), &node_args(&urls, "n0", "3", &offset));
    wait_primary(&owner).await;
    let mut recoveries = Vec::new();
    for cycle in 1..=FAILOVER_CYCLES {
        dirs.push(tempfile::tempdir().unwrap());
        let node_id = format!("n{cycle}");
        let args = node_args(&urls, &node_id, "3", &offset);
        let standby = start_node(dirs[cycle].path(), &args);
        load(&owner, cycle as u64, LOAD_BEFORE_KILL, &ledger).await;
        let killed_at = Instant::now();
        owner.kill9();
        let recovered = wait_primary(&standby).await;
        recoveries.push(killed_at.elapsed().max(recovered));
        let acknowledged = ledger.lock().clone();
        let receipts = verify_concurrently(&standby, &acknowledged, 4).await;
        let mut ledger = ledger.lock();
        ledger.purchases.extend(receipts);
        audit(&ledger, 10);
        drop(ledger);
        owner = standby;
    }
    recoveries.sort();
    println!(
        "failover: {} cycles, kill to owner: median {:?}, max {:?}",
        recoveries.len(),
        recoveries[recoveries.len() / 2],
        recoveries[recoveries.len() - 1]
    );
    assert!(!ledger.lock().purchases.is_empty());
}

/// A paused owner (SIGSTOP) with writes in flight: the standby takes
/// over; once resumed, the old owner is fenced by the stream, answers 503
/// to what it held and to everything after, and every write it did
/// acknowledge is at the new owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_is_fenced_and_acknowledges_nothing_after_the_takeover() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = NatsCluster::single();
    let Pair {
        owner: old,
        standby: new,
        owner_args: _,
        owner_dir: _owner_dir,
        _standby_dir,
    } = owner_and_standby(&cluster).await;
    let ledger = Arc::new(parking_lot::Mutex::new(Ledger::default()));
    load(&old, 1, Duration::from_millis(500), &ledger).await;

    let in_flight = tokio::spawn({
        let (url, sale) = (old.base_url.clone(), old.active_sale_id().await);
        let ledger = ledger.clone();
        client_loop(
            url,
            sale,
            99,
            Instant::now() + Duration::from_secs(5),
            SHAPE,
            ledger,
        )
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(old.pid(), "-STOP");
    let took_over = wait_primary(&new).await;
    signal(old.pid(), "-CONT");
    in_flight.await.unwrap();

    wait_role(&old, "fenced").await;
    let (status, body) = old
        .post(&format!(
            "/checkout?user_id=late&id={}-1",
            old.active_sale_id().await
        ))
        .await;
    assert_eq!(status, 503, "{body}");
    let (status, _) = old.get("/health/primary").await;
    assert_eq!(status, 503);
    let acknowledged = ledger.lock().clone();
    verify_concurrently(&new, &acknowledged, 4).await;
    println!("takeover of a paused owner after {took_over:?}");
}

/// A former owner restarted on its data directory: it follows the stream
/// if its log is a prefix of the stream's history; if its log holds
/// records the stream never took (fsync'd, never acknowledged), it does
/// not follow a history that is not its own and says so in `/health`
/// (cutting its log back is not built). Which one happens depends on
/// where the pause caught the owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_former_owner_rejoins_if_its_log_is_a_prefix_of_the_stream_and_stops_otherwise() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = NatsCluster::single();
    let Pair {
        owner: old,
        standby: new,
        owner_args,
        owner_dir,
        _standby_dir,
    } = owner_and_standby(&cluster).await;
    let ledger = Arc::new(parking_lot::Mutex::new(Ledger::default()));
    load(&old, 1, Duration::from_millis(300), &ledger).await;
    signal(old.pid(), "-STOP");
    wait_primary(&new).await;
    load(&new, 2, Duration::from_millis(300), &ledger).await;
    // The paused owner's local log ends before the new owner's takeover
    // record; its restart sees the stream's history go on past it.
    signal(old.pid(), "-CONT");
    old.kill9();
    let rejoined = start_node(owner_dir.path(), &owner_args);
    let deadline = Instant::now() + PRIMARY_TIMEOUT;
    loop {
        let state = replication(&rejoined).await;
        if state["role"] == "standby" && state["replicated_seq"].as_u64() > Some(0) {
            let seq = new.get("/health").await.1["log"]["durable_seq"]
                .as_u64()
                .unwrap();
            wait_applied(&rejoined, seq).await;
            println!("rejoin: the old log was a prefix of the stream; following");
            break;
        }
        if state["role"] == "stopped" {
            let (status, _) = rejoined.get("/health").await;
            assert_eq!(status, 503, "a node that cannot follow is not healthy");
            println!("rejoin: the old log diverged from the stream; stopped: {state}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rejoin neither followed nor stopped: {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two nodes on one NATS server (one copy of the stream): `owner` (node
/// `a`) owns the writes, `standby` (node `b`) follows.
struct Pair {
    owner: Server,
    standby: Server,
    owner_args: Vec<String>,
    owner_dir: tempfile::TempDir,
    _standby_dir: tempfile::TempDir,
}

/// The arguments of `Pair`'s standby (node `b`).
fn standby_args_of(cluster: &NatsCluster) -> Vec<String> {
    let offset = mid_hour_clock_offset_seconds().to_string();
    node_args(&cluster.urls(), "b", "1", &offset)
}

async fn owner_and_standby(cluster: &NatsCluster) -> Pair {
    let urls = cluster.urls();
    let offset = mid_hour_clock_offset_seconds().to_string();
    let (owner_dir, standby_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let owner_args = node_args(&urls, "a", "1", &offset);
    let owner = start_node(owner_dir.path(), &owner_args);
    wait_primary(&owner).await;
    let standby = start_node(standby_dir.path(), &standby_args_of(cluster));
    wait_role(&standby, "standby").await;
    Pair {
        owner,
        standby,
        owner_args,
        owner_dir,
        _standby_dir: standby_dir,
    }
}

fn signal(pid: u32, which: &str) {
    let sent = std::process::Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
}
