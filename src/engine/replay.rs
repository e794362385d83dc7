//! Rebuilding the engine from its records, one record at a time
//! (`Engine::apply`); the service's recovery module reads the log and
//! drives it, and `audit` checks the rebuilt whole.
//!
//! Replay applies recorded outcomes and never decides again: time, limits
//! and the bound on users play no part, so the same records always rebuild
//! the same state. Every record must fit the state built so far (a cart
//! opened once, items added to the cart the record names, a purchase of the
//! cart it names, an item sold once); anything else is an error naming the
//! record's sequence number, so a damaged or foreign log stops the start.
//! Records of sales that already left retention are skipped: the running
//! engine had dropped them too.
//!
//! Codes name their owner's slot (`codes`), and the running engine creates
//! a user's slot under the stripe's lock right after appending the user's
//! first `Added` record, so replay in sequence order gives every user the
//! same slot. Replay checks this for every code it meets: a code naming
//! another slot means the log and the engine disagree (a foreign log, or a
//! changed stripe hash or code layout) and stops the start, because
//! carrying on would leave codes that name the wrong user or nobody.

use super::codes::{self, StoredPurchase};
use super::config::{SaleSettings, ITEMS_PER_SALE_MAX, USER_LIMIT_MAX};
use super::outcome::PurchaseItem;
use super::record::{
    CheckoutOutcome, CheckoutRecord, PurchaseOutcome, PurchaseRecord, Record, SaleOpenedRecord,
};
use super::sales::SaleState;
use super::users::UserStripe;
use super::Engine;
use crate::domain::{CheckoutCode, ItemId, SaleId, UserId};

/// A record that does not fit the state before it: the log is damaged or
/// foreign, and the start stops.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log record {seq} does not fit the state before it: {why}")]
#[non_exhaustive]
pub struct ReplayError {
    pub seq: u64,
    pub why: String,
}

/// What `Engine::apply` did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The record changed the state (a cart or a purchase).
    Changed,
    /// The record tells of an answer that changed nothing.
    Unchanged,
    /// The record's sale left retention: skipped.
    Expired,
}

impl Engine {
    /// Applies the outcome recorded at `seq`.
    pub fn apply(&self, seq: u64, record: &Record) -> Result<Applied, ReplayError> {
        self.raise_time_floor(record.at_unix_ms());
        match record {
            Record::Checkout(r) => match r.outcome {
                CheckoutOutcome::Added { opened_cart } => self.apply_added(seq, r, opened_cart),
                CheckoutOutcome::AlreadyInCart | CheckoutOutcome::Rejected(_) => {
                    Ok(Applied::Unchanged)
                }
            },
            Record::SaleOpened(r) => self.apply_sale_opened(seq, r),
            Record::ForeignCode(_) | Record::Takeover(_) => Ok(Applied::Unchanged),
            Record::Purchase(r) => match r.outcome {
                PurchaseOutcome::Completed => self.apply_completed(seq, r),
                PurchaseOutcome::Replayed | PurchaseOutcome::Rejected(_) => Ok(Applied::Unchanged),
            },
        }
    }

    pub(super) fn is_expired(&self, sale: SaleId) -> bool {
        let active = SaleId::containing(self.now());
        sale < active.hours_before(self.config.past_sales_retained_hours)
    }

    /// The sale's settings as recorded when it opened: they hold for the
    /// sale whatever the flags of this start say.
    pub(super) fn apply_sale_opened(
        &self,
        seq: u64,
        record: &SaleOpenedRecord,
    ) -> Result<Applied, ReplayError> {
        let bad = |why: String| ReplayError { seq, why };
        let sale_id = SaleId::from_number(record.sale_id)
            .ok_or_else(|| bad(format!("sale id {} is not a sale", record.sale_id)))?;
        let settings = SaleSettings {
            items_per_sale: record.items_per_sale,
            user_limit: record.user_limit,
        };
        if !(1..=ITEMS_PER_SALE_MAX).contains(&settings.items_per_sale)
            || !(1..=USER_LIMIT_MAX).contains(&settings.user_limit)
        {
            return Err(bad(format!(
                "sale {sale_id} opens with {settings:?}: out of range"
            )));
        }
        if self.is_expired(sale_id) {
            return Ok(Applied::Expired);
        }
        self.sales
            .open_from_log(sale_id, settings, seq)
            .map_err(bad)?;
        Ok(Applied::Changed)
    }

    fn apply_added(
        &self,
        seq: u64,
        record: &CheckoutRecord,
        opened_cart: bool,
    ) -> Result<Applied, ReplayError> {
        let bad = |why: String| ReplayError { seq, why };
        let sale_id = record
            .sale()
            .ok_or_else(|| bad(format!("sale id {} is not a sale", record.sale_id)))?;
        if self.is_expired(sale_id) {
            return Ok(Applied::Expired);
        }
        let user = UserId::parse(&record.user_id)
            .map_err(|e| bad(format!("user id {:?}: {e}", record.user_id)))?;
        let item = ItemId::parse(&record.item_id)
            .map_err(|e| bad(format!("item id {:?}: {e}", record.item_id)))?;
        let code = record
            .code()
            .ok_or_else(|| bad(format!("item {item} added for user {user} without a code")))?;
        self.replay_added(seq, sale_id, user.as_str(), item, code, opened_cart)
    }

