//! The log's door for the rest of the service: engine records as bytes
//! (bincode 2.0.1, standard configuration, frozen by the golden file
//! `tests/golden/journal_records.hex`) and `WalJournal`, through which the
//! engine appends, the service waits for durability and recovery reads the
//! log back. Nothing else above the log crate touches `flashsale_wal::Wal`
//! for records.

use std::sync::Arc;

use flashsale_wal::{Wal, WalError};

use crate::engine::{Journal, JournalError, Record};
use crate::replication::gate::CommitGate;

/// Largest encoded record we accept when decoding (a cart has at most
/// `user_limit` items, so real records are a few hundred bytes).
pub const RECORD_BYTES_MAX: usize = 64 * 1024;

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<RECORD_BYTES_MAX>()
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode log record: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("cannot decode log record: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("log record has {0} trailing bytes after a valid record")]
    TrailingBytes(usize),
}

pub fn encode(record: &Record) -> Result<Vec<u8>, CodecError> {
    Ok(bincode::encode_to_vec(record, bincode_config())?)
}

pub fn decode(bytes: &[u8]) -> Result<Record, CodecError> {
    let (record, used) = bincode::decode_from_slice(bytes, bincode_config())?;
    if used != bytes.len() {
        return Err(CodecError::TrailingBytes(bytes.len() - used));
    }
    Ok(record)
}

/// The fuzz target `decode_record`'s body, replayed on its committed corpus
/// by `tests/fuzz_corpus_records.rs`: decoding any bytes never panics, and
/// a record that decodes encodes to bytes that decode to the same record.
pub fn fuzz_decode_record(bytes: &[u8]) {
    let Ok(record) = decode(bytes) else {
        return;
    };
    let encoded = encode(&record).expect("a decoded record encodes");
    let again = decode(&encoded).expect("an encoded record decodes");
    assert_eq!(again, record, "a record survives a round trip");
}

/// A log record that could not be read back: the start refuses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("cannot read the log")]
    Log(#[source] WalError),
    #[error("log record {seq} cannot be decoded")]
    Decode {
        seq: u64,
        #[source]
        source: CodecError,
    },
}

/// The service's journal: records encoded with bincode, appended to the
/// write-ahead log, waited for, and read back at start.
pub struct WalJournal {
    wal: Arc<Wal>,
    /// With replication on: a record counts as durable once it is also in
    /// the replicated stream.
    gate: Option<Arc<CommitGate>>,
}

impl WalJournal {
    pub fn new(wal: Arc<Wal>) -> WalJournal {
        WalJournal { wal, gate: None }
    }

    /// The same journal, whose records are durable only once `gate` says
    /// they are in the replicated stream as well.
    pub fn with_gate(wal: Arc<Wal>, gate: Option<Arc<CommitGate>>) -> WalJournal {
        WalJournal { wal, gate }
    }

    /// Replication's gate, when replication is on.
    pub fn gate(&self) -> Option<&Arc<CommitGate>> {
        self.gate.as_ref()
    }

    /// Completes once every record up to `seq` is durable; fails once the
    /// log has failed (nothing is promised then).
    pub async fn wait_durable(&self, seq: u64) -> Result<(), WalError> {
        self.wal.wait_durable_async(seq).await
    }

    /// Every record from the first retained one, decoded, in log order.
    pub fn read_all(
        &self,
    ) -> Result<impl Iterator<Item = Result<(u64, Record), ReadError>> + '_, ReadError> {
        self.read_after(self.wal.first_seq().saturating_sub(1))
    }

    /// Every record after `after_seq` (which must be at or after the
    /// log's start minus one), decoded, in log order, up to the durable end.
    pub fn read_after(
        &self,
        after_seq: u64,
    ) -> Result<impl Iterator<Item = Result<(u64, Record), ReadError>> + '_, ReadError> {
        let reader = self
            .wal
            .read_from(after_seq.saturating_add(1))
            .map_err(ReadError::Log)?;
        Ok(reader.map(|item| {
            let item = item.map_err(ReadError::Log)?;
            let seq = item.seq;
            let record =
                decode(&item.payload).map_err(|source| ReadError::Decode { seq, source })?;
            Ok((seq, record))
        }))
    }

    /// The log's first record (its start): records before it were deleted.
    pub fn first_seq(&self) -> u64 {
        self.wal.first_seq()
    }

    /// The log's identity (created with the log, kept in it): the export
    /// cursor carries it, `/health` shows it.
    pub fn log_id(&self) -> u128 {
        self.wal.log_id()
    }

    /// Highest sequence number durable in the local log: what a start
    /// from this data directory replays, and what snapshots cover.
    pub fn durable_seq(&self) -> u64 {
        self.wal.durable_seq()
    }

    /// Highest sequence number committed: durable in the local log and,
    /// with replication on, in the stream as well. What the engine may
    /// report as sold for good.
    pub fn committed_seq(&self) -> u64 {
        let local = self.wal.durable_seq();
        match &self.gate {
            Some(gate) => local.min(gate.replicated_seq()),
            None => local,
        }
    }

    /// Highest sequence number assigned.
    pub fn last_seq(&self) -> u64 {
        self.wal.last_seq()
    }

    /// Why the log refuses writes, once a write or fsync has failed.
    pub fn failure(&self) -> Option<String> {
        self.wal.failure()
    }

    /// Makes everything appended durable and stops the writer.
    pub fn close(&self) {
        self.wal.close();
    }
}

