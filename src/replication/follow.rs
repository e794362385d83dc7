//! The stream read back in order, as decoded batches: what a standby will
//! apply (with the same apply function as replay) to keep up with the
//! owner.
//!
//! Why an ordered consumer: it delivers the stream's messages in sequence
//! order without acknowledgments, and the client recreates it by itself at
//! the right position when it notices a gap (a lost connection, a server
//! restart). Only messages the stream has acknowledged (a majority of its
//! replicas) are delivered.
//!
//! Promises:
//! - `next` yields the batch at stream sequence `from`, then `from + 1`,
//!   and so on: a missing sequence (the stream never deletes messages)
//!   is an error, never skipped.
//! - A message that does not decode (damage, an unknown format version)
//!   is an error naming its stream sequence; nothing after it is yielded.
//! - `next` waits at most the time it is given.
//! - After an error the follower is done: start a new one at
//!   `next_stream_seq` (after a decode error, that batch is still damaged).

use std::time::Duration;

use async_nats::jetstream::consumer::{self, pull};
use futures_util::StreamExt;

use super::batch::{Batch, DecodeError};
use super::stream::ReplicatedStream;

/// One batch as the stream holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowedBatch {
    pub stream_seq: u64,
    pub msg_id: Option<String>,
    pub batch: Batch,
}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("stream sequence 0 does not exist: a stream starts at 1")]
    StartZero,
    #[error("cannot create a consumer on stream {stream}")]
    Consumer {
        stream: String,
        #[source]
        source: async_nats::jetstream::stream::ConsumerError,
    },
    #[error("cannot start reading stream {stream}")]
    Messages {
        stream: String,
        #[source]
        source: consumer::StreamError,
    },
    #[error("reading stream {stream} failed")]
    Read {
        stream: String,
        #[source]
        source: pull::OrderedError,
    },
    #[error("stream message without sequence information")]
    NoInfo(#[source] async_nats::Error),
    #[error("expected stream sequence {expected}, got {found}")]
    Gap { expected: u64, found: u64 },
    #[error("stream message {stream_seq} is not a valid batch")]
    Decode {
        stream_seq: u64,
        #[source]
        source: DecodeError,
    },
    #[error("the stream's message feed ended")]
    Ended,
}

/// Reads the stream from a given sequence on.
pub struct Follower {
    messages: pull::Ordered,
    stream_name: String,
    next_stream_seq: u64,
}

impl Follower {
    /// Starts reading at stream sequence `from` (1: the beginning).
    pub async fn start(stream: &ReplicatedStream, from: u64) -> Result<Follower, FollowError> {
        if from == 0 {
            return Err(FollowError::StartZero);
        }
        let stream_name = stream.name().to_string();
        let config = pull::OrderedConfig {
            filter_subject: stream.subject().to_string(),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ..Default::default()
        };
        let created = stream.handle().create_consumer(config).await;
        let consumer = created.map_err(|source| FollowError::Consumer {
            stream: stream_name.clone(),
            source,
        })?;
        let messages = consumer
            .messages()
            .await
            .map_err(|source| FollowError::Messages {
                stream: stream_name.clone(),
                source,
            })?;
        Ok(Follower {
            messages,
            stream_name,
            next_stream_seq: from,
        })
    }

    /// The stream sequence the next batch will have.
    pub fn next_stream_seq(&self) -> u64 {
        self.next_stream_seq
    }

    /// The next batch, or `None` if none arrived within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Result<Option<FollowedBatch>, FollowError> {
        let message = match tokio::time::timeout(wait, self.messages.next()).await {
            Err(_elapsed) => return Ok(None),
            Ok(None) => return Err(FollowError::Ended),
            Ok(Some(Err(source))) => {
                return Err(FollowError::Read {
                    stream: self.stream_name.clone(),
                    source,
                })
            }
            Ok(Some(Ok(message))) => message,
        };
        let stream_seq = message.info().map_err(FollowError::NoInfo)?.stream_sequence;
        if stream_seq != self.next_stream_seq {
            return Err(FollowError::Gap {
                expected: self.next_stream_seq,
                found: stream_seq,
            });
        }
        let batch = Batch::decode(&message.payload)
            .map_err(|source| FollowError::Decode { stream_seq, source })?;
        let msg_id = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|id| id.to_string());
        self.next_stream_seq = stream_seq.saturating_add(1);
        Ok(Some(FollowedBatch {
            stream_seq,
            msg_id,
            batch,
        }))
    }
}
