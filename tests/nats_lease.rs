//! `replication::lease` against a real `nats-server`: one owner at a time
//! as far as the lease goes, a takeover only after the owner's silence
//! lasted the lease duration on the taker's own clock, and epochs that
//! grow and never repeat.

#[path = "common/nats.rs"]
mod nats;

use std::time::{Duration, Instant};

use async_nats::jetstream;
use flashsale::replication::lease::{Acquire, Holder, Lease, LeaseSettings, Renewal};
use flashsale::replication::{connect, ConnectSettings};
use nats::NatsCluster;

/// Short, so that takeovers happen within the test's time.
const TEST_LEASE_MS: u64 = 400;
const POLL: Duration = Duration::from_millis(25);
/// The production default: shorter ones time out on a loaded machine
/// (every JetStream write is fsync'd).
const TEST_REQUEST_TIMEOUT_MS: u64 = flashsale::replication::REQUEST_TIMEOUT_MS;

async fn context(cluster: &NatsCluster) -> jetstream::Context {
    let mut settings = ConnectSettings::new(cluster.urls(), "lease-test");
    settings.request_timeout_ms = TEST_REQUEST_TIMEOUT_MS;
    connect(&settings).await.expect("connect")
}

async fn lease(js: &jetstream::Context, node_id: &str) -> Lease {
    let settings = LeaseSettings {
        stream_name: "flashsale".into(),
        node_id: node_id.into(),
        lease_ms: TEST_LEASE_MS,
        replicas: 1,
    };
    Lease::open(js, &settings).await.expect("open lease")
}

fn epoch_of(acquire: &Acquire) -> u64 {
    match acquire {
        Acquire::Acquired { epoch } => *epoch,
        other => panic!("expected to own the lease: {other:?}"),
    }
}