impl Journal for WalJournal {
    fn append(&self, record: &Record) -> Result<u64, JournalError> {
        let bytes = encode(record).map_err(JournalError::new)?;
        self.wal.append(&bytes).map_err(JournalError::new)
    }

    fn durable_seq(&self) -> u64 {
        self.committed_seq()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{
        CheckoutOutcome, CheckoutRecord, ForeignCodeRecord, ItemOutcome, PurchaseItem,
        PurchaseOutcome, PurchaseRecord, Rejection, SaleOpenedRecord, TakeoverRecord,
    };

    fn samples() -> Vec<Record> {
        vec![
            Record::Checkout(CheckoutRecord {
                at_unix_ms: 1_795_291_200_123,
                sale_id: 2026112120,
                user_id: "alice".into(),
                item_id: "2026112120-42".into(),
                code: Some(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
                outcome: CheckoutOutcome::Added { opened_cart: true },
            }),
            Record::Checkout(CheckoutRecord {
                at_unix_ms: 1_795_291_200_124,
                sale_id: 2026112120,
                user_id: "bob".into(),
                item_id: "2026112120-99999".into(),
                code: None,
                outcome: CheckoutOutcome::Rejected(Rejection::ItemNotFound),
            }),
            Record::Purchase(PurchaseRecord {
                at_unix_ms: 1_795_291_200_200,
                sale_id: Some(2026112120),
                user_id: Some("alice".into()),
                code: 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
                outcome: PurchaseOutcome::Completed,
                items: vec![
                    PurchaseItem {
                        item_index: 42,
                        outcome: ItemOutcome::Bought,
                    },
                    PurchaseItem {
                        item_index: 7,
                        outcome: ItemOutcome::SoldOut,
                    },
                    PurchaseItem {
                        item_index: 8,
                        outcome: ItemOutcome::UserLimit,
                    },
                ],
            }),
            Record::Purchase(PurchaseRecord {
                at_unix_ms: 1_795_291_200_300,
                sale_id: None,
                user_id: None,
                code: 5,
                outcome: PurchaseOutcome::Rejected(Rejection::CheckoutNotFound),
                items: vec![],
            }),
            Record::SaleOpened(SaleOpenedRecord {
                at_unix_ms: 1_795_291_200_000,
                sale_id: 2026112120,
                items_per_sale: 10_000,
                user_limit: 10,
            }),
            Record::ForeignCode(ForeignCodeRecord {
                at_unix_ms: 1_795_291_200_400,
                code: "not-one-of-ours".into(),
            }),
            Record::Takeover(TakeoverRecord {
                at_unix_ms: 1_795_291_200_500,
                epoch: 7,
                node_id: "node-b".into(),
            }),
        ]
    }

    #[test]
    fn records_round_trip() {
        for record in samples() {
            let bytes = encode(&record).unwrap();
            assert_eq!(decode(&bytes).unwrap(), record);
        }
    }

    /// The bytes of these records are the log's format: if this test fails,
    /// old logs would no longer replay. Add a variant instead of changing one.
    #[test]
    fn record_encoding_matches_golden_bytes() {
        let encoded: Vec<String> = samples()
            .iter()
            .map(|r| {
                encode(r)
                    .unwrap()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            })
            .collect();
        let golden = include_str!("../tests/golden/journal_records.hex");
        let golden: Vec<&str> = golden.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(encoded, golden);
    }

    #[test]
    fn decode_rejects_trailing_and_truncated_bytes() {
        let mut bytes = encode(&samples()[0]).unwrap();
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        bytes.push(0);
        assert!(matches!(decode(&bytes), Err(CodecError::TrailingBytes(1))));
        assert!(decode(&[0xff; 8]).is_err());
    }
}
