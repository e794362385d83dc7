//! The three JetStream rules replication is built on, checked against real
//! `nats-server` processes with the official client (not through our own
//! code, so that a change of NATS behaviour shows here first):
//! - an append with a stale `Nats-Expected-Last-Sequence` is refused with
//!   error 10071 (this fences a former owner);
//! - a retry with the same `Nats-Msg-Id` is a duplicate that reports the
//!   original sequence (a re-publish after a lost acknowledgment is not
//!   appended twice). A retry whose `Nats-Expected-Last-Sequence` is stale
//!   by then is a duplicate on a cluster but refused with 10071 by a single
//!   server (2.15.1): the stream layer resolves a 10071 by reading the
//!   message at the expected position and comparing ids, so it depends on
//!   neither;
//! - a key-value update at a stale revision is refused (the lease).

#[path = "common/nats.rs"]
mod nats;

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, kv, stream, ErrorCode};
use bytes::Bytes;
use nats::NatsCluster;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const SUBJECT: &str = "protocol.batches";

async fn context(cluster: &NatsCluster) -> jetstream::Context {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(REQUEST_TIMEOUT)
        .request_timeout(Some(REQUEST_TIMEOUT))
        .connect(cluster.urls())
        .await
        .expect("connect to nats-server");
    jetstream::ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .build(client)
}

