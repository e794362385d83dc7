//! Where the exporter reads records: a small trait, so the exporter knows
//! nothing of files, the engine or HTTP, and tests can feed it from memory.
//!
//! What an implementation promises: `read_batch` returns records in
//! sequence order, starting at `after_seq + 1`, never past the durable
//! sequence number (a record a crash could take back must not reach the
//! analysts), and never skips one; a missing record is an error, not an
//! empty answer.

use std::sync::Arc;

use crate::engine::Record;
use crate::journal::CodecError;

/// Why records could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The storage under the source failed (for `WalSource`, a
    /// `flashsale_wal::WalError`).
    #[error("cannot read the log: {0}")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("log record {seq} cannot be decoded: {source}")]
    Decode {
        seq: u64,
        #[source]
        source: CodecError,
    },
    /// The records after the cursor were deleted (retention) before they
    /// were exported: no retry can bring them back.
    #[error(
        "the export cursor is at record {cursor}, but the log starts at record {first_seq}: \
         the records in between were deleted before they were exported"
    )]
    NotRetained { cursor: u64, first_seq: u64 },
}

/// A log of records numbered from 1 without gaps.
pub trait RecordSource: Send {
    /// Up to `records_max` records with sequence numbers above `after_seq`,
    /// in order, none above `durable_seq()`. May block (it reads files): the
    /// exporter calls it on a blocking thread.
    fn read_batch(
        &mut self,
        after_seq: u64,
        records_max: usize,
    ) -> Result<Vec<(u64, Record)>, SourceError>;

    /// The highest durable sequence number, 0 for an empty log. Called from
    /// async code: must be cheap and must not block.
    fn durable_seq(&self) -> u64;

    /// The log's identity, fixed when the log was created: the export
    /// cursor carries it, so one database never mixes two logs.
    fn log_id(&self) -> u128;
}

/// Records in memory, numbered from 1, every one durable: for tests,
/// benchmarks and backfills from an in-memory copy. Clones share the
/// records, so a test can append while an exporter reads. Its log identity
/// is `MemorySource::DEFAULT_LOG_ID` unless `with_log_id` sets another.
#[derive(Debug, Clone)]
pub struct MemorySource {
    records: Arc<parking_lot::Mutex<Vec<Record>>>,
    log_id: u128,
}

impl Default for MemorySource {
    fn default() -> MemorySource {
        MemorySource::new(Vec::new())
    }
}

impl MemorySource {
    /// The identity of a memory log unless `with_log_id` sets another.
    pub const DEFAULT_LOG_ID: u128 = 1;

    pub fn new(records: Vec<Record>) -> MemorySource {
        MemorySource {
            records: Arc::new(parking_lot::Mutex::new(records)),
            log_id: MemorySource::DEFAULT_LOG_ID,
        }
    }

    /// The same records (shared) as the log `log_id`.
    pub fn with_log_id(mut self, log_id: u128) -> MemorySource {
        self.log_id = log_id;
        self
    }

    /// Appends a record; returns its sequence number.
    pub fn push(&self, record: Record) -> u64 {
        let mut records = self.records.lock();
        records.push(record);
        records.len() as u64
    }
}

impl RecordSource for MemorySource {
    fn read_batch(
        &mut self,
        after_seq: u64,
        records_max: usize,
    ) -> Result<Vec<(u64, Record)>, SourceError> {
        let records = self.records.lock();
        let start = usize::try_from(after_seq).unwrap_or(usize::MAX);
        let batch = records
            .iter()
            .enumerate()
            .skip(start)
            .take(records_max)
            .map(|(index, record)| (index as u64 + 1, record.clone()))
            .collect();
        Ok(batch)
    }

    fn durable_seq(&self) -> u64 {
        self.records.lock().len() as u64
    }

    fn log_id(&self) -> u128 {
        self.log_id
    }
}

/// The smallest record, for the tests of the sources and the exporter: a
/// purchase naming an unknown `code`.
#[cfg(test)]
pub(crate) fn unknown_code_purchase(code: u128) -> Record {
    use crate::engine::{PurchaseOutcome, PurchaseRecord, Rejection};
    Record::Purchase(PurchaseRecord {
        at_unix_ms: 1_795_291_200_000,
        sale_id: None,
        user_id: None,
        code,
        outcome: PurchaseOutcome::Rejected(Rejection::CheckoutNotFound),
        items: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(code: u128) -> Record {
        unknown_code_purchase(code)
    }

    #[test]
    fn memory_source_numbers_from_one_and_bounds_batches() {
        let mut source = MemorySource::default();
        for code in 0..5 {
            source.push(record(code));
        }
        assert_eq!(source.durable_seq(), 5);
        let batch = source.read_batch(1, 3).unwrap();
        let seqs: Vec<u64> = batch.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, [2, 3, 4]);
        assert_eq!(batch[0].1, record(1));
        assert!(source.read_batch(5, 10).unwrap().is_empty());
        assert_eq!(source.log_id(), MemorySource::DEFAULT_LOG_ID);
        let other = source.clone().with_log_id(7);
        assert_eq!((other.log_id(), other.durable_seq()), (7, 5));
    }
}
