//! The records of the write-ahead log: what happened, with its outcome, so
//! that the log alone tells the whole story of every sale.
//!
//! Recovery replays these records into the engine (it applies recorded
//! outcomes, it never decides again), and the exporter turns them into rows
//! for analysts. The encoding is bincode 2.0.1 with its standard
//! configuration; the format is frozen by a golden file in the tests. A new
//! kind of record is a new enum variant at the end, never a change to an
//! existing one.

use bincode::{Decode, Encode};

use crate::domain::{CheckoutCode, ItemId, SaleId, UserId};

/// One log record. Variant order is part of the on-disk format.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Record {
    Checkout(CheckoutRecord),
    Purchase(PurchaseRecord),
}

/// A checkout attempt that got an answer other than 400, 429 or 503.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct CheckoutRecord {
    /// Milliseconds since the Unix epoch, UTC, when the engine decided.
    pub at_unix_ms: i64,
    /// The sale the item names; for an unknown item, the active sale.
    pub sale_id: u32,
    pub user_id: String,
    /// The item id exactly as the client sent it (at most 64 bytes).
    pub item_id: String,
    /// The user's open cart after the attempt, if there is one.
    pub code: Option<u128>,
    pub outcome: CheckoutOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum CheckoutOutcome {
    /// The item went into the cart; `opened_cart` when this checkout opened
    /// the cart named by the record's code.
    Added {
        opened_cart: bool,
    },
    /// The item was in the cart already: nothing changed.
    AlreadyInCart,
    Rejected(Rejection),
}

/// The contract's 404/409 answers that a checkout or purchase can get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub enum Rejection {
    ItemNotFound,
    SaleNotActive,
    ItemSoldOut,
    SaleSoldOut,
    UserLimitReached,
    CheckoutNotFound,
}

impl Rejection {
    /// The contract's `error` code.
    pub fn code(self) -> &'static str {
        match self {
            Rejection::ItemNotFound => "item_not_found",
            Rejection::SaleNotActive => "sale_not_active",
            Rejection::ItemSoldOut => "item_sold_out",
            Rejection::SaleSoldOut => "sale_sold_out",
            Rejection::UserLimitReached => "user_limit_reached",
            Rejection::CheckoutNotFound => "checkout_not_found",
        }
    }
}

/// A purchase attempt that got an answer other than 400, 429 or 503.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct PurchaseRecord {
    pub at_unix_ms: i64,
    /// The cart's sale; `None` when the code named no cart.
    pub sale_id: Option<u32>,
    /// The cart's owner; `None` when the code named no cart.
    pub user_id: Option<String>,
    pub code: u128,
    pub outcome: PurchaseOutcome,
    /// Every item of the cart with what happened to it (empty unless
    /// `outcome` is `Completed` or `Replayed`).
    pub items: Vec<PurchaseItem>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum PurchaseOutcome {
    /// The purchase was carried out now and closed the cart.
    Completed,
    /// The code's cart was bought before; the stored answer was repeated.
    Replayed,
    Rejected(Rejection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct PurchaseItem {
    pub item_index: u32,
    pub outcome: ItemOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum ItemOutcome {
    Bought,
    SoldOut,
    UserLimit,
}

impl ItemOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemOutcome::Bought => "bought",
            ItemOutcome::SoldOut => "sold_out",
            ItemOutcome::UserLimit => "user_limit",
        }
    }
}

impl Record {
    pub fn at_unix_ms(&self) -> i64 {
        match self {
            Record::Checkout(r) => r.at_unix_ms,
            Record::Purchase(r) => r.at_unix_ms,
        }
    }
}

impl CheckoutRecord {
    pub fn code(&self) -> Option<CheckoutCode> {
        self.code.map(CheckoutCode::from_u128)
    }

    /// The item, when the client's text named one syntactically.
    pub fn parsed_item(&self) -> Option<ItemId> {
        ItemId::parse(&self.item_id).ok()
    }

    pub fn sale(&self) -> Option<SaleId> {
        SaleId::from_number(self.sale_id)
    }

    pub fn user(&self) -> Option<UserId> {
        UserId::parse(&self.user_id).ok()
    }
}

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

/// Why a record could not be appended: the caller answers 503.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the log cannot accept writes: {0}")]
pub struct JournalError(pub String);

/// Where the engine puts its records. The service's implementation appends
/// to the write-ahead log; tests keep records in memory.
///
/// `append` returns the record's sequence number at once; durability is
/// awaited separately by the caller. The engine calls it while holding the
/// lock of the user concerned, so sequence numbers follow decision order
/// for every user.
pub trait Journal: Send + Sync {
    fn append(&self, record: &Record) -> Result<u64, JournalError>;
}

/// Keeps records in memory, numbered from 1: for tests and benchmarks.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    records: parking_lot::Mutex<Vec<Record>>,
}

impl MemoryJournal {
    pub fn records(&self) -> Vec<Record> {
        self.records.lock().clone()
    }
}

impl Journal for MemoryJournal {
    fn append(&self, record: &Record) -> Result<u64, JournalError> {
        let mut records = self.records.lock();
        records.push(record.clone());
        Ok(records.len() as u64)
    }
}

/// The service's journal: records encoded with bincode, appended to the
/// write-ahead log. Durability is awaited by the caller (`service.rs`).
pub struct WalJournal {
    wal: std::sync::Arc<flashsale_wal::Wal>,
}

impl WalJournal {
    pub fn new(wal: std::sync::Arc<flashsale_wal::Wal>) -> WalJournal {
        WalJournal { wal }
    }
}

impl Journal for WalJournal {
    fn append(&self, record: &Record) -> Result<u64, JournalError> {
        let bytes = encode(record).map_err(|error| JournalError(error.to_string()))?;
        self.wal
            .append(&bytes)
            .map_err(|error| JournalError(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
