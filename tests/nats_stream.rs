//! `replication::stream` and `replication::follow` against real
//! `nats-server` processes: what each publish outcome means, and that a
//! follower reads back exactly what was appended.

#[path = "common/nats.rs"]
mod nats;

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use flashsale::replication::batch::Batch;
use flashsale::replication::follow::{FollowError, Follower};
use flashsale::replication::stream::{
    subject, OpenError, PublishFailure, PublishOutcome, ReplicatedStream, StreamSettings,
};
use flashsale::replication::{connect, ConnectSettings};
use nats::NatsCluster;

const STREAM: &str = "flashsale";
/// The production default: shorter ones time out on a loaded machine
/// (every JetStream write is fsync'd).
const TEST_REQUEST_TIMEOUT_MS: u64 = flashsale::replication::REQUEST_TIMEOUT_MS;
const FOLLOW_WAIT: Duration = Duration::from_secs(5);

async fn context(cluster: &NatsCluster) -> jetstream::Context {
    let mut settings = ConnectSettings::new(cluster.urls(), "test-node");
    settings.request_timeout_ms = TEST_REQUEST_TIMEOUT_MS;
    connect(&settings).await.expect("connect")
}

async fn open(cluster: &NatsCluster, replicas: usize) -> (jetstream::Context, ReplicatedStream) {
    let js = context(cluster).await;
    let stream = nats::open_stream(&js, STREAM, replicas).await;
    (js, stream)
}

fn batch(epoch: u64, batch_number: u64, first_seq: u64) -> Batch {
    Batch {
        epoch,
        batch_number,
        first_seq,
        records: vec![
            format!("record {first_seq} of e{epoch}").into_bytes(),
            b"next".to_vec(),
        ],
    }
}

#[tokio::test]
async fn open_creates_a_stream_that_discards_nothing_and_a_second_open_accepts_it() {
    let cluster = NatsCluster::single();
    let (js, _stream) = open(&cluster, 1).await;
    let _again = open(&cluster, 1).await;
    let info = js
        .get_stream(STREAM)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    let config = info.config;
    assert_eq!(config.subjects, vec![subject(STREAM)]);
    assert_eq!(config.storage, stream::StorageType::File);
    assert_eq!(config.discard, stream::DiscardPolicy::New);
    assert!(config.max_messages <= 0 && config.max_bytes <= 0 && config.max_age.is_zero());
    assert!(config.deny_delete && config.deny_purge);
}