    /// The state change of an `Added` checkout of `item` by `user` into the
    /// cart `code`: from a log record, or from a snapshot's cart.
    pub(super) fn replay_added(
        &self,
        seq: u64,
        sale_id: SaleId,
        user: &str,
        item: ItemId,
        code: CheckoutCode,
        opened_cart: bool,
    ) -> Result<Applied, ReplayError> {
        let bad = |why: String| ReplayError { seq, why };
        let sale = self.sales.get_or_insert(sale_id);
        if item.sale != sale_id || item.index >= sale.settings.items_per_sale {
            return Err(bad(format!("item {item} is not an item of sale {sale_id}")));
        }
        let mut stripe = sale.users.lock(user);
        let slot = match stripe.find(user) {
            Some(slot) => slot,
            None if opened_cart => replay_new_user(&sale, &mut stripe, user, code).map_err(bad)?,
            None => {
                return Err(bad(format!(
                    "user {user} added item {item} to cart {code}, but has no cart"
                )))
            }
        };
        let (secret, locator) = codes::split(code);
        if locator != stripe.locator(slot) {
            return Err(bad(format!(
                "code {code} of user {user} names {locator}, but the user is in {}",
                stripe.locator(slot)
            )));
        }
        let open = stripe.open_code(slot);
        let state = stripe.user_mut(slot);
        match (opened_cart, open) {
            (true, None) if state.purchase(secret).is_none() => state.open_cart(secret, item.index),
            (false, Some(open)) if open == code && !state.cart_contains(item.index) => {
                state.cart_push(item.index)
            }
            (_, open) => {
                return Err(bad(format!(
                    "user {user} added item {item} to cart {code} (opened: {opened_cart}), \
                     but the open cart is {open:?} (or the code was purchased)"
                )))
            }
        }
        Ok(Applied::Changed)
    }

    fn apply_completed(&self, seq: u64, record: &PurchaseRecord) -> Result<Applied, ReplayError> {
        let bad = |why: String| ReplayError { seq, why };
        let code = CheckoutCode::from_u128(record.code);
        let (Some(sale_number), Some(user_text)) = (record.sale_id, &record.user_id) else {
            return Err(bad(format!(
                "completed purchase of {code} names no sale or user"
            )));
        };
        let sale_id = SaleId::from_number(sale_number)
            .ok_or_else(|| bad(format!("sale id {sale_number} is not a sale")))?;
        if self.is_expired(sale_id) {
            return Ok(Applied::Expired);
        }
        self.replay_completed(seq, sale_id, user_text, code, &record.items)
    }

    /// The state change of a completed purchase of `code` by `user_text`
    /// with `items` (the cart, each with its outcome): from a log record,
    /// or from a snapshot's stored purchase.
    pub(super) fn replay_completed(
        &self,
        seq: u64,
        sale_id: SaleId,
        user_text: &str,
        code: CheckoutCode,
        items: &[PurchaseItem],
    ) -> Result<Applied, ReplayError> {
        let bad = |why: String| ReplayError { seq, why };
        let sale = self.sales.get_or_insert(sale_id);
        let mut stripe = sale.users.lock(user_text);
        let slot = stripe.find(user_text);
        // All 128 bits: the secret and the locator of the user's slot.
        let Some(slot) = slot.filter(|&slot| stripe.open_code(slot) == Some(code)) else {
            return Err(bad(format!(
                "user {user_text} has no open cart {code} to purchase"
            )));
        };
        let state = stripe.user_mut(slot);
        let recorded: Vec<u32> = items.iter().map(|i| i.item_index).collect();
        let cart: Vec<u32> = state.cart().collect();
        if recorded != cart {
            return Err(bad(format!(
                "purchase of {code} by {user_text} lists items {recorded:?}, the cart holds {cart:?}"
            )));
        }
        for index in items.iter().filter(|i| i.is_bought()).map(|i| i.item_index) {
            sale.inventory
                .claim_for_replay(index, seq)
                .map_err(|earlier| {
                    let item = ItemId {
                        sale: sale_id,
                        index,
                    };
                    bad(format!(
                        "item {item} bought by {user_text}, but sold already by record {earlier}"
                    ))
                })?;
        }
        let (secret, _) = codes::split(code);
        state.close_cart(StoredPurchase {
            secret,
            items: items.to_vec().into(),
            seq,
        });
        Ok(Applied::Changed)
    }
}

/// Creates `user` in the next slot of `stripe` during replay, if that is
/// the slot `code` (the user's first) names.
fn replay_new_user(
    sale: &SaleState,
    stripe: &mut UserStripe,
    user: &str,
    code: CheckoutCode,
) -> Result<u32, String> {
    let (_, locator) = codes::split(code);
    let next = stripe.next_slot().map(|slot| stripe.locator(slot));
    if next != Some(locator) {
        return Err(format!(
            "user {user}'s first code {code} names {locator}, but replay puts the user in \
             {next:?}: the log and the engine disagree on where users live"
        ));
    }
    sale.users.count_user();
    Ok(stripe.push(user))
}
