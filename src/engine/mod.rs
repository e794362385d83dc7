//! The in-memory engine: it decides every checkout and purchase, appends the
//! decision's record to the journal, and keeps the state the contract talks
//! about (sold items, users' purchased counts, open carts, codes, stored
//! purchase results).
//!
//! Why it is shaped like this:
//! - Items are claimed with one `fetch_or` on a bitset (`inventory`), so
//!   the hottest contention point has no lock at all.
//! - Each user's requests are serialised by a striped lock (`users`); the
//!   record is appended while that lock is held, so one user's sequence
//!   numbers follow the order of its decisions and replay sees the same
//!   story. Only after a successful append is the outcome applied, so a
//!   failed append changes nothing but the claims it made.
//! - The engine never waits for durability itself: it returns `Decided`
//!   with the sequence number the caller must see durable before answering
//!   (`wait_seq`), which also covers the claim records that a "sold out"
//!   answer depends on.
//!
//! Promises: no item is sold twice; no user buys more than `user_limit`
//! items of a sale; one open cart per user and sale; a purchase code's
//! result never changes once stored; rejected requests leave no state
//! behind; the engine holds at most `users_per_sale_max` users per sale.

mod apply;
mod codes;
mod inventory;
mod sales;
mod users;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod thread_tests;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::{CheckoutCode, Clock, ItemId, SaleId, UserId};
use crate::journal::{
    CheckoutOutcome, CheckoutRecord, ItemOutcome, Journal, JournalError, PurchaseItem,
    PurchaseOutcome, PurchaseRecord, Record, Rejection,
};

pub use apply::{Applied, EngineSnapshot, SaleSnapshot, StoredPurchaseSnapshot, UserSnapshot};
pub use inventory::{ClaimWaitError, Inventory, CLAIM_WAIT_MAX};
pub use sales::FUTURE_SALES_KNOWN_HOURS;

use codes::{CodeEntry, StoredPurchase};
use sales::{SaleState, SaleTable};
use users::{UserState, UserStripe};

/// Largest accepted `items_per_sale`.
pub const ITEMS_PER_SALE_MAX: u32 = 1_000_000;
/// Largest accepted `user_limit`.
pub const USER_LIMIT_MAX: u32 = 1000;
/// Accepted `past_sales_retained_hours`: the contract keeps past sales for
/// at least a day; a week bounds the memory of retained sales.
pub const PAST_SALES_RETAINED_HOURS_MIN: u32 = 24;
pub const PAST_SALES_RETAINED_HOURS_MAX: u32 = 168;
/// Largest page of `items`.
pub const ITEMS_PAGE_LIMIT_MAX: u32 = 1000;
/// Fresh codes tried before giving up on a (practically impossible) clash.
const CODE_GENERATION_ATTEMPTS_MAX: u32 = 4;

/// The engine's settings (`Engine::new` validates them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Items in every sale (1 to 1,000,000).
    pub items_per_sale: u32,
    /// Items one user may buy in one sale (1 to 1000).
    pub user_limit: u32,
    /// Hours a past sale stays readable and answerable (24 to 168).
    pub past_sales_retained_hours: u32,
    /// Users per sale the engine holds; a new user beyond it gets 503.
    pub users_per_sale_max: u32,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            items_per_sale: 10_000,
            user_limit: 10,
            past_sales_retained_hours: 24,
            users_per_sale_max: 2_000_000,
        }
    }
}

/// A setting outside its accepted range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineConfigError {
    #[error("items_per_sale must be 1 to {ITEMS_PER_SALE_MAX}, got {0}")]
    ItemsPerSale(u32),
    #[error("user_limit must be 1 to {USER_LIMIT_MAX}, got {0}")]
    UserLimit(u32),
    #[error(
        "past_sales_retained_hours must be {PAST_SALES_RETAINED_HOURS_MIN} to \
         {PAST_SALES_RETAINED_HOURS_MAX}, got {0}"
    )]
    PastSalesRetainedHours(u32),
    #[error("users_per_sale_max must be at least 1, got {0}")]
    UsersPerSaleMax(u32),
}