/// Calls `acquire` until it succeeds; how long that took.
async fn acquire_within(lease: &mut Lease, limit: Duration) -> (u64, Duration) {
    let started = Instant::now();
    loop {
        if let Acquire::Acquired { epoch } = lease.acquire().await.unwrap() {
            return (epoch, started.elapsed());
        }
        assert!(started.elapsed() < limit, "no takeover within {limit:?}");
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test]
async fn the_first_node_takes_a_free_lease_and_the_next_sees_it_held() {
    let cluster = NatsCluster::single();
    let js = context(&cluster).await;
    let mut a = lease(&js, "a").await;
    let mut b = lease(&js, "b").await;
    assert_eq!(epoch_of(&a.acquire().await.unwrap()), 1);
    assert_eq!(a.epoch(), Some(1));
    match b.acquire().await.unwrap() {
        Acquire::HeldByOther { holder, silent_ms } => {
            let holder = holder.expect("readable holder");
            assert_eq!(
                holder,
                Holder {
                    node_id: "a".into(),
                    epoch: 1
                }
            );
            assert!(silent_ms < TEST_LEASE_MS);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.epoch(), None);
    assert_eq!(b.renew().await.unwrap(), Renewal::Lost, "b never held it");
    // Acquiring again while holding it keeps the epoch.
    assert_eq!(epoch_of(&a.acquire().await.unwrap()), 1);
}

#[tokio::test]
async fn an_owner_that_keeps_renewing_is_never_taken_over() {
    let cluster = NatsCluster::single();
    let js = context(&cluster).await;
    let mut a = lease(&js, "a").await;
    let mut b = lease(&js, "b").await;
    assert_eq!(epoch_of(&a.acquire().await.unwrap()), 1);
    let renew_every = Duration::from_millis(TEST_LEASE_MS / 4);
    let until = Instant::now() + Duration::from_millis(3 * TEST_LEASE_MS);
    let mut last_renewal = Instant::now();
    while Instant::now() < until {
        if last_renewal.elapsed() >= renew_every {
            assert_eq!(a.renew().await.unwrap(), Renewal::Renewed);
            last_renewal = Instant::now();
        }
        let seen = b.acquire().await.unwrap();
        assert!(matches!(seen, Acquire::HeldByOther { .. }), "{seen:?}");
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(a.epoch(), Some(1));
}

#[tokio::test]
async fn a_silent_owner_is_taken_over_after_the_lease_duration_with_a_higher_epoch() {
    let cluster = NatsCluster::single();
    let js = context(&cluster).await;
    let mut a = lease(&js, "a").await;
    let mut b = lease(&js, "b").await;
    let epoch_a = epoch_of(&a.acquire().await.unwrap());
    let first_look = Instant::now();
    assert!(matches!(
        b.acquire().await.unwrap(),
        Acquire::HeldByOther { .. }
    ));
    let (epoch_b, _) = acquire_within(&mut b, Duration::from_secs(5)).await;
    // b counts the silence from its first look, on its own clock.
    let silence = first_look.elapsed();
    assert!(
        silence >= Duration::from_millis(TEST_LEASE_MS),
        "{silence:?}"
    );
    assert!(epoch_b > epoch_a, "{epoch_b} after {epoch_a}");
    assert_eq!(a.renew().await.unwrap(), Renewal::Lost);
    assert_eq!(a.epoch(), None);
    // And back: a takes over from a silent b, at a higher epoch again.
    let (epoch_a2, _) = acquire_within(&mut a, Duration::from_secs(5)).await;
    assert!(epoch_a2 > epoch_b, "{epoch_a2} after {epoch_b}");
    assert_eq!(b.renew().await.unwrap(), Renewal::Lost);
}

#[tokio::test]
async fn two_standbys_racing_for_a_silent_lease_make_exactly_one_owner() {
    let cluster = NatsCluster::single();
    let js = context(&cluster).await;
    let mut a = lease(&js, "a").await;
    let mut b = lease(&js, "b").await;
    let mut c = lease(&js, "c").await;
    a.acquire().await.unwrap();
    b.acquire().await.unwrap();
    c.acquire().await.unwrap();
    tokio::time::sleep(Duration::from_millis(TEST_LEASE_MS + 50)).await;
    let (from_b, from_c) = tokio::join!(b.acquire(), c.acquire());
    let owners = [from_b.unwrap(), from_c.unwrap()]
        .iter()
        .filter(|outcome| matches!(outcome, Acquire::Acquired { .. }))
        .count();
    assert_eq!(owners, 1);
    assert_eq!(a.renew().await.unwrap(), Renewal::Lost);
}

#[tokio::test]
async fn a_restarted_node_waits_out_the_lease_and_never_reuses_its_epoch() {
    let cluster = NatsCluster::single();
    let js = context(&cluster).await;
    let mut before = lease(&js, "a").await;
    let old_epoch = epoch_of(&before.acquire().await.unwrap());
    drop(before);
    // The same node id after a restart: its old epoch is not its own.
    let mut after = lease(&js, "a").await;
    let seen = after.acquire().await.unwrap();
    assert!(matches!(seen, Acquire::HeldByOther { .. }), "{seen:?}");
    let (new_epoch, _) = acquire_within(&mut after, Duration::from_secs(5)).await;
    assert!(new_epoch > old_epoch, "{new_epoch} after {old_epoch}");
}

#[tokio::test]
async fn a_renewal_at_a_stale_revision_is_lost_and_changes_nothing() {
    let cluster = NatsCluster::single();
    let js = context(&cluster).await;
    let mut a = lease(&js, "a").await;
    let mut b = lease(&js, "b").await;
    epoch_of(&a.acquire().await.unwrap());
    b.acquire().await.unwrap();
    let (epoch_b, _) = acquire_within(&mut b, Duration::from_secs(5)).await;
    // a wakes up from a pause and renews at the revision it last saw.
    assert_eq!(a.renew().await.unwrap(), Renewal::Lost);
    let store = js.get_key_value("flashsale-lease").await.unwrap();
    let entry = store.entry("owner").await.unwrap().expect("entry");
    let holder: Holder = serde_json::from_slice(&entry.value).unwrap();
    assert_eq!(
        holder,
        Holder {
            node_id: "b".into(),
            epoch: epoch_b
        }
    );
    assert_eq!(b.renew().await.unwrap(), Renewal::Renewed);
}

/// Waits until the lease entry's revision moves past `revision`.
async fn wait_for_revision_after(js: &jetstream::Context, revision: u64) {
    let store = js.get_key_value("flashsale-lease").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let entry = store.entry("owner").await.unwrap();
        if entry.is_some_and(|e| e.revision > revision) {
            return;
        }
        assert!(Instant::now() < deadline, "the paused write never landed");
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test]
async fn a_renewal_whose_answer_was_lost_is_recognised_as_this_nodes_own() {
    let cluster = NatsCluster::single();
    let js = context(&cluster).await;
    let mut a = lease(&js, "a").await;
    assert_eq!(epoch_of(&a.acquire().await.unwrap()), 1);
    // The server is paused: the renewal gets no answer but lands once the
    // server runs again.
    cluster.servers[0].pause();
    let lost = a.renew().await;
    cluster.servers[0].resume();
    assert!(lost.is_err(), "{lost:?}");
    wait_for_revision_after(&js, 1).await;
    // The next renewal is refused at the revision a knew; a finds its own
    // renewal there and keeps the lease.
    assert_eq!(a.renew().await.unwrap(), Renewal::Renewed);
    assert_eq!(a.renew().await.unwrap(), Renewal::Renewed);
    assert_eq!(a.epoch(), Some(1));
}
