//! A standby's apply: each followed batch's records go to the local log
//! (under the same sequence numbers) and through the engine's replay
//! `apply`, the same function a start uses. Records the local log already
//! holds are compared byte for byte instead: the stream's history wins,
//! and a local log that disagrees with it stops the node (a former owner
//! with records the stream never took needs its log cut back, which the
//! log crate cannot do yet).
//!
//! Promises: the local log and the engine hold exactly the stream's
//! records, in its order, with no gap; a record is in the local log before
//! the engine applies it; any disagreement is an error naming the record.

use std::sync::Arc;

use flashsale_wal::{Wal, WalError, WalReader};

use super::follow::FollowedBatch;
use crate::engine::{Engine, ReplayError};
use crate::journal::{self, CodecError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    #[error("stream message {stream_seq} starts at record {first_seq}, after the local log's end {local_last_seq}: records are missing")]
    Gap {
        stream_seq: u64,
        first_seq: u64,
        local_last_seq: u64,
    },
    #[error("record {seq} of the local log differs from the stream's (stream message {stream_seq}): this node's log holds records the stream never took; move its data directory aside to rejoin")]
    Diverged { seq: u64, stream_seq: u64 },
    #[error("record {seq} of stream message {stream_seq} cannot be decoded")]
    Decode {
        seq: u64,
        stream_seq: u64,
        #[source]
        source: CodecError,
    },
    #[error("the local log refused record {seq}")]
    Log {
        seq: u64,
        #[source]
        source: WalError,
    },
    #[error("the local log gave record {seq} the number {appended}")]
    Misnumbered { seq: u64, appended: u64 },
    #[error("record {seq} does not apply")]
    Replay {
        seq: u64,
        #[source]
        source: ReplayError,
    },
}

/// Applies followed batches to the local log and the engine.
pub struct Applier {
    wal: Arc<Wal>,
    engine: Arc<Engine>,
    /// Stream sequence of the last batch applied or published (0: none).
    stream_seq: u64,
    /// Log sequence number of the last record known to be in the stream.
    log_seq: u64,
    /// Reads the local log where it overlaps the stream.
    verifier: Option<WalReader>,
}

impl Applier {
    pub fn new(wal: Arc<Wal>, engine: Arc<Engine>) -> Applier {
        Applier {
            wal,
            engine,
            stream_seq: 0,
            log_seq: 0,
            verifier: None,
        }
    }

    pub fn stream_seq(&self) -> u64 {
        self.stream_seq
    }

    /// The last record known to be in the stream.
    pub fn log_seq(&self) -> u64 {
        self.log_seq
    }

    /// Batch `stream_seq`, whose last record is `log_seq`, is in the stream
    /// (published by this node).
    pub fn published(&mut self, stream_seq: u64, log_seq: u64) {
        self.stream_seq = stream_seq;
        self.log_seq = log_seq;
    }

    /// Applies one followed batch (the next one of the stream).
    pub fn apply(&mut self, followed: &FollowedBatch) -> Result<(), ApplyError> {
        let batch = &followed.batch;
        let stream_seq = followed.stream_seq;
        let local_last_seq = self.wal.last_seq();
        if batch.first_seq > local_last_seq + 1 {
            return Err(ApplyError::Gap {
                stream_seq,
                first_seq: batch.first_seq,
                local_last_seq,
            });
        }
        for (seq, bytes) in (batch.first_seq..).zip(&batch.records) {
            if seq <= self.wal.last_seq() {
                self.verify(seq, bytes, stream_seq)?;
            } else {
                self.append_and_apply(seq, bytes, stream_seq)?;
            }
        }
        self.stream_seq = stream_seq;
        self.log_seq = batch.last_seq();
        Ok(())
    }

    /// Appends a record the stream holds (a followed one, or this node's
    /// takeover record once the stream took it) and applies it.
    pub fn append_and_apply(
        &mut self,
        seq: u64,
        bytes: &[u8],
        stream_seq: u64,
    ) -> Result<(), ApplyError> {
        let record = journal::decode(bytes).map_err(|source| ApplyError::Decode {
            seq,
            stream_seq,
            source,
        })?;
        let appended = self
            .wal
            .append(bytes)
            .map_err(|source| ApplyError::Log { seq, source })?;
        if appended != seq {
            return Err(ApplyError::Misnumbered { seq, appended });
        }
        self.engine
            .apply(seq, &record)
            .map_err(|source| ApplyError::Replay { seq, source })?;
        Ok(())
    }

    /// The local record `seq` must be the stream's; records the log no
    /// longer retains (deleted after a snapshot) are not compared.
    fn verify(&mut self, seq: u64, bytes: &[u8], stream_seq: u64) -> Result<(), ApplyError> {
        if seq < self.wal.first_seq() {
            return Ok(());
        }
        let reader = match &mut self.verifier {
            Some(reader) if reader.next_seq() == seq => reader,
            _ => {
                let reader = self
                    .wal
                    .read_from(seq)
                    .map_err(|source| ApplyError::Log { seq, source })?;
                self.verifier.insert(reader)
            }
        };
        let local = reader
            .next_record()
            .map_err(|source| ApplyError::Log { seq, source })?;
        match local {
            Some((local_seq, local_bytes)) if local_seq == seq && local_bytes == bytes => Ok(()),
            _ => Err(ApplyError::Diverged { seq, stream_seq }),
        }
    }
}