impl EngineConfig {
    pub fn validate(&self) -> Result<(), EngineConfigError> {
        if !(1..=ITEMS_PER_SALE_MAX).contains(&self.items_per_sale) {
            return Err(EngineConfigError::ItemsPerSale(self.items_per_sale));
        }
        if !(1..=USER_LIMIT_MAX).contains(&self.user_limit) {
            return Err(EngineConfigError::UserLimit(self.user_limit));
        }
        let hours = PAST_SALES_RETAINED_HOURS_MIN..=PAST_SALES_RETAINED_HOURS_MAX;
        if !hours.contains(&self.past_sales_retained_hours) {
            return Err(EngineConfigError::PastSalesRetainedHours(
                self.past_sales_retained_hours,
            ));
        }
        if self.users_per_sale_max == 0 {
            return Err(EngineConfigError::UsersPerSaleMax(0));
        }
        Ok(())
    }
}

/// Why the engine could not decide: every variant is a 503 for the client.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The journal refused the record, or a claim this answer depends on
    /// could not be recorded.
    #[error(transparent)]
    Unavailable(#[from] JournalError),
    /// The sale holds `users_per_sale_max` users already.
    #[error("the active sale holds the most users it may; try again later")]
    Overloaded,
    #[error("cannot generate a checkout code: {0}")]
    CodeGeneration(String),
}

/// A decision with the record that tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided<T> {
    pub answer: Result<T, Rejection>,
    /// Sequence number of this decision's own record.
    pub seq: u64,
    /// The caller answers only once every record up to here is durable:
    /// the own record and every claim record the answer depends on.
    pub wait_seq: u64,
}

/// An open cart, as a checkout answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartView {
    pub code: CheckoutCode,
    pub sale: SaleId,
    pub user: UserId,
    /// In the order they were added.
    pub items: Vec<ItemId>,
    pub sale_ends_at: DateTime<Utc>,
}

/// A carried-out purchase (also when repeated for the same code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseView {
    pub code: CheckoutCode,
    pub sale: SaleId,
    pub user: UserId,
    /// Every cart item in cart order with what happened to it.
    pub items: Vec<PurchaseItem>,
}

impl PurchaseView {
    /// True when at least one item was bought.
    pub fn success(&self) -> bool {
        self.total_purchased() > 0
    }

    pub fn total_purchased(&self) -> u32 {
        self.bought().count() as u32
    }

    pub fn failed_count(&self) -> u32 {
        self.failed().count() as u32
    }

    pub fn bought(&self) -> impl Iterator<Item = ItemId> + '_ {
        self.items
            .iter()
            .filter(|i| i.outcome == ItemOutcome::Bought)
            .map(|i| self.item(i.item_index))
    }

    /// Items not bought, with the reason.
    pub fn failed(&self) -> impl Iterator<Item = (ItemId, ItemOutcome)> + '_ {
        self.items
            .iter()
            .filter(|i| i.outcome != ItemOutcome::Bought)
            .map(|i| (self.item(i.item_index), i.outcome))
    }

    fn item(&self, index: u32) -> ItemId {
        ItemId {
            sale: self.sale,
            index,
        }
    }
}

/// A sale as `/sales/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleView {
    pub id: SaleId,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub total_items: u32,
    pub items_sold: u32,
    pub items_available: u32,
    pub user_limit: u32,
}

/// One page of a sale's items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemsPage {
    pub sale: SaleId,
    /// Items matching the filter, over all pages.
    pub total: u32,
    pub offset: u32,
    pub limit: u32,
    pub items: Vec<ItemView>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemView {
    pub id: ItemId,
    pub sold: bool,
}

/// Claims an answer depends on, resolved after the user's lock is released
/// (a claimer never needs that lock, so waiting cannot deadlock).
#[derive(Debug)]
enum ClaimWait {
    Nothing,
    /// The claims of these items (skipping items nobody claimed).
    Items(Vec<u32>),
    /// Every claim of the sale (it is sold out).
    AllItems,
}

/// What a checkout decides, before anything is recorded.
#[derive(Debug)]
enum CheckoutDecision {
    Reject(Rejection, ClaimWait),
    AlreadyInCart,
    Add,
}

