//! Faults around the replicated stream, against real `nats-server`
//! processes: two writers racing for the same position (a split brain
//! below the lease), the loss of the stream's leader, and the loss of the
//! quorum. What must hold: exactly one writer extends the stream at each
//! position, every answer is bounded in time, and a batch re-published
//! until a definite answer is in the stream exactly once.

#[path = "common/nats.rs"]
mod nats;

use std::time::{Duration, Instant};

use flashsale::replication::batch::Batch;
use flashsale::replication::follow::Follower;
use flashsale::replication::stream::{PublishOutcome, ReplicatedStream};
use flashsale::replication::{connect, ConnectSettings, REQUEST_TIMEOUT_MS};
use nats::NatsCluster;

const STREAM: &str = "flashsale";
const RECOVERY_LIMIT: Duration = Duration::from_secs(30);
const FOLLOW_WAIT: Duration = Duration::from_secs(5);

/// A node's own connection and handle on the stream.
async fn open(cluster: &NatsCluster, node: &str, replicas: usize) -> ReplicatedStream {
    let js = connect(&ConnectSettings::new(cluster.urls(), node))
        .await
        .expect("connect");
    nats::open_stream(&js, STREAM, replicas).await
}

fn batch(epoch: u64, batch_number: u64, first_seq: u64) -> Batch {
    Batch {
        epoch,
        batch_number,
        first_seq,
        records: vec![format!("e{epoch} b{batch_number}").into_bytes()],
    }
}

/// Publishes `batch` again while the answer is not definite, as the
/// commit path will; the definite outcome.
async fn publish_until_definite(
    stream: &ReplicatedStream,
    batch: &Batch,
    expected_last_seq: u64,
) -> PublishOutcome {
    let deadline = Instant::now() + RECOVERY_LIMIT;
    loop {
        let outcome = stream.publish(batch, expected_last_seq).await;
        match outcome {
            PublishOutcome::Indeterminate(_) | PublishOutcome::Unavailable(_) => {}
            definite => return definite,
        }
        assert!(Instant::now() < deadline, "no definite answer: {outcome:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The batch is in the stream at `stream_seq`: appended now, or found
/// there from an earlier try whose answer was lost.
fn assert_lands_at(outcome: PublishOutcome, stream_seq: u64) {
    let at = match outcome {
        PublishOutcome::Appended { stream_seq } | PublishOutcome::Duplicate { stream_seq } => {
            Some(stream_seq)
        }
        _ => None,
    };
    assert_eq!(at, Some(stream_seq), "{outcome:?}");
}

/// Every batch of the stream, in order, through a follower.
async fn read_all(stream: &ReplicatedStream) -> Vec<Batch> {
    let last_seq = stream.last_seq().await.unwrap();
    let mut follower = Follower::start(stream, 1).await.unwrap();
    let mut batches = Vec::new();
    for stream_seq in 1..=last_seq {
        let followed = follower.next(FOLLOW_WAIT).await.unwrap().expect("batch");
        assert_eq!(followed.stream_seq, stream_seq);
        batches.push(followed.batch);
    }
    batches
}

async fn two_writers_race(cluster: &NatsCluster, replicas: usize, rounds: u64) {
    let first = open(cluster, "node-a", replicas).await;
    let second = open(cluster, "node-b", replicas).await;
    let mut winners = Vec::new();
    for round in 0..rounds {
        let (a, b) = (batch(1, round, round + 1), batch(2, round, round + 1));
        let (from_a, from_b) = tokio::join!(
            publish_until_definite(&first, &a, round),
            publish_until_definite(&second, &b, round)
        );
        let winner = match (&from_a, &from_b) {
            (PublishOutcome::Appended { stream_seq }, PublishOutcome::Fenced)
            | (PublishOutcome::Duplicate { stream_seq }, PublishOutcome::Fenced) => {
                assert_eq!(*stream_seq, round + 1);
                a
            }
            (PublishOutcome::Fenced, PublishOutcome::Appended { stream_seq })
            | (PublishOutcome::Fenced, PublishOutcome::Duplicate { stream_seq }) => {
                assert_eq!(*stream_seq, round + 1);
                b
            }
            other => panic!("round {round}: not exactly one writer: {other:?}"),
        };
        winners.push(winner);
    }
    assert_eq!(
        read_all(&first).await,
        winners,
        "the stream holds the winners only"
    );
}

#[tokio::test]
async fn two_writers_at_the_same_position_extend_the_stream_exactly_once_each_round() {
    let cluster = NatsCluster::single();
    two_writers_race(&cluster, 1, 20).await;
}

#[tokio::test]
async fn two_writers_on_a_three_server_cluster_extend_it_exactly_once_each_round() {
    let cluster = NatsCluster::three();
    two_writers_race(&cluster, 3, 10).await;
}

#[tokio::test]
async fn after_the_stream_leader_dies_a_republished_batch_lands_exactly_once() {
    let mut cluster = NatsCluster::three();
    let stream = open(&cluster, "owner", 3).await;
    let first = batch(1, 1, 1);
    let outcome = publish_until_definite(&stream, &first, 0).await;
    assert!(
        matches!(outcome, PublishOutcome::Appended { stream_seq: 1 }),
        "{outcome:?}"
    );
    let leader = stream.leader().await.unwrap().expect("a leader");
    let index = cluster
        .servers
        .iter()
        .position(|server| server.name == leader)
        .expect("the leader is one of ours");
    cluster.servers[index].kill9();
    let killed = Instant::now();
    let second = batch(1, 2, 2);
    assert_lands_at(publish_until_definite(&stream, &second, 1).await, 2);
    eprintln!(
        "leader {leader} killed; batch 2 definite after {:?}",
        killed.elapsed()
    );
    let new_leader = stream.leader().await.unwrap().expect("a new leader");
    assert_ne!(new_leader, leader);
    assert_eq!(read_all(&stream).await, vec![first, second]);
}
#[tokio::test]
async fn without_a_quorum_a_publish_ends_in_bounded_time_and_lands_once_after_recovery() {
    let mut cluster = NatsCluster::three();
    let stream = open(&cluster, "owner", 3).await;
    let first = publish_until_definite(&stream, &batch(1, 1, 1), 0).await;
    assert!(
        matches!(first, PublishOutcome::Appended { stream_seq: 1 }),
        "{first:?}"
    );
    // Two of three servers die (if the client was on one of them, it
    // reconnects to the survivor): the stream has no quorum.
    cluster.servers[1].kill9();
    cluster.servers[2].kill9();
    let pending = batch(1, 2, 2);
    let started = Instant::now();
    let outcome = stream.publish(&pending, 1).await;
    let waited = started.elapsed();
    assert!(
        matches!(
            outcome,
            PublishOutcome::Indeterminate(_) | PublishOutcome::Unavailable(_)
        ),
        "{outcome:?}"
    );
    assert!(
        waited < Duration::from_millis(3 * REQUEST_TIMEOUT_MS),
        "{waited:?}"
    );
    eprintln!("without a quorum: {outcome:?} after {waited:?}");
    // One server back is a quorum again (2 of 3).
    cluster.servers[1].restart();
    cluster.servers[1].wait_ready();
    // Re-publish the same batch until the answer is definite.
    let recovering = Instant::now();
    assert_lands_at(publish_until_definite(&stream, &pending, 1).await, 2);
    eprintln!("definite {:?} after the restart", recovering.elapsed());
    assert_eq!(read_all(&stream).await, vec![batch(1, 1, 1), pending]);
}
