//! Owning the writes: the takeover (catch up with the stream, publish
//! what the local log holds beyond it, append the takeover record with
//! compare-and-append) and then the publishing of every durable batch of
//! the log, in order, each with the stream's last sequence as expected.
//!
//! Promises: the gate says `Owner` only once the takeover record is in
//! the stream, so nothing is answered before this node has applied the
//! whole stream; the replicated sequence moves only on an acknowledged
//! (or proven duplicate) publish; a fence ends ownership for good.

use std::time::{Duration, Instant};

use flashsale_wal::WalReader;
use tokio::sync::watch;

use super::batch::Batch;
use super::gate::Role;
use super::lease::Renewal;
use super::node::{sleep_or_stop, Node, NodeError};
use super::stream::PublishOutcome;
use crate::engine::{Record, TakeoverRecord};

/// Most records in one published batch.
const BATCH_RECORDS_MAX: usize = 4096;
/// Most record bytes in one published batch (NATS refuses messages over
/// its `max_payload`, 1 MiB by default).
const BATCH_BYTES_MAX: usize = 512 * 1024;
/// Pause before publishing again after the stream was unavailable.
const UNAVAILABLE_RETRY_PAUSE: Duration = Duration::from_millis(250);
/// Pause before publishing again after an indeterminate answer.
const INDETERMINATE_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// What became of a batch after every retry.
enum Published {
    At(u64),
    Fenced,
    Stopped,
}

