//! The exporter's source over the write-ahead log.
//!
//! It keeps one `WalReader` between batches, so following the log costs one
//! sequential read; the reader is re-opened only when the exporter asks for
//! a different position (after a reconnection re-read the cursor) or after
//! an error.
//!
//! What it promises on top of the log's own promises (in order, no gaps,
//! nothing above the durable seq): every payload is decoded as a journal
//! `Record`; a payload that does not decode is an error naming its sequence
//! number, never skipped.

use std::sync::Arc;

use flashsale_wal::{Wal, WalError, WalReader};

use crate::engine::Record;
use crate::export::source::{RecordSource, SourceError};
use crate::journal;

/// Reads journal records from a shared log.
pub struct WalSource {
    wal: Arc<Wal>,
    reader: Option<WalReader>,
}

impl WalSource {
    pub fn new(wal: Arc<Wal>) -> WalSource {
        WalSource { wal, reader: None }
    }

    /// The reader positioned at `next_seq`, opened if needed.
    fn reader_at(&mut self, next_seq: u64) -> Result<&mut WalReader, SourceError> {
        let positioned = matches!(&self.reader, Some(reader) if reader.next_seq() == next_seq);
        if !positioned {
            self.reader = None;
            self.reader = match self.wal.read_from(next_seq) {
                Err(WalError::NotRetained { first_seq, .. }) => {
                    return Err(SourceError::NotRetained {
                        cursor: next_seq.saturating_sub(1),
                        first_seq,
                    })
                }
                opened => Some(opened?),
            };
        }
        match self.reader.as_mut() {
            Some(reader) => Ok(reader),
            None => unreachable!("the reader was just opened"),
        }
    }

    fn read_into(
        &mut self,
        after_seq: u64,
        records_max: usize,
        batch: &mut Vec<(u64, Record)>,
    ) -> Result<(), SourceError> {
        let reader = self.reader_at(after_seq + 1)?;
        while batch.len() < records_max {
            let Some((seq, payload)) = reader.next_record()? else {
                break;
            };
            let record =
                journal::decode(payload).map_err(|source| SourceError::Decode { seq, source })?;
            batch.push((seq, record));
        }
        Ok(())
    }
}

impl From<WalError> for SourceError {
    fn from(error: WalError) -> SourceError {
        SourceError::Read(Box::new(error))
    }
}

impl RecordSource for WalSource {
    fn read_batch(
        &mut self,
        after_seq: u64,
        records_max: usize,
    ) -> Result<Vec<(u64, Record)>, SourceError> {
        let mut batch = Vec::with_capacity(records_max.min(4096));
        let result = self.read_into(after_seq, records_max, &mut batch);
        if result.is_err() {
            // A reader that failed is not trusted again: reopen next time.
            self.reader = None;
        }
        result.map(|()| batch)
    }

    fn durable_seq(&self) -> u64 {
        self.wal.durable_seq()
    }

    fn log_id(&self) -> u128 {
        self.wal.log_id()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::source::unknown_code_purchase as record;
    use flashsale_wal::WalConfig;

    #[test]
    fn reads_decoded_records_in_order_and_repositions() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(WalConfig::new(dir.path())).unwrap());
        for code in 1..=10u128 {
            let seq = wal
                .append(&journal::encode(&record(code)).unwrap())
                .unwrap();
            wal.wait_durable(seq).unwrap();
        }
        let mut source = WalSource::new(Arc::clone(&wal));
        assert_eq!(source.durable_seq(), 10);
        let first = source.read_batch(0, 4).unwrap();
        let seqs: Vec<u64> = first.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
        assert_eq!(first[3].1, record(4));
        let next = source.read_batch(4, 100).unwrap();
        assert_eq!(next.len(), 6);
        // Asking again from an earlier cursor re-opens the reader.
        let again = source.read_batch(2, 2).unwrap();
        assert_eq!(again[0], (3, record(3)));
        assert!(source.read_batch(10, 5).unwrap().is_empty());
        wal.close();
    }

    #[test]
    fn an_undecodable_payload_is_an_error_naming_its_seq() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(WalConfig::new(dir.path())).unwrap());
        let seq = wal.append(&[0xff; 8]).unwrap();
        wal.wait_durable(seq).unwrap();
        let mut source = WalSource::new(Arc::clone(&wal));
        assert!(matches!(
            source.read_batch(0, 10),
            Err(SourceError::Decode { seq: 1, .. })
        ));
        wal.close();
    }
}
