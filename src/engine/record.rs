//! The engine's outgoing interface: the records that tell each decision,
//! and the `Journal` the engine appends them to.
//!
//! A record tells what happened, with its outcome, so that the log alone
//! tells the whole story of every sale: replay applies recorded outcomes
//! (`replay`), it never decides again, and the exporter turns records into
//! rows for analysts. How records become bytes is the journal's business
//! (`crate::journal`, bincode 2.0.1, frozen by a golden file); the derives
//! here only say that they can. A new kind of record is a new enum variant
//! at the end, never a change to an existing one.

use bincode::{Decode, Encode};

use super::outcome::{PurchaseItem, Rejection};
use crate::domain::{CheckoutCode, ItemId, SaleId, UserId};

/// One log record. Variant order is part of the on-disk format.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub enum Record {
    Checkout(CheckoutRecord),
    Purchase(PurchaseRecord),
    SaleOpened(SaleOpenedRecord),
    ForeignCode(ForeignCodeRecord),
    Takeover(TakeoverRecord),
}

/// A node took over the writes of a replicated log (`--replicate-to`):
/// the first record of its ownership, appended to the stream before it
/// answers anything. Changes no sale.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct TakeoverRecord {
    pub at_unix_ms: i64,
    /// The ownership's epoch (grows with every takeover).
    pub epoch: u64,
    /// The node that took over (`--node-id`).
    pub node_id: String,
}

/// A purchase with a well-formed code of a shape this server never issues
/// (answered 404 `checkout_not_found`, like any unknown code).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ForeignCodeRecord {
    pub at_unix_ms: i64,
    /// The code exactly as the client sent it (1 to 64 URL-safe bytes).
    pub code: String,
}

/// A sale's settings, fixed when the engine first writes for the sale:
/// written before any other record of the sale, and every later record of
/// the sale follows them, whatever the flags say after a restart. Logs
/// written before this record existed have none; their sales take the
/// flags of the start that replays them.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SaleOpenedRecord {
    pub at_unix_ms: i64,
    pub sale_id: u32,
    pub items_per_sale: u32,
    pub user_limit: u32,
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

impl Record {
    pub fn at_unix_ms(&self) -> i64 {
        match self {
            Record::Checkout(r) => r.at_unix_ms,
            Record::Purchase(r) => r.at_unix_ms,
            Record::SaleOpened(r) => r.at_unix_ms,
            Record::ForeignCode(r) => r.at_unix_ms,
            Record::Takeover(r) => r.at_unix_ms,
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

/// Why a record could not be appended: the caller answers 503. The cause
/// (an encoding error, the log's failure) is kept for the log line.
#[derive(Debug, thiserror::Error)]
#[error("the log cannot accept writes")]
#[non_exhaustive]
pub struct JournalError {
    #[source]
    pub cause: Box<dyn std::error::Error + Send + Sync>,
}

impl JournalError {
    pub fn new(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> JournalError {
        JournalError {
            cause: cause.into(),
        }
    }
}

/// Where the engine puts its records. The server's implementation is
/// `journal::WalJournal` (bincode into the write-ahead log); tests and
/// benchmarks keep records in memory.
///
/// `append` returns the record's sequence number at once; durability is
/// awaited separately by the caller. The engine calls it while holding the
/// lock of the user concerned, so sequence numbers follow decision order
/// for every user.
pub trait Journal: Send + Sync {
    fn append(&self, record: &Record) -> Result<u64, JournalError>;

    /// The highest sequence number known durable: reads show only what
    /// records up to here decided.
    fn durable_seq(&self) -> u64;
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

    /// Memory is as durable as it gets here: every record.
    fn durable_seq(&self) -> u64 {
        self.records.lock().len() as u64
    }
}