impl Node {
    /// Takes over at `epoch`: `true` once this node owns the writes,
    /// `false` if the server stopped first. Another writer's batch slipped
    /// in meanwhile is applied and the takeover tried again.
    pub(super) async fn take_over(
        &mut self,
        epoch: u64,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<bool, NodeError> {
        self.parts.gate.set_epoch(epoch);
        self.parts.gate.set_role(Role::TakingOver);
        let started = Instant::now();
        loop {
            if *stopped.borrow() {
                return Ok(false);
            }
            let last = match self.stream.last_seq().await {
                Ok(last) => last,
                Err(error) => {
                    tracing::warn!(reason = %crate::error_chain(&error), "cannot read the stream's end");
                    sleep_or_stop(UNAVAILABLE_RETRY_PAUSE, stopped).await;
                    continue;
                }
            };
            while self.applier.stream_seq() < last && !*stopped.borrow() {
                self.follow_for(Duration::from_secs(1), stopped).await?;
            }
            if self.applier.stream_seq() < last {
                return Ok(false);
            }
            // The local log may hold records the stream lacks: history from
            // before replication, or this node's own unpublished tail.
            if !self.publish_local_tail(epoch, stopped).await? {
                continue;
            }
            if *stopped.borrow() {
                return Ok(false);
            }
            match self.publish_takeover(epoch, stopped).await? {
                Published::At(_) => break,
                Published::Fenced => continue,
                Published::Stopped => return Ok(false),
            }
        }
        self.follower = None;
        self.parts.gate.set_replicated(self.applier.log_seq());
        self.parts.gate.set_role(Role::Owner);
        tracing::info!(
            epoch,
            takeover_ms = started.elapsed().as_millis() as u64,
            log_seq = self.applier.log_seq(),
            "this node owns the writes"
        );
        Ok(true)
    }

    /// Publishes the local log's records after the stream's last one, if
    /// any; `false` if fenced (another writer moved the stream).
    async fn publish_local_tail(
        &mut self,
        epoch: u64,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<bool, NodeError> {
        let mut reader = self.reader_after_stream()?;
        while let Some(batch) = self.next_batch(&mut reader, epoch)? {
            match self.publish(&batch, stopped).await? {
                Published::At(stream_seq) => self.applier.published(stream_seq, batch.last_seq()),
                Published::Fenced => return Ok(false),
                Published::Stopped => return Ok(true),
            }
        }
        Ok(true)
    }

    async fn publish_takeover(
        &mut self,
        epoch: u64,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<Published, NodeError> {
        let seq = self.applier.log_seq() + 1;
        let record = Record::Takeover(TakeoverRecord {
            at_unix_ms: chrono::Utc::now().timestamp_millis(),
            epoch,
            node_id: self.node_id.clone(),
        });
        let bytes = crate::journal::encode(&record).map_err(NodeError::EncodeTakeover)?;
        let batch = Batch {
            epoch,
            batch_number: self.take_batch_number(),
            first_seq: seq,
            records: vec![bytes],
        };
        let published = self.publish(&batch, stopped).await?;
        if let Published::At(stream_seq) = published {
            self.applier
                .append_and_apply(seq, &batch.records[0], stream_seq)?;
            self.applier.published(stream_seq, seq);
        }
        Ok(published)
    }

    /// Publishes every durable batch of the log, in order, until fenced
    /// (`Ok`) or the server stops.
    pub(super) async fn own(
        &mut self,
        epoch: u64,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<(), NodeError> {
        let mut reader = self.reader_after_stream()?;
        let renew_every = self.lease_poll;
        let mut renew_at = Instant::now() + renew_every;
        loop {
            if *stopped.borrow() {
                return Ok(());
            }
            if Instant::now() >= renew_at {
                self.renew().await;
                renew_at = Instant::now() + renew_every;
            }
            let next_seq = self.applier.log_seq() + 1;
            let durable = self.parts.wal.wait_end_durable_async(next_seq);
            if let Ok(Err(_)) = tokio::time::timeout(renew_every, durable).await {
                // The local log failed: the service refuses writes; nothing
                // new will become durable.
                sleep_or_stop(UNAVAILABLE_RETRY_PAUSE, stopped).await;
                continue;
            }
            while let Some(batch) = self.next_batch(&mut reader, epoch)? {
                match self.publish(&batch, stopped).await? {
                    Published::At(stream_seq) => {
                        self.applier.published(stream_seq, batch.last_seq());
                        self.parts.gate.set_replicated(batch.last_seq());
                    }
                    Published::Fenced => {
                        tracing::error!(epoch, "another node took over the writes: this node is fenced and refuses everything until a restart");
                        self.parts.gate.set_role(Role::Fenced);
                        return Ok(());
                    }
                    Published::Stopped => return Ok(()),
                }
            }
        }
    }

    async fn renew(&mut self) {
        match self.lease.renew().await {
            Ok(Renewal::Renewed) => {}
            Ok(Renewal::Lost) => tracing::warn!(
                "the lease was taken by another node; the stream will refuse this node's next batch"
            ),
            Err(error) => {
                tracing::warn!(reason = %crate::error_chain(&error), "cannot renew the lease")
            }
        }
    }

    /// A reader of the local log from the first record the stream lacks.
    fn reader_after_stream(&self) -> Result<WalReader, NodeError> {
        let seq = self.applier.log_seq() + 1;
        self.parts
            .wal
            .read_from(seq)
            .map_err(|source| NodeError::ReadLog { seq, source })
    }

    /// The next batch of durable records, capped in count and bytes.
    fn next_batch(
        &mut self,
        reader: &mut WalReader,
        epoch: u64,
    ) -> Result<Option<Batch>, NodeError> {
        let first_seq = reader.next_seq();
        let mut records = Vec::new();
        let mut bytes_total = 0;
        while records.len() < BATCH_RECORDS_MAX && bytes_total < BATCH_BYTES_MAX {
            let seq = reader.next_seq();
            let next = reader
                .next_record()
                .map_err(|source| NodeError::ReadLog { seq, source })?;
            let Some((_, bytes)) = next else { break };
            bytes_total += bytes.len();
            records.push(bytes.to_vec());
        }
        if records.is_empty() {
            return Ok(None);
        }
        Ok(Some(Batch {
            epoch,
            batch_number: self.take_batch_number(),
            first_seq,
            records,
        }))
    }

    /// A batch number never used before in this node's epoch: with the
    /// epoch it is the message id, which must name one content only.
    fn take_batch_number(&mut self) -> u64 {
        let number = self.next_batch_number;
        self.next_batch_number += 1;
        number
    }

    /// Publishes `batch` after the stream's last known batch, again and
    /// again while the answer is not definite.
    async fn publish(
        &mut self,
        batch: &Batch,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<Published, NodeError> {
        let gate = &self.parts.gate;
        loop {
            match self.stream.publish(batch, self.applier.stream_seq()).await {
                PublishOutcome::Appended { stream_seq }
                | PublishOutcome::Duplicate { stream_seq } => {
                    gate.set_problem(None);
                    return Ok(Published::At(stream_seq));
                }
                PublishOutcome::Fenced => return Ok(Published::Fenced),
                PublishOutcome::Refused(cause) => return Err(NodeError::Refused(cause)),
                PublishOutcome::Indeterminate(cause) => {
                    tracing::warn!(reason = %crate::error_chain(&cause), "no definite answer to a publish; publishing the same batch again");
                    sleep_or_stop(INDETERMINATE_RETRY_PAUSE, stopped).await;
                }
                PublishOutcome::Unavailable(cause) => {
                    let reason = crate::error_chain(&cause);
                    tracing::warn!(%reason, "the stream did not take a batch; trying again");
                    gate.set_problem(Some(reason));
                    sleep_or_stop(UNAVAILABLE_RETRY_PAUSE, stopped).await;
                }
            }
            if *stopped.borrow() {
                return Ok(Published::Stopped);
            }
        }
    }
}
