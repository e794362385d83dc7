//! The replicated stream: created or checked at start, extended one batch
//! at a time by compare-and-append.
//!
//! Why: the stream is the history every node agrees on. A publish carries
//! `Nats-Expected-Last-Sequence` (only a writer that has seen the whole
//! stream can extend it: a former owner is fenced with error 10071) and a
//! `Nats-Msg-Id` derived from the batch (a re-publish after a lost
//! acknowledgment is not appended twice).
//!
//! Promises:
//! - `publish` waits at most three request timeouts (sending, the
//!   acknowledgment, and a read-back on the rare paths below) and says what
//!   happened
//!   as a `PublishOutcome`: `Appended` and `Duplicate` mean the batch is in
//!   the stream (a majority of its replicas) at `stream_seq`; `Fenced`
//!   means another writer extended the stream; `Indeterminate` means the
//!   batch may or may not be in it: re-publish the same batch with the same
//!   expectation until the answer is definite; `Unavailable` and `Refused`
//!   mean it was not appended.
//! - A 10071 is resolved by reading the message at the expected position:
//!   if it is this very batch (same id, same bytes), the outcome is
//!   `Duplicate`, whatever the de-duplication window and whether the server
//!   checks ids or expectations first (a single 2.15 server checks the
//!   expectation first, a cluster the id: tests/nats_protocol.rs). A
//!   duplicate the server reports is read back as well: an id used for
//!   other bytes is `Refused`, never taken for this batch.
//! - `open` refuses a stream whose configuration could lose or reorder
//!   acknowledged messages (limits that discard, another subject, another
//!   replica count, memory storage, asynchronous persistence).

use async_nats::jetstream::{self, context, stream};
use bytes::Bytes;

use super::batch::{Batch, EncodeError};
use super::stream_config::{check_config, wanted_config};
use super::{retry_for, OPEN_TIMEOUT_MS};

/// How long JetStream remembers a message id: a re-publish within it is
/// recognised by id alone (after it, by reading the message back).
pub const DUPLICATE_WINDOW_SECONDS: u64 = 120;

/// The one subject of stream `stream_name`.
pub fn subject(stream_name: &str) -> String {
    format!("{stream_name}.batches")
}

/// The stream's name and copies (`--stream`, `--stream-replicas`).
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub stream_name: String,
    pub replicas: usize,
}

/// What happened to one publish.
#[derive(Debug)]
pub enum PublishOutcome {
    /// Appended now, at `stream_seq` (= the expected last sequence + 1).
    Appended { stream_seq: u64 },
    /// Appended by an earlier publish of the same batch, at `stream_seq`.
    Duplicate { stream_seq: u64 },
    /// The stream's last sequence is not the expected one and the message
    /// after it is not this batch: another writer extended the stream.
    Fenced,
    /// No definite answer (timeout, lost connection): the batch may be in
    /// the stream. Re-publish the same batch, same expectation.
    Indeterminate(PublishFailure),
    /// Not appended: no server took it (no responders, stream offline or
    /// out of resources). The same batch may be published again later.
    Unavailable(PublishFailure),
    /// Not appended and publishing it again will not help (too large,
    /// not encodable, refused for another reason).
    Refused(PublishFailure),
}