#[tokio::test]
async fn open_refuses_an_existing_stream_with_a_limit_that_would_discard_messages() {
    let cluster = NatsCluster::single();
    let js = context(&cluster).await;
    js.create_stream(stream::Config {
        name: STREAM.into(),
        subjects: vec![subject(STREAM)],
        max_messages: 1000,
        ..Default::default()
    })
    .await
    .unwrap();
    let settings = StreamSettings {
        stream_name: STREAM.into(),
        replicas: 1,
    };
    let error = ReplicatedStream::open(js, &settings)
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(
            &error,
            OpenError::Mismatch {
                field: "max_messages",
                ..
            }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn batches_append_in_order_and_a_stale_writer_is_fenced() {
    let cluster = NatsCluster::single();
    let (_js, stream) = open(&cluster, 1).await;
    let first = stream.publish(&batch(1, 1, 1), 0).await;
    assert!(
        matches!(first, PublishOutcome::Appended { stream_seq: 1 }),
        "{first:?}"
    );
    let second = stream.publish(&batch(1, 2, 3), 1).await;
    assert!(
        matches!(second, PublishOutcome::Appended { stream_seq: 2 }),
        "{second:?}"
    );
    // A former owner that has not seen batch 2 is fenced.
    let zombie = stream.publish(&batch(0, 7, 3), 1).await;
    assert!(matches!(zombie, PublishOutcome::Fenced), "{zombie:?}");
    // So is a writer whose expectation is ahead of the stream.
    let ahead = stream.publish(&batch(2, 1, 9), 5).await;
    assert!(matches!(ahead, PublishOutcome::Fenced), "{ahead:?}");
    assert_eq!(stream.last_seq().await.unwrap(), 2);
}

async fn republish_is_a_duplicate(stream: &ReplicatedStream) {
    let original = batch(3, 1, 1);
    let first = stream.publish(&original, 0).await;
    assert!(
        matches!(first, PublishOutcome::Appended { stream_seq: 1 }),
        "{first:?}"
    );
    let retry = stream.publish(&original, 0).await;
    assert!(
        matches!(retry, PublishOutcome::Duplicate { stream_seq: 1 }),
        "{retry:?}"
    );
    // Another batch under the same id is not passed off as stored.
    let impostor = Batch {
        records: vec![b"other bytes".to_vec()],
        ..original
    };
    let reused = stream.publish(&impostor, 0).await;
    assert!(
        matches!(
            reused,
            PublishOutcome::Fenced | PublishOutcome::Refused(PublishFailure::IdReused { .. })
        ),
        "{reused:?}"
    );
    assert_eq!(stream.last_seq().await.unwrap(), 1);
}

#[tokio::test]
async fn a_republish_of_an_appended_batch_is_a_duplicate_not_a_second_append() {
    let cluster = NatsCluster::single();
    let (_js, stream) = open(&cluster, 1).await;
    republish_is_a_duplicate(&stream).await;
}

#[tokio::test]
async fn a_republish_is_a_duplicate_on_a_three_server_cluster_with_three_replicas() {
    let cluster = NatsCluster::three();
    let (_js, stream) = open(&cluster, 3).await;
    republish_is_a_duplicate(&stream).await;
}

#[tokio::test]
async fn a_republish_after_the_duplicate_window_is_still_a_duplicate() {
    let cluster = NatsCluster::single();
    let js = context(&cluster).await;
    // The same stream, but with a one-second memory for message ids.
    js.create_stream(stream::Config {
        name: STREAM.into(),
        subjects: vec![subject(STREAM)],
        duplicate_window: Duration::from_secs(1),
        ..Default::default()
    })
    .await
    .unwrap();
    let (_js, stream) = open(&cluster, 1).await;
    let original = batch(4, 1, 1);
    let first = stream.publish(&original, 0).await;
    assert!(
        matches!(first, PublishOutcome::Appended { stream_seq: 1 }),
        "{first:?}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let retry = stream.publish(&original, 0).await;
    assert!(
        matches!(retry, PublishOutcome::Duplicate { stream_seq: 1 }),
        "{retry:?}"
    );
    assert_eq!(stream.last_seq().await.unwrap(), 1);
}

#[tokio::test]
async fn an_unanswered_publish_is_indeterminate_and_its_retry_finds_it_appended() {
    let mut cluster = NatsCluster::single();
    let (_js, stream) = open(&cluster, 1).await;
    let original = batch(5, 1, 1);
    cluster.servers[0].pause();
    let started = Instant::now();
    let lost = stream.publish(&original, 0).await;
    let waited = started.elapsed();
    cluster.servers[0].resume();
    assert!(matches!(lost, PublishOutcome::Indeterminate(_)), "{lost:?}");
    assert!(
        waited < Duration::from_millis(3 * TEST_REQUEST_TIMEOUT_MS),
        "{waited:?}"
    );
    // The server got the message after all, once it ran again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stream.last_seq().await.unwrap_or(0) != 1 {
        assert!(Instant::now() < deadline, "the paused publish never landed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let retry = stream.publish(&original, 0).await;
    assert!(
        matches!(retry, PublishOutcome::Duplicate { stream_seq: 1 }),
        "{retry:?}"
    );
    cluster.servers[0].wait_ready();
}

#[tokio::test]
async fn a_publish_with_no_stream_listening_is_unavailable() {
    let cluster = NatsCluster::single();
    let (js, stream) = open(&cluster, 1).await;
    js.delete_stream(STREAM).await.expect("delete stream");
    let outcome = stream.publish(&batch(1, 1, 1), 0).await;
    assert!(
        matches!(outcome, PublishOutcome::Unavailable(_)),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_batch_larger_than_the_servers_max_payload_is_refused_before_sending() {
    let cluster = NatsCluster::single();
    let (_js, stream) = open(&cluster, 1).await;
    let huge = Batch {
        records: vec![vec![7u8; 2 * 1024 * 1024]],
        ..batch(1, 1, 1)
    };
    let outcome = stream.publish(&huge, 0).await;
    assert!(
        matches!(
            outcome,
            PublishOutcome::Refused(PublishFailure::TooLarge { .. })
        ),
        "{outcome:?}"
    );
    assert_eq!(stream.last_seq().await.unwrap(), 0);
}

#[tokio::test]
async fn a_follower_reads_every_batch_in_order_from_the_sequence_it_is_given() {
    let cluster = NatsCluster::single();
    let (_js, stream) = open(&cluster, 1).await;
    let batches: Vec<Batch> = (1..=5).map(|n| batch(1, n, 2 * n - 1)).collect();
    for (index, b) in batches.iter().enumerate() {
        let outcome = stream.publish(b, index as u64).await;
        assert!(
            matches!(outcome, PublishOutcome::Appended { .. }),
            "{outcome:?}"
        );
    }
    for from in [1u64, 3] {
        let mut follower = Follower::start(&stream, from).await.unwrap();
        for stream_seq in from..=5 {
            let followed = follower.next(FOLLOW_WAIT).await.unwrap().expect("a batch");
            assert_eq!(followed.stream_seq, stream_seq);
            assert_eq!(followed.batch, batches[stream_seq as usize - 1]);
            assert_eq!(followed.msg_id, Some(followed.batch.msg_id()));
        }
        let idle = follower.next(Duration::from_millis(200)).await.unwrap();
        assert!(idle.is_none(), "{idle:?}");
    }
    let mut follower = Follower::start(&stream, 6).await.unwrap();
    let later = batch(1, 6, 11);
    assert!(matches!(
        stream.publish(&later, 5).await,
        PublishOutcome::Appended { stream_seq: 6 }
    ));
    let followed = follower
        .next(FOLLOW_WAIT)
        .await
        .unwrap()
        .expect("the new batch");
    assert_eq!((followed.stream_seq, followed.batch), (6, later));
}

#[tokio::test]
async fn a_damaged_message_stops_the_follower_with_its_sequence() {
    let cluster = NatsCluster::single();
    let (js, stream) = open(&cluster, 1).await;
    assert!(matches!(
        stream.publish(&batch(1, 1, 1), 0).await,
        PublishOutcome::Appended { .. }
    ));
    let mut damaged = batch(1, 2, 3).encode().unwrap();
    damaged[20] ^= 0x40;
    js.publish(subject(STREAM), Bytes::from(damaged))
        .await
        .unwrap()
        .await
        .unwrap();
    let mut follower = Follower::start(&stream, 1).await.unwrap();
    let first = follower.next(FOLLOW_WAIT).await.unwrap().expect("batch 1");
    assert_eq!(first.stream_seq, 1);
    let error = follower.next(FOLLOW_WAIT).await.expect_err("refused");
    assert!(
        matches!(error, FollowError::Decode { stream_seq: 2, .. }),
        "{error}"
    );
    assert!(matches!(
        Follower::start(&stream, 0).await,
        Err(FollowError::StartZero)
    ));
}
