//! The in-memory engine: it decides every checkout and purchase, appends the
//! decision's record to the journal, and keeps the state the contract talks
//! about (sold items, users' purchased counts, open carts, codes, stored
//! purchase results). It knows nothing of HTTP, the log's bytes,
//! PostgreSQL or NATS: its outgoing interface is `record` (the records and
//! the `Journal` trait), its words are `outcome` and `views`.
//!
//! Files, by idea: `config` (settings and limits), `checkout` and
//! `purchase` (the two decisions), `claim_wait` (answers that depend on
//! other users' claims), `reads` (sales and item pages), `replay` and
//! `audit` (rebuilding and checking the state at start), `snapshot` (a
//! comparable copy of the whole state), `image` (the whole state as plain
//! data for snapshot files, rebuilt through replay's steps); the state itself: `sales` (the
//! table of sales), `inventory` (sold bits), `users` (striped user
//! tables), `codes` (checkout codes that name their owner's slot),
//! `overflow` (packed carts and stored purchases beyond a user's slot).
//!
//! Why it is shaped like this:
//! - Items are claimed with one `fetch_or` on a bitset (`inventory`), so
//!   the hottest contention point has no lock at all.
//! - Each user's requests are serialised by a striped lock (`users`); the
//!   record is appended while that lock is held, so one user's sequence
//!   numbers follow the order of its decisions and replay sees the same
//!   story. Only after a successful append is the outcome applied, so a
//!   failed append changes nothing but the claims it made.
//! - A sale may hold millions of users under a memory budget, so a user is
//!   one compact slot in its stripe (`users`) and a checkout code names
//!   its owner's slot (`codes`): there is no index of codes, and a
//!   purchase's stored result lives with the user. The fixed stripe hash
//!   and the creation order of slots are part of the log's meaning: replay
//!   recreates every user in the slot its codes name, and refuses a log
//!   where it cannot.
//! - The engine never waits for durability itself: it returns `Decided`
//!   with the sequence number the caller must see durable before answering
//!   (`wait_seq`), which also covers the claim records that a "sold out"
//!   answer depends on.
//!
//! Promises: no item is sold twice; no user buys more than `user_limit`
//! items of a sale; one open cart per user and sale; a purchase code's
//! result never changes once stored; rejected requests leave no state
//! behind; the engine holds at most `users_per_sale_max` users per sale.

mod audit;
mod checkout;
mod claim_wait;
mod codes;
mod config;
mod durable_sold;
mod image;
mod inventory;
mod outcome;
mod overflow;
mod owner;
mod purchase;
mod reads;
mod record;
mod replay;
mod restore;
mod sales;
mod snapshot;
mod users;
mod views;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod thread_tests;
#[cfg(test)]
mod truth_tests;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::{Clock, SaleId};

pub use audit::{AuditError, AuditReport};
pub use config::{
    EngineConfig, EngineConfigError, SaleSettings, ITEMS_PAGE_LIMIT_MAX, ITEMS_PER_SALE_DEFAULT,
    ITEMS_PER_SALE_MAX, PAST_SALES_RETAINED_HOURS_DEFAULT, PAST_SALES_RETAINED_HOURS_MAX,
    PAST_SALES_RETAINED_HOURS_MIN, USERS_PER_SALE_MAX_DEFAULT, USERS_PER_SALE_MAX_LARGEST,
    USER_LIMIT_DEFAULT, USER_LIMIT_MAX,
};
pub use image::{
    CartImage, EngineImage, ImagePart, ImageSource, PurchaseImage, SaleHeader, SaleImage, UserImage,
};
pub use inventory::{ClaimWaitError, Inventory, CLAIM_WAIT_MAX};
pub use outcome::{indices_with, ItemOutcome, PurchaseItem, Rejection};
pub use record::{
    CheckoutOutcome, CheckoutRecord, ForeignCodeRecord, Journal, JournalError, MemoryJournal,
    PurchaseOutcome, PurchaseRecord, Record, SaleOpenedRecord, TakeoverRecord,
};
pub use replay::{Applied, ReplayError};
pub use restore::start_threads;
pub use sales::FUTURE_SALES_KNOWN_HOURS;
pub use snapshot::{EngineSnapshot, SaleSnapshot, StoredPurchaseSnapshot, UserSnapshot};
pub use views::{CartView, Decided, ItemView, ItemsPage, PurchaseView, SaleStatus, SaleView};

use sales::{SaleState, SaleTable};

/// Fresh codes tried before giving up on a (practically impossible) clash.
const CODE_GENERATION_ATTEMPTS_MAX: u32 = 4;