#[derive(Debug, thiserror::Error)]
pub enum PublishFailure {
    #[error("cannot encode the batch")]
    Encode(#[from] EncodeError),
    #[error("batch of {batch_bytes} bytes exceeds the server's maximum of {max_payload_bytes}")]
    TooLarge {
        batch_bytes: usize,
        max_payload_bytes: usize,
    },
    #[error("publish to stream {stream} failed")]
    Publish {
        stream: String,
        #[source]
        source: context::PublishError,
    },
    #[error("message id {msg_id} names other bytes at stream sequence {stream_seq}")]
    IdReused { msg_id: String, stream_seq: u64 },
    #[error("cannot read stream message {stream_seq} back to check the publish")]
    ReadBack {
        stream_seq: u64,
        #[source]
        source: ReadError,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot look up stream {stream}")]
    Lookup {
        stream: String,
        #[source]
        source: context::GetStreamError,
    },
    #[error("cannot create stream {stream}")]
    Create {
        stream: String,
        #[source]
        source: context::CreateStreamError,
    },
    #[error("stream {stream} exists with {field} = {found}, replication needs {wanted}")]
    Mismatch {
        stream: String,
        field: &'static str,
        found: String,
        wanted: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read stream {stream}")]
    Read {
        stream: String,
        #[source]
        source: stream::RawMessageError,
    },
    #[error("cannot read the state of stream {stream}")]
    Info {
        stream: String,
        #[source]
        source: stream::InfoError,
    },
}

/// The stream, open for appending and reading.
#[derive(Clone)]
pub struct ReplicatedStream {
    jetstream: jetstream::Context,
    stream: stream::Stream,
    name: String,
    subject: String,
}

impl ReplicatedStream {
    /// Creates the stream, or checks that the existing one is configured
    /// as replication needs (another node may have created it). Keeps
    /// trying for `OPEN_TIMEOUT_MS` while NATS does not answer; a stream
    /// configured otherwise is refused at once.
    pub async fn open(
        jetstream: jetstream::Context,
        settings: &StreamSettings,
    ) -> Result<ReplicatedStream, OpenError> {
        let wanted = wanted_config(settings);
        let stream = retry_for(
            OPEN_TIMEOUT_MS,
            || create_or_get(&jetstream, &wanted),
            |error| !matches!(error, OpenError::Mismatch { .. }),
        )
        .await?;
        check_config(&stream.cached_info().config, &wanted)?;
        let name = settings.stream_name.clone();
        Ok(ReplicatedStream {
            jetstream,
            stream,
            subject: subject(&name),
            name,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The one subject the stream holds.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub(crate) fn handle(&self) -> &stream::Stream {
        &self.stream
    }

    /// The stream's last sequence, as its leader reports it (0: empty).
    pub async fn last_seq(&self) -> Result<u64, ReadError> {
        Ok(self.info().await?.state.last_sequence)
    }

    /// The name of the server that leads the stream's replicas, if any.
    pub async fn leader(&self) -> Result<Option<String>, ReadError> {
        Ok(self
            .info()
            .await?
            .cluster
            .and_then(|cluster| cluster.leader))
    }

    async fn info(&self) -> Result<jetstream::stream::Info, ReadError> {
        self.stream
            .get_info()
            .await
            .map_err(|source| ReadError::Info {
                stream: self.name.clone(),
                source,
            })
    }

    /// The message at `stream_seq` with its `Nats-Msg-Id`, read from the
    /// stream's leader; `None` if there is none (yet).
    pub async fn message_at(&self, stream_seq: u64) -> Result<Option<StoredMessage>, ReadError> {
        match self.stream.get_raw_message(stream_seq).await {
            Ok(message) => Ok(Some(StoredMessage {
                stream_seq: message.sequence,
                msg_id: message
                    .headers
                    .get(async_nats::header::NATS_MESSAGE_ID)
                    .map(|id| id.to_string()),
                payload: message.payload,
            })),
            Err(error) if error.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                Ok(None)
            }
            Err(source) => Err(ReadError::Read {
                stream: self.name.clone(),
                source,
            }),
        }
    }

    /// Appends `batch` if the stream's last sequence is `expected_last_seq`.
    pub async fn publish(&self, batch: &Batch, expected_last_seq: u64) -> PublishOutcome {
        let payload = match batch.encode() {
            Ok(bytes) => Bytes::from(bytes),
            Err(error) => return PublishOutcome::Refused(error.into()),
        };
        let max_payload_bytes = self.jetstream.client().server_info().max_payload;
        if payload.len() > max_payload_bytes {
            return PublishOutcome::Refused(PublishFailure::TooLarge {
                batch_bytes: payload.len(),
                max_payload_bytes,
            });
        }
        let msg_id = batch.msg_id();
        let message = jetstream::message::PublishMessage::build()
            .payload(payload.clone())
            .message_id(&msg_id)
            .expected_last_sequence(expected_last_seq);
        let answer = match self
            .jetstream
            .send_publish(self.subject.clone(), message)
            .await
        {
            Ok(ack) => ack.await,
            Err(error) => Err(error),
        };
        match answer {
            Ok(ack) if ack.duplicate => {
                self.confirm_duplicate(&msg_id, &payload, ack.sequence)
                    .await
            }
            Ok(ack) => PublishOutcome::Appended {
                stream_seq: ack.sequence,
            },
            Err(error) if error.kind() == context::PublishErrorKind::WrongLastSequence => {
                self.resolve_wrong_last_sequence(&msg_id, &payload, expected_last_seq)
                    .await
            }
            Err(source) => classify(PublishFailure::Publish {
                stream: self.name.clone(),
                source,
            }),
        }
    }

    /// The server says an earlier message had this id: is it this very
    /// batch? (An id used twice for different bytes would otherwise pass
    /// a new batch off as stored.)
    async fn confirm_duplicate(
        &self,
        msg_id: &str,
        payload: &Bytes,
        stream_seq: u64,
    ) -> PublishOutcome {
        match self.message_at(stream_seq).await {
            Ok(Some(stored)) if stored.payload == *payload => {
                PublishOutcome::Duplicate { stream_seq }
            }
            Ok(_) => PublishOutcome::Refused(PublishFailure::IdReused {
                msg_id: msg_id.to_string(),
                stream_seq,
            }),
            Err(source) => {
                PublishOutcome::Indeterminate(PublishFailure::ReadBack { stream_seq, source })
            }
        }
    }

    /// After a 10071: is the message after `expected_last_seq` this batch
    /// (an earlier publish of it got through) or another writer's?
    async fn resolve_wrong_last_sequence(
        &self,
        msg_id: &str,
        payload: &Bytes,
        expected_last_seq: u64,
    ) -> PublishOutcome {
        let stream_seq = expected_last_seq.saturating_add(1);
        match self.message_at(stream_seq).await {
            Ok(Some(stored))
                if stored.msg_id.as_deref() == Some(msg_id) && stored.payload == *payload =>
            {
                PublishOutcome::Duplicate { stream_seq }
            }
            // The stream is behind the expectation (the caller's mistake or
            // a stream reset) or ahead with another writer's batch: either
            // way this writer must not extend it.
            Ok(_) => PublishOutcome::Fenced,
            Err(source) => {
                PublishOutcome::Indeterminate(PublishFailure::ReadBack { stream_seq, source })
            }
        }
    }
}

/// A message as the stream holds it.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub stream_seq: u64,
    pub msg_id: Option<String>,
    pub payload: Bytes,
}

/// A failed publish other than 10071: definite or not?
fn classify(failure: PublishFailure) -> PublishOutcome {
    use context::PublishErrorKind as Kind;
    let PublishFailure::Publish { source, .. } = &failure else {
        return PublishOutcome::Refused(failure);
    };
    match source.kind() {
        // The request went out (or may have); no answer came back.
        Kind::TimedOut | Kind::BrokenPipe => PublishOutcome::Indeterminate(failure),
        // Nobody listens on the subject, or the client did not send it.
        Kind::StreamNotFound | Kind::MaxAckPending => PublishOutcome::Unavailable(failure),
        Kind::MaxPayloadExceeded | Kind::WrongLastMessageId => PublishOutcome::Refused(failure),
        // A JetStream error answer is a definite refusal (resources, no
        // quorum); anything else (an unreadable answer) is not definite.
        Kind::WrongLastSequence | Kind::Other => {
            let answered = std::error::Error::source(source)
                .is_some_and(|cause| cause.downcast_ref::<jetstream::Error>().is_some());
            if answered {
                PublishOutcome::Unavailable(failure)
            } else {
                PublishOutcome::Indeterminate(failure)
            }
        }
    }
}

/// The stream, created if there is none.
async fn create_or_get(
    jetstream: &jetstream::Context,
    wanted: &stream::Config,
) -> Result<stream::Stream, OpenError> {
    let name = wanted.name.clone();
    match jetstream.get_stream(&name).await {
        Ok(stream) => return Ok(stream),
        Err(error) if is_stream_not_found(&error) => {}
        Err(source) => {
            return Err(OpenError::Lookup {
                stream: name,
                source,
            })
        }
    }
    match jetstream.create_stream(wanted.clone()).await {
        Ok(created) => Ok(created),
        // Another node may have created it meanwhile, with another
        // description: the caller looks again and checks that one.
        Err(source) => Err(OpenError::Create {
            stream: name,
            source,
        }),
    }
}

fn is_stream_not_found(error: &context::GetStreamError) -> bool {
    match error.kind() {
        context::GetStreamErrorKind::JetStream(error) => {
            error.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
        }
        _ => false,
    }
}