async fn create_stream(js: &jetstream::Context, replicas: usize) {
    js.create_stream(stream::Config {
        name: "protocol".into(),
        subjects: vec![SUBJECT.into()],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .expect("create stream");
    nats::wait_until_stream_listens(js, SUBJECT).await;
}

/// Publishes `payload` with a message id and an expected last sequence;
/// the acknowledgment or the refusal.
async fn publish(
    js: &jetstream::Context,
    msg_id: &str,
    expected_last_seq: u64,
    payload: &'static str,
) -> Result<jetstream::publish::PublishAck, jetstream::context::PublishError> {
    let message = jetstream::message::PublishMessage::build()
        .payload(Bytes::from_static(payload.as_bytes()))
        .message_id(msg_id)
        .expected_last_sequence(expected_last_seq);
    js.send_publish(SUBJECT, message).await?.await
}

/// The error code inside a refused publish.
fn error_code(error: &jetstream::context::PublishError) -> Option<ErrorCode> {
    let source = std::error::Error::source(error)?;
    source
        .downcast_ref::<jetstream::Error>()
        .map(jetstream::Error::error_code)
}

async fn stale_expectation_gets_10071(js: &jetstream::Context) {
    let first = publish(js, "e1-b1", 0, "first")
        .await
        .expect("first append");
    assert_eq!(first.sequence, 1);
    assert!(!first.duplicate);
    // A second writer still believes the stream is empty.
    let error = publish(js, "e2-b1", 0, "stale").await.expect_err("fenced");
    assert_eq!(error.kind(), PublishErrorKind::WrongLastSequence);
    assert_eq!(
        error_code(&error),
        Some(ErrorCode::STREAM_WRONG_LAST_SEQUENCE)
    );
    assert_eq!(ErrorCode::STREAM_WRONG_LAST_SEQUENCE, ErrorCode(10071));
}

/// How a server answers a retry that carries a stale expectation by then.
#[derive(Debug, Clone, Copy, PartialEq)]
enum StaleRetry {
    /// Reported as a duplicate with the original sequence (a cluster).
    Duplicate,
    /// Refused with 10071 before the duplicate check (a single server).
    WrongLastSequence,
}

async fn retry_is_a_duplicate_with_the_original_sequence(
    js: &jetstream::Context,
    stale_retry: StaleRetry,
) {
    let stream = js.get_stream("protocol").await.expect("stream");
    let last_seq = stream.get_info().await.expect("info").state.last_sequence;
    let original = publish(js, "e1-b2", last_seq, "batch 2")
        .await
        .expect("append");
    assert_eq!(original.sequence, last_seq + 1);
    // The acknowledgment was "lost": the same message and id again.
    let plain_retry = jetstream::message::PublishMessage::build()
        .payload(Bytes::from_static(b"batch 2"))
        .message_id("e1-b2");
    let retry = js
        .send_publish(SUBJECT, plain_retry)
        .await
        .expect("send")
        .await
        .expect("a retry is answered");
    assert!(retry.duplicate, "{retry:?}");
    assert_eq!(retry.sequence, original.sequence);
    // Again with the expectation it had, which is stale by now.
    match (publish(js, "e1-b2", last_seq, "batch 2").await, stale_retry) {
        (Ok(ack), StaleRetry::Duplicate) => {
            assert!(ack.duplicate, "{ack:?}");
            assert_eq!(ack.sequence, original.sequence);
        }
        (Err(error), StaleRetry::WrongLastSequence) => {
            assert_eq!(
                error_code(&error),
                Some(ErrorCode::STREAM_WRONG_LAST_SEQUENCE)
            );
        }
        (answer, expected) => panic!("expected {expected:?}, got {answer:?}"),
    }
    let info = stream.get_info().await.expect("info");
    assert_eq!(
        info.state.last_sequence, original.sequence,
        "not appended twice"
    );
    assert_eq!(info.state.messages, original.sequence);
}

async fn stale_revision_is_refused(js: &jetstream::Context, replicas: usize) {
    let store = js
        .create_key_value(kv::Config {
            bucket: "protocol-lease".into(),
            history: 1,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        })
        .await
        .expect("create bucket");
    nats::wait_until_stream_listens(js, "$KV.protocol-lease.owner").await;
    let first = store
        .create("owner", Bytes::from_static(b"a"))
        .await
        .expect("create key");
    let second = store
        .update("owner", Bytes::from_static(b"a renews"), first)
        .await
        .expect("update at the current revision");
    assert!(second > first);
    let error = store
        .update("owner", Bytes::from_static(b"b takes over"), first)
        .await
        .expect_err("an update at a stale revision is refused");
    assert_eq!(error.kind(), kv::UpdateErrorKind::WrongLastRevision);
    let error = store
        .create("owner", Bytes::from_static(b"c"))
        .await
        .expect_err("a create of a present key is refused");
    assert_eq!(error.kind(), kv::CreateErrorKind::AlreadyExists);
    let entry = store.entry("owner").await.expect("read").expect("present");
    assert_eq!(entry.value, Bytes::from_static(b"a renews"));
    assert_eq!(entry.revision, second);
}

#[tokio::test]
async fn a_stale_expected_last_sequence_is_refused_with_10071() {
    let cluster = NatsCluster::single();
    let js = context(&cluster).await;
    create_stream(&js, 1).await;
    stale_expectation_gets_10071(&js).await;
}

#[tokio::test]
async fn a_retry_with_the_same_msg_id_is_a_duplicate_with_the_original_sequence() {
    let cluster = NatsCluster::single();
    let js = context(&cluster).await;
    create_stream(&js, 1).await;
    stale_expectation_gets_10071(&js).await;
    retry_is_a_duplicate_with_the_original_sequence(&js, StaleRetry::WrongLastSequence).await;
}

#[tokio::test]
async fn a_key_value_update_at_a_stale_revision_is_refused() {
    let cluster = NatsCluster::single();
    let js = context(&cluster).await;
    stale_revision_is_refused(&js, 1).await;
}

#[tokio::test]
async fn the_three_rules_hold_on_a_three_server_cluster_with_three_replicas() {
    let cluster = NatsCluster::three();
    let js = context(&cluster).await;
    create_stream(&js, 3).await;
    let stream = js.get_stream("protocol").await.expect("stream");
    let replicas = stream.get_info().await.expect("info").config.num_replicas;
    assert_eq!(replicas, 3);
    stale_expectation_gets_10071(&js).await;
    retry_is_a_duplicate_with_the_original_sequence(&js, StaleRetry::Duplicate).await;
    stale_revision_is_refused(&js, 3).await;
}