/// Why the engine could not decide: every variant is a 503 for the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The journal refused the record, or a claim this answer depends on
    /// could not be recorded.
    #[error(transparent)]
    Unavailable(#[from] JournalError),
    /// The stripe of a new user holds `SLOTS_PER_STRIPE_MAX` users (a
    /// full sale is `Rejection::SaleFull`, not this).
    #[error("the user table of the active sale is full; try again later")]
    Overloaded,
    /// The operating system's random source failed.
    #[error("cannot generate a checkout code")]
    CodeGeneration(#[source] getrandom::Error),
    /// Every fresh code clashed with one of the user's codes.
    #[error("every fresh checkout code clashed with an existing one")]
    CodeClash,
    /// A claim this answer depends on was never recorded (its purchase's
    /// append failed, or it did not finish in time).
    #[error("sale {sale}: a claim this answer depends on is not recorded")]
    ClaimNotRecorded {
        sale: SaleId,
        #[source]
        source: ClaimWaitError,
    },
}

/// The engine. `Send + Sync`: share it behind an `Arc`.
pub struct Engine {
    config: EngineConfig,
    clock: Arc<dyn Clock>,
    journal: Arc<dyn Journal>,
    sales: SaleTable,
    /// The engine's time never goes below this (milliseconds since the
    /// Unix epoch): the latest instant it used or the log recorded.
    time_floor_unix_ms: AtomicI64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine with no sales touched yet, if `config` is valid.
    pub fn new(
        config: EngineConfig,
        clock: Arc<dyn Clock>,
        journal: Arc<dyn Journal>,
    ) -> Result<Engine, EngineConfigError> {
        config.validate()?;
        let sales = SaleTable::new(
            config.sale_settings(),
            config.users_per_sale_max,
            config.past_sales_retained_hours,
        );
        Ok(Engine {
            config,
            clock,
            journal,
            sales,
            time_floor_unix_ms: AtomicI64::new(i64::MIN),
        })
    }

    /// The engine's "now": the clock, but never earlier than any instant
    /// the engine used before or the log recorded. A clock that jumps back
    /// (NTP, a machine that booted ahead) can then neither reopen a sale
    /// nor bring back one that left memory empty; a jump forward moves the
    /// engine forward for good.
    fn now(&self) -> DateTime<Utc> {
        let clock_unix_ms = self.clock.now().timestamp_millis();
        // A plain load first: every request asks for the time, and an
        // atomic read-modify-write on one shared word would make every
        // request contend for it; the floor moves at most once a millisecond.
        let mut floor = self.time_floor_unix_ms.load(Ordering::Acquire);
        if clock_unix_ms > floor {
            floor = self
                .time_floor_unix_ms
                .fetch_max(clock_unix_ms, Ordering::AcqRel);
        }
        let now_unix_ms = floor.max(clock_unix_ms);
        DateTime::from_timestamp_millis(now_unix_ms).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Replay: the log recorded `at_unix_ms`; the engine's time never goes
    /// below it again.
    fn raise_time_floor(&self, at_unix_ms: i64) {
        self.time_floor_unix_ms
            .fetch_max(at_unix_ms, Ordering::AcqRel);
    }

    /// The settings of `sale`: its own if held, else what it would open
    /// with (a sale the engine holds nothing of).
    fn settings_of(&self, sale: SaleId) -> SaleSettings {
        self.sales
            .get(sale)
            .map_or(self.sales.settings_for_new(), |held| held.settings)
    }

    /// Readers' view of `sale`: claims whose records are durable by now.
    fn settle(&self, sale: &SaleState) {
        sale.inventory.settle(self.journal.durable_seq());
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The active sale's limit of items per user.
    pub fn user_limit(&self) -> u32 {
        self.sales.active(self.now()).settings.user_limit
    }

    /// Records the sale's settings before its first record.
    fn open_sale(&self, sale: &SaleState, now: DateTime<Utc>) -> Result<(), EngineError> {
        sale.open_once(|| {
            self.append(&Record::SaleOpened(SaleOpenedRecord {
                at_unix_ms: now.timestamp_millis(),
                sale_id: sale.id.number(),
                items_per_sale: sale.settings.items_per_sale,
                user_limit: sale.settings.user_limit,
            }))
        })
    }

    fn append(&self, record: &Record) -> Result<u64, EngineError> {
        let seq = self.journal.append(record)?;
        assert!(
            seq > 0 && seq < u64::MAX,
            "journal sequence numbers are 1..u64::MAX"
        );
        Ok(seq)
    }
}
