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

mod apply;
mod codes;
mod extra;
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

use codes::{CodeSecret, StoredPurchase};
use extra::PurchaseWords;
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
        let slot = stripe.find(user.as_str());
        let code = slot.and_then(|slot| stripe.open_code(slot));
        let decision = self.decide_checkout(active, slot.map(|slot| stripe.user(slot)), item);
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
            CheckoutDecision::Add => {
                return self.add_to_cart(active, stripe, slot, user, item, now);
            }
        };
        debug_assert!(code.is_some(), "already in a cart that is not open");
        let seq = self.append_checkout(now, active.id, user, item, code, outcome)?;
        let view = open_cart_view(active, stripe, slot, user);
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
        let (purchased, cart_len) =
            user.map_or((0, 0), |u| (u32::from(u.purchased()), u.cart_len()));
        if user.is_some_and(|u| u.cart_contains(item.index)) {
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

    /// Records and applies an addition to the cart (opening it if needed)
    /// of the user in `slot`, or of a new user if `None`.
    fn add_to_cart(
        &self,
        active: &SaleState,
        stripe: &mut UserStripe,
        slot: Option<u32>,
        user: &UserId,
        item: ItemId,
        now: DateTime<Utc>,
    ) -> Result<(Decided<CartView>, ClaimWait), EngineError> {
        let open_secret = slot.and_then(|slot| stripe.user(slot).open_secret());
        let new_slot = match slot {
            Some(_) => None,
            None => Some(self.reserve_slot(active, stripe)?),
        };
        let Some(target) = slot.or(new_slot) else {
            unreachable!("either the user's slot or a new one");
        };
        let appended = self.append_addition(active, stripe, target, user, item, now);
        let (secret, seq) = match appended {
            Ok(appended) => appended,
            Err(error) => {
                if new_slot.is_some() {
                    active.users.release_user();
                }
                return Err(error);
            }
        };
        // Created only now that the record is appended, under the same
        // lock: slots follow the log's order (see `users`).
        let slot = slot.unwrap_or_else(|| stripe.push(user.as_str()));
        debug_assert_eq!(slot, target, "a new user gets the reserved slot");
        let state = stripe.user_mut(slot);
        match open_secret {
            None => state.open_cart(secret, item.index),
            Some(_) => state.cart_push(item.index),
        }
        debug_assert!(
            usize::from(state.purchased()) + state.cart_len() <= self.config.user_limit as usize
        );
        let view = open_cart_view(active, stripe, Some(slot), user);
        Ok((decided(Ok(view), seq), ClaimWait::Nothing))
    }

    /// The slot the new user will get, with one of the sale's places for
    /// users taken; `Overloaded` if the sale or the stripe is full.
    fn reserve_slot(&self, active: &SaleState, stripe: &UserStripe) -> Result<u32, EngineError> {
        let Some(slot) = stripe.next_slot() else {
            return Err(EngineError::Overloaded);
        };
        if !active.users.try_reserve_user() {
            return Err(EngineError::Overloaded);
        }
        Ok(slot)
    }

    /// Appends the `Added` record for the user in `slot` (which may not
    /// exist yet), with a fresh code if no cart is open. Changes nothing.
    fn append_addition(
        &self,
        active: &SaleState,
        stripe: &UserStripe,
        slot: u32,
        user: &UserId,
        item: ItemId,
        now: DateTime<Utc>,
    ) -> Result<(CodeSecret, u64), EngineError> {
        let open_secret = stripe.get(slot).and_then(UserState::open_secret);
        let secret = match open_secret {
            Some(secret) => secret,
            None => self.fresh_secret(stripe.get(slot))?,
        };
        let code = Some(stripe.code(slot, secret));
        let outcome = CheckoutOutcome::Added {
            opened_cart: open_secret.is_none(),
        };
        let seq = self.append_checkout(now, active.id, user, item, code, outcome)?;
        Ok((secret, seq))
    }

    /// A secret no code of `user` has. That makes the code new in the
    /// sale: codes of other users differ in the locator.
    fn fresh_secret(&self, user: Option<&UserState>) -> Result<CodeSecret, EngineError> {
        for _ in 0..CODE_GENERATION_ATTEMPTS_MAX {
            let secret = CodeSecret::generate()
                .map_err(|error| EngineError::CodeGeneration(error.to_string()))?;
            if !user.is_some_and(|u| u.holds_secret(secret)) {
                return Ok(secret);
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

    /// Buys what is still unsold of the cart named `code`. The code names
    /// its owner's slot but not the sale: the active sale is asked first,
    /// then the retained ones, newest first.
    pub fn purchase(&self, code: CheckoutCode) -> Result<Decided<PurchaseView>, EngineError> {
        let now = self.clock.now();
        let active = self.sales.active(now);
        let others = std::iter::once_with(|| self.sales.others_newest_first(&active));
        let candidates = std::iter::once(Arc::clone(&active)).chain(others.flatten());
        for sale in candidates {
            let Some(found) = self.purchase_in(&sale, code, active.id, now) else {
                continue;
            };
            let (decided, wait) = found?;
            return self.resolve_wait(&sale, decided, wait);
        }
        let outcome = PurchaseOutcome::Rejected(Rejection::CheckoutNotFound);
        let seq = self.append(&purchase_record(now, code, None, outcome, Vec::new()))?;
        Ok(decided(Err(Rejection::CheckoutNotFound), seq))
    }

    /// The purchase decision for `code` in `sale`, under the owner's lock;
    /// `None` if no user of `sale` holds `code` (open or purchased).
    fn purchase_in(
        &self,
        sale: &SaleState,
        code: CheckoutCode,
        active: SaleId,
        now: DateTime<Utc>,
    ) -> Option<Result<(Decided<PurchaseView>, ClaimWait), EngineError>> {
        let (secret, locator) = codes::split(code);
        let mut stripe = sale.users.lock_stripe(locator.stripe);
        let state = stripe.get(locator.slot)?;
        if let Some(stored) = state.purchase(secret) {
            return Some(self.repeat_purchase(sale, code, state.id(), stored, now));
        }
        if state.open_secret() != Some(secret) {
            return None;
        }
        if sale.id != active {
            let owner = Some((sale.id, state.id()));
            let outcome = PurchaseOutcome::Rejected(Rejection::SaleNotActive);
            let appended = self.append(&purchase_record(now, code, owner, outcome, Vec::new()));
            let rejected = |seq| {
                (
                    decided(Err(Rejection::SaleNotActive), seq),
                    ClaimWait::Nothing,
                )
            };
            return Some(appended.map(rejected));
        }
        Some(self.complete_purchase(sale, &mut stripe, locator.slot, code, now))
    }

    /// The stored answer again; it waits for what the first answer waited
    /// for (its record and the claims of the items it reports sold out).
    fn repeat_purchase(
        &self,
        sale: &SaleState,
        code: CheckoutCode,
        user: &str,
        stored: PurchaseWords<'_>,
        now: DateTime<Utc>,
    ) -> Result<(Decided<PurchaseView>, ClaimWait), EngineError> {
        let items: Vec<PurchaseItem> = stored.items().collect();
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

    /// Claims the open cart's items of the user in `slot`, records the
    /// purchase, then publishes the claims, closes the cart and stores the
    /// result with the user.
    fn complete_purchase(
        &self,
        sale: &SaleState,
        stripe: &mut UserStripe,
        slot: u32,
        code: CheckoutCode,
        now: DateTime<Utc>,
    ) -> Result<(Decided<PurchaseView>, ClaimWait), EngineError> {
        debug_assert_eq!(stripe.open_code(slot), Some(code), "not the open cart");
        let state = stripe.user_mut(slot);
        let items = self.claim_cart(&sale.inventory, state);
        let bought: Vec<u32> = items
            .iter()
            .filter(|i| i.outcome == ItemOutcome::Bought)
            .map(|i| i.item_index)
            .collect();
        let owner = Some((sale.id, state.id()));
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
        let (secret, _) = codes::split(code);
        let stored = StoredPurchase {
            secret,
            items: items.clone().into(),
            seq,
        };
        state.close_cart(stored);
        debug_assert!(u32::from(state.purchased()) <= self.config.user_limit);
        let wait = ClaimWait::Items(sold_out_items(&items));
        let view = purchase_view(sale.id, state.id(), code, items);
        Ok((decided(Ok(view), seq), wait))
    }

    /// Claims the cart's items in order, up to the user's limit. Changes
    /// only the sold bits: the user's state changes after the append.
    fn claim_cart(&self, inventory: &Inventory, state: &UserState) -> Vec<PurchaseItem> {
        let mut purchased = u32::from(state.purchased());
        let mut items = Vec::with_capacity(state.cart_len());
        for item_index in state.cart() {
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

/// The open cart of the user in `slot` of `sale`, which must exist (just
/// added to or found holding the item).
fn open_cart_view(
    sale: &SaleState,
    stripe: &UserStripe,
    slot: Option<u32>,
    user: &UserId,
) -> CartView {
    let open = slot.and_then(|slot| Some((slot, stripe.open_code(slot)?)));
    let Some((slot, code)) = open else {
        unreachable!("user {user} has no open cart in sale {}", sale.id);
    };
    CartView {
        code,
        sale: sale.id,
        user: user.clone(),
        items: stripe
            .user(slot)
            .cart()
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
        // Slots of the user table were made from valid `UserId`s.
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