/// The engine. `Send + Sync`: share it behind an `Arc`.
pub struct Engine {
    config: EngineConfig,
    clock: Arc<dyn Clock>,
    journal: Arc<dyn Journal>,
    sales: SaleTable,
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
            clock.now(),
            config.items_per_sale,
            config.users_per_sale_max,
            config.past_sales_retained_hours,
        );
        Ok(Engine {
            config,
            clock,
            journal,
            sales,
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn user_limit(&self) -> u32 {
        self.config.user_limit
    }

    /// Adds `item` to the user's cart in the active sale.
    pub fn checkout(&self, user: &UserId, item: ItemId) -> Result<Decided<CartView>, EngineError> {
        let now = self.clock.now();
        let active = self.sales.active(now);
        let (decided, wait) = {
            let mut stripe = active.users.lock(user.as_str());
            self.checkout_locked(&active, &mut stripe, user, item, now)?
        };
        self.resolve_wait(&active, decided, wait)
    }

    fn checkout_locked(
        &self,
        active: &SaleState,
        stripe: &mut UserStripe,
        user: &UserId,
        item: ItemId,
        now: DateTime<Utc>,
    ) -> Result<(Decided<CartView>, ClaimWait), EngineError> {
        let state = stripe.get(user.as_str());
        let code = state.and_then(UserState::open_code);
        let decision = self.decide_checkout(active, state, item);
        let outcome = match decision {
            CheckoutDecision::Reject(rejection, wait) => {
                let sale = match rejection {
                    Rejection::ItemNotFound => active.id,
                    _ => item.sale,
                };
                let outcome = CheckoutOutcome::Rejected(rejection);
                let seq = self.append_checkout(now, sale, user, item, code, outcome)?;
                return Ok((decided(Err(rejection), seq), wait));
            }
            CheckoutDecision::AlreadyInCart => CheckoutOutcome::AlreadyInCart,
            CheckoutDecision::Add => return self.add_to_cart(active, stripe, user, item, now),
        };
        debug_assert!(code.is_some(), "already in a cart that is not open");
        let seq = self.append_checkout(now, active.id, user, item, code, outcome)?;
        let view = open_cart_view(active, stripe, user);
        Ok((decided(Ok(view), seq), ClaimWait::Nothing))
    }

    /// The contract's order of checkout checks; decides, changes nothing.
    fn decide_checkout(
        &self,
        active: &SaleState,
        user: Option<&UserState>,
        item: ItemId,
    ) -> CheckoutDecision {
        use CheckoutDecision::Reject;
        if !self.is_known_item(active.id, item) {
            return Reject(Rejection::ItemNotFound, ClaimWait::Nothing);
        }
        if item.sale != active.id {
            return Reject(Rejection::SaleNotActive, ClaimWait::Nothing);
        }
        let (purchased, cart_len) = user.map_or((0, 0), |u| (u32::from(u.purchased), u.cart.len()));
        if user.is_some_and(|u| u.cart.contains(item.index)) {
            return CheckoutDecision::AlreadyInCart;
        }
        if active.inventory.all_sold() {
            return Reject(Rejection::SaleSoldOut, ClaimWait::AllItems);
        }
        if active.inventory.is_claimed(item.index) {
            return Reject(Rejection::ItemSoldOut, ClaimWait::Items(vec![item.index]));
        }
        if purchased as usize + cart_len >= self.config.user_limit as usize {
            return Reject(Rejection::UserLimitReached, ClaimWait::Nothing);
        }
        CheckoutDecision::Add
    }

    /// Whether `item` names an item of a sale the engine answers for: the
    /// retained past sales, the active one, and the next day's.
    fn is_known_item(&self, active: SaleId, item: ItemId) -> bool {
        if item.index >= self.config.items_per_sale {
            return false;
        }
        if item.sale == active {
            return true;
        }
        let hours = active.hours_until(item.sale);
        let past_hours_max = i64::from(self.config.past_sales_retained_hours);
        (-past_hours_max..=i64::from(FUTURE_SALES_KNOWN_HOURS)).contains(&hours)
    }

    /// Records and applies an addition to the cart (opening it if needed).
    fn add_to_cart(
        &self,
        active: &SaleState,
        stripe: &mut UserStripe,
        user: &UserId,
        item: ItemId,
        now: DateTime<Utc>,
    ) -> Result<(Decided<CartView>, ClaimWait), EngineError> {
        let existing = stripe.get(user.as_str());
        let is_new_user = existing.is_none();
        let open_code = existing.and_then(UserState::open_code);
        if is_new_user && !active.users.try_reserve_user() {
            return Err(EngineError::Overloaded);
        }
        let appended = open_code
            .map_or_else(|| self.fresh_code(active), Ok)
            .and_then(|code| {
                let outcome = CheckoutOutcome::Added {
                    opened_cart: open_code.is_none(),
                };
                let seq = self.append_checkout(now, active.id, user, item, Some(code), outcome)?;
                Ok((code, seq))
            });
        let (code, seq) = match appended {
            Ok(appended) => appended,
            Err(error) => {
                if is_new_user {
                    active.users.release_user();
                }
                return Err(error);
            }
        };
        let (key, state) = stripe.entry(user.as_str());
        if open_code.is_none() {
            state.open_cart(code, item.index);
            let registered = active.codes.insert_open(code, key);
            debug_assert!(registered, "fresh code was taken");
        } else {
            state.cart.push(item.index);
        }
        debug_assert!(
            u32::from(state.purchased) as usize + state.cart.len()
                <= self.config.user_limit as usize
        );
        let view = open_cart_view(active, stripe, user);
        Ok((decided(Ok(view), seq), ClaimWait::Nothing))
    }

    /// A code no cart of the active sale has.
    fn fresh_code(&self, active: &SaleState) -> Result<CheckoutCode, EngineError> {
        for _ in 0..CODE_GENERATION_ATTEMPTS_MAX {
            let code = CheckoutCode::generate()
                .map_err(|error| EngineError::CodeGeneration(error.to_string()))?;
            if !active.codes.contains(code) {
                return Ok(code);
            }
        }
        Err(EngineError::CodeGeneration(
            "every fresh code clashed with an existing one".into(),
        ))
    }

    fn append_checkout(
        &self,
        now: DateTime<Utc>,
        sale: SaleId,
        user: &UserId,
        item: ItemId,
        code: Option<CheckoutCode>,
        outcome: CheckoutOutcome,
    ) -> Result<u64, EngineError> {
        let record = Record::Checkout(CheckoutRecord {
            at_unix_ms: now.timestamp_millis(),
            sale_id: sale.number(),
            user_id: user.to_string(),
            item_id: item.to_string(),
            code: code.map(CheckoutCode::as_u128),
            outcome,
        });
        self.append(&record)
    }

    fn append(&self, record: &Record) -> Result<u64, EngineError> {
        let seq = self.journal.append(record)?;
        assert!(
            seq > 0 && seq < u64::MAX,
            "journal sequence numbers are 1..u64::MAX"
        );
        Ok(seq)
    }

    /// Buys what is still unsold of the cart named `code`.
    pub fn purchase(&self, code: CheckoutCode) -> Result<Decided<PurchaseView>, EngineError> {
        let now = self.clock.now();
        let active = self.sales.active(now);
        let Some((sale, entry)) = self.sales.find_code(code) else {
            let record = purchase_record(
                now,
                code,
                None,
                PurchaseOutcome::Rejected(Rejection::CheckoutNotFound),
                Vec::new(),
            );
            let seq = self.append(&record)?;
            return Ok(decided(Err(Rejection::CheckoutNotFound), seq));
        };
        let (decided, wait) = {
            let mut stripe = sale.users.lock(&entry.user);
            // Read the code again under the user's lock: a concurrent
            // purchase of the same code may have closed the cart.
            let entry = sale.codes.get(code).unwrap_or(entry);
            self.purchase_locked(&sale, &mut stripe, code, entry, active.id, now)?
        };
        self.resolve_wait(&sale, decided, wait)
    }

    /// The purchase decision, under the cart owner's lock.
    fn purchase_locked(
        &self,
        sale: &SaleState,
        stripe: &mut UserStripe,
        code: CheckoutCode,
        entry: CodeEntry,
        active: SaleId,
        now: DateTime<Utc>,
    ) -> Result<(Decided<PurchaseView>, ClaimWait), EngineError> {
        if let Some(stored) = &entry.purchase {
            return self.repeat_purchase(sale, code, &entry.user, stored, now);
        }
        if sale.id != active {
            let owner = Some((sale.id, &*entry.user));
            let outcome = PurchaseOutcome::Rejected(Rejection::SaleNotActive);
            let seq = self.append(&purchase_record(now, code, owner, outcome, Vec::new()))?;
            let decided = decided(Err(Rejection::SaleNotActive), seq);
            return Ok((decided, ClaimWait::Nothing));
        }
        self.complete_purchase(sale, stripe, code, &entry.user, now)
    }

    /// The stored answer again; it waits for what the first answer waited
    /// for (its record and the claims of the items it reports sold out).
    fn repeat_purchase(
        &self,
        sale: &SaleState,
        code: CheckoutCode,
        user: &str,
        stored: &StoredPurchase,
        now: DateTime<Utc>,
    ) -> Result<(Decided<PurchaseView>, ClaimWait), EngineError> {
        let items = stored.items.to_vec();
        let owner = Some((sale.id, user));
        let outcome = PurchaseOutcome::Replayed;
        let seq = self.append(&purchase_record(now, code, owner, outcome, items.clone()))?;
        let wait = ClaimWait::Items(sold_out_items(&items));
        let decided = Decided {
            answer: Ok(purchase_view(sale.id, user, code, items)),
            seq,
            wait_seq: seq.max(stored.seq),
        };
        Ok((decided, wait))
    }

    /// Claims the open cart's items, records the purchase, then publishes
    /// the claims, closes the cart and stores the result.
    fn complete_purchase(
        &self,
        sale: &SaleState,
        stripe: &mut UserStripe,
        code: CheckoutCode,
        user: &str,
        now: DateTime<Utc>,
    ) -> Result<(Decided<PurchaseView>, ClaimWait), EngineError> {
        let Some(state) = stripe.get_mut(user) else {
            unreachable!("code {code} names user {user}, who has no state");
        };
        assert_eq!(
            state.open_code(),
            Some(code),
            "code index and cart disagree"
        );
        let items = self.claim_cart(&sale.inventory, state);
        let bought: Vec<u32> = items
            .iter()
            .filter(|i| i.outcome == ItemOutcome::Bought)
            .map(|i| i.item_index)
            .collect();
        let owner = Some((sale.id, user));
        let outcome = PurchaseOutcome::Completed;
        let record = purchase_record(now, code, owner, outcome, items.clone());
        let seq = match self.append(&record) {
            Ok(seq) => seq,
            Err(error) => {
                bought.iter().for_each(|&index| sale.inventory.fail(index));
                return Err(error);
            }
        };
        bought
            .iter()
            .for_each(|&index| sale.inventory.publish(index, seq));
        state.close_cart(bought.len() as u16);
        debug_assert!(u32::from(state.purchased) <= self.config.user_limit);
        let stored = StoredPurchase {
            items: items.clone().into(),
            seq,
        };
        let closed = sale.codes.store_purchase(code, stored);
        debug_assert!(closed, "purchase of a code that is not open");
        let wait = ClaimWait::Items(sold_out_items(&items));
        let view = purchase_view(sale.id, user, code, items);
        Ok((decided(Ok(view), seq), wait))
    }

    /// Claims the cart's items in order, up to the user's limit. Changes
    /// only the sold bits: the user's state changes after the append.
    fn claim_cart(&self, inventory: &Inventory, state: &UserState) -> Vec<PurchaseItem> {
        let mut purchased = u32::from(state.purchased);
        let mut items = Vec::with_capacity(state.cart.len());
        for item_index in state.cart.iter() {
            let outcome = if purchased >= self.config.user_limit {
                ItemOutcome::UserLimit
            } else if inventory.try_claim(item_index) {
                purchased += 1;
                ItemOutcome::Bought
            } else {
                ItemOutcome::SoldOut
            };
            items.push(PurchaseItem {
                item_index,
                outcome,
            });
        }
        items
    }

    /// Raises `wait_seq` to the claims the answer depends on, waiting for
    /// claims still in flight (no lock held here).
    fn resolve_wait<T>(
        &self,
        sale: &SaleState,
        mut decided: Decided<T>,
        wait: ClaimWait,
    ) -> Result<Decided<T>, EngineError> {
        let inventory = &sale.inventory;
        let claims_seq = match wait {
            ClaimWait::Nothing => 0,
            ClaimWait::AllItems => inventory.claim_seq_max(),
            ClaimWait::Items(indices) => {
                let mut seq_max = 0;
                for index in indices.into_iter().filter(|&i| inventory.is_claimed(i)) {
                    let seq = inventory
                        .wait_claim_seq(index)
                        .map_err(|error| JournalError(format!("sale {}: {error}", sale.id)))?;
                    seq_max = seq_max.max(seq);
                }
                seq_max
            }
        };
        decided.wait_seq = decided.wait_seq.max(claims_seq);
        debug_assert!(decided.wait_seq >= decided.seq);
        Ok(decided)
    }

    /// The active sale.
    pub fn active_sale(&self) -> SaleView {
        let active = self.sales.active(self.clock.now());
        self.sale_view(active.id, Some(&active))
    }

    /// Items sold in the active sale (cheap: for metrics).
    pub fn active_items_sold(&self) -> u32 {
        self.sales.active(self.clock.now()).inventory.items_sold()
    }

    /// The active sale or a retained past one; `None` for any other.
    pub fn sale(&self, id: SaleId) -> Option<SaleView> {
        let sale = self.readable_sale(id)?;
        Some(self.sale_view(id, sale.as_deref()))
    }

    /// The state of `id` if it is readable (`Some(None)`: never touched).
    fn readable_sale(&self, id: SaleId) -> Option<Option<Arc<SaleState>>> {
        let active = self.sales.active(self.clock.now());
        let hours = id.hours_until(active.id);
        let retained = 0..=i64::from(self.config.past_sales_retained_hours);
        if !retained.contains(&hours) {
            return None;
        }
        Some(self.sales.get(id))
    }

    fn sale_view(&self, id: SaleId, state: Option<&SaleState>) -> SaleView {
        let total_items = self.config.items_per_sale;
        let items_sold = state.map_or(0, |s| s.inventory.items_sold());
        SaleView {
            id,
            starts_at: id.starts_at(),
            ends_at: id.ends_at(),
            total_items,
            items_sold,
            items_available: total_items - items_sold,
            user_limit: self.config.user_limit,
        }
    }

    /// A page of a readable sale's items; `limit` is capped at
    /// `ITEMS_PAGE_LIMIT_MAX`. An item counts as sold once its claim is
    /// recorded.
    pub fn items(
        &self,
        id: SaleId,
        offset: u32,
        limit: u32,
        available_only: bool,
    ) -> Option<ItemsPage> {
        let state = self.readable_sale(id)?;
        let is_sold = |index: u32| state.as_ref().is_some_and(|s| s.inventory.is_sold(index));
        let limit = limit.min(ITEMS_PAGE_LIMIT_MAX);
        let items_total = self.config.items_per_sale;
        let total = if available_only {
            items_total - state.as_ref().map_or(0, |s| s.inventory.items_sold())
        } else {
            items_total
        };
        let items = (0..items_total)
            .map(|index| ItemView {
                id: ItemId { sale: id, index },
                sold: is_sold(index),
            })
            .filter(|item| !(available_only && item.sold))
            .skip(offset as usize)
            .take(limit as usize)
            .collect();
        Some(ItemsPage {
            sale: id,
            total,
            offset,
            limit,
            items,
        })
    }
}

fn decided<T>(answer: Result<T, Rejection>, seq: u64) -> Decided<T> {
    Decided {
        answer,
        seq,
        wait_seq: seq,
    }
}

/// The user's open cart in `sale`, which must exist (just added to or
/// found holding the item).
fn open_cart_view(sale: &SaleState, stripe: &UserStripe, user: &UserId) -> CartView {
    let state = stripe.get(user.as_str());
    let Some((state, code)) = state.and_then(|s| Some((s, s.open_code()?))) else {
        unreachable!("user {user} has no open cart in sale {}", sale.id);
    };
    CartView {
        code,
        sale: sale.id,
        user: user.clone(),
        items: state
            .cart
            .iter()
            .map(|index| ItemId {
                sale: sale.id,
                index,
            })
            .collect(),
        sale_ends_at: sale.ends_at,
    }
}

fn purchase_view(
    sale: SaleId,
    user: &str,
    code: CheckoutCode,
    items: Vec<PurchaseItem>,
) -> PurchaseView {
    PurchaseView {
        code,
        sale,
        // Keys of the user table were made from valid `UserId`s.
        user: UserId::parse(user)
            .unwrap_or_else(|_| unreachable!("stored user id {user:?} is valid")),
        items,
    }
}

fn sold_out_items(items: &[PurchaseItem]) -> Vec<u32> {
    items
        .iter()
        .filter(|i| i.outcome == ItemOutcome::SoldOut)
        .map(|i| i.item_index)
        .collect()
}

fn purchase_record(
    now: DateTime<Utc>,
    code: CheckoutCode,
    owner: Option<(SaleId, &str)>,
    outcome: PurchaseOutcome,
    items: Vec<PurchaseItem>,
) -> Record {
    Record::Purchase(PurchaseRecord {
        at_unix_ms: now.timestamp_millis(),
        sale_id: owner.map(|(sale, _)| sale.number()),
        user_id: owner.map(|(_, user)| user.to_string()),
        code: code.as_u128(),
        outcome,
        items,
    })
}
