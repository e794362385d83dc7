//! Rebuilding the engine from its records, checking the rebuilt state, and
//! snapshots that tests compare.
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

use std::collections::{BTreeMap, HashMap};

use crate::domain::{CheckoutCode, ItemId, SaleId, UserId};
use crate::journal::{
    CheckoutOutcome, CheckoutRecord, ItemOutcome, PurchaseItem, PurchaseOutcome, PurchaseRecord,
    Record,
};
use crate::recovery::{AuditError, AuditReport, RecoveryError};

use super::codes::{self, StoredPurchase};
use super::sales::SaleState;
use super::users::{UserState, UserStripe};
use super::Engine;

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
    pub fn apply(&self, seq: u64, record: &Record) -> Result<Applied, RecoveryError> {
        match record {
            Record::Checkout(r) => match r.outcome {
                CheckoutOutcome::Added { opened_cart } => self.apply_added(seq, r, opened_cart),
                CheckoutOutcome::AlreadyInCart | CheckoutOutcome::Rejected(_) => {
                    Ok(Applied::Unchanged)
                }
            },
            Record::Purchase(r) => match r.outcome {
                PurchaseOutcome::Completed => self.apply_completed(seq, r),
                PurchaseOutcome::Replayed | PurchaseOutcome::Rejected(_) => Ok(Applied::Unchanged),
            },
        }
    }

    fn is_expired(&self, sale: SaleId) -> bool {
        let active = SaleId::containing(self.clock.now());
        sale < active.hours_before(self.config.past_sales_retained_hours)
    }

    fn apply_added(
        &self,
        seq: u64,
        record: &CheckoutRecord,
        opened_cart: bool,
    ) -> Result<Applied, RecoveryError> {
        let bad = |why: String| RecoveryError::Record { seq, why };
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
        if item.sale != sale_id || item.index >= self.config.items_per_sale {
            return Err(bad(format!("item {item} is not an item of sale {sale_id}")));
        }
        let code = record
            .code()
            .ok_or_else(|| bad(format!("item {item} added for user {user} without a code")))?;
        let sale = self.sales.get_or_insert(sale_id);
        let mut stripe = sale.users.lock(user.as_str());
        let slot = match stripe.find(user.as_str()) {
            Some(slot) => slot,
            None if opened_cart => {
                replay_new_user(&sale, &mut stripe, user.as_str(), code).map_err(bad)?
            }
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

    fn apply_completed(&self, seq: u64, record: &PurchaseRecord) -> Result<Applied, RecoveryError> {
        let bad = |why: String| RecoveryError::Record { seq, why };
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
        let recorded: Vec<u32> = record.items.iter().map(|i| i.item_index).collect();
        let cart: Vec<u32> = state.cart().collect();
        if recorded != cart {
            return Err(bad(format!(
                "purchase of {code} by {user_text} lists items {recorded:?}, the cart holds {cart:?}"
            )));
        }
        let bought = record
            .items
            .iter()
            .filter(|i| i.outcome == ItemOutcome::Bought);
        for index in bought.map(|i| i.item_index) {
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
            items: record.items.clone().into(),
            seq,
        });
        Ok(Applied::Changed)
    }

    /// Checks the invariants of every held sale.
    pub fn audit(&self) -> Result<AuditReport, AuditError> {
        let mut report = AuditReport::default();
        for sale in self.sales.all() {
            let counts = self.audit_sale(&sale)?;
            report.sales += 1;
            report.items_sold += counts.items_sold;
            report.users += counts.users;
            report.open_carts += counts.open_carts;
            report.purchases += counts.purchases;
        }
        Ok(report)
    }

    fn audit_sale(&self, sale: &SaleState) -> Result<AuditReport, AuditError> {
        let fail = |why: String| AuditError { sale: sale.id, why };
        let item = |index: u32| ItemId {
            sale: sale.id,
            index,
        };
        let inventory = &sale.inventory;
        let (bits_set, items_sold) = (inventory.bits_set(), inventory.items_sold());
        if bits_set != items_sold {
            return Err(fail(format!(
                "{bits_set} sold bits set, but {items_sold} items counted sold"
            )));
        }
        // Which purchase (its seq) bought each item.
        let mut bought_by: HashMap<u32, u64> = HashMap::new();
        let mut report = AuditReport::default();
        self.audit_users(sale, &mut bought_by, &mut report)
            .map_err(fail)?;
        for (index, seq) in inventory.claims() {
            match (seq, bought_by.get(&index)) {
                (Some(seq), Some(&bought_seq)) if seq == bought_seq => {}
                (seq, bought) => {
                    return Err(fail(format!(
                        "item {} is sold by claim record {seq:?}, but bought by {bought:?}",
                        item(index)
                    )))
                }
            }
        }
        if bought_by.len() != bits_set as usize {
            let unset = bought_by
                .keys()
                .find(|&&i| !inventory.is_claimed(i))
                .copied();
            return Err(fail(format!(
                "item {:?} is bought but not marked sold",
                unset.map(item)
            )));
        }
        report.items_sold = u64::from(bits_set);
        Ok(report)
    }

    /// Checks every stripe and user of `sale`, and fills `bought_by` with
    /// the items the users' stored purchases bought.
    fn audit_users(
        &self,
        sale: &SaleState,
        bought_by: &mut HashMap<u32, u64>,
        report: &mut AuditReport,
    ) -> Result<(), String> {
        let mut problem = None;
        sale.users.for_each_stripe(|stripe| {
            if problem.is_some() {
                return;
            }
            let checked = stripe.check().and_then(|()| {
                stripe.iter().try_for_each(|(_, state)| {
                    report.users += 1;
                    report.open_carts += u64::from(state.open_secret().is_some());
                    report.purchases += state.purchases().count() as u64;
                    self.audit_user(sale.id, state, bought_by)
                })
            });
            problem = checked.err();
        });
        let counted = u64::from(sale.users.users_count());
        if problem.is_none() && counted != report.users {
            problem = Some(format!("{counted} users counted, {} held", report.users));
        }
        problem.map_or(Ok(()), Err)
    }

    /// Checks one user's counts, limit and codes, and records in
    /// `bought_by` what its purchases bought.
    fn audit_user(
        &self,
        sale: SaleId,
        state: &UserState,
        bought_by: &mut HashMap<u32, u64>,
    ) -> Result<(), String> {
        let (user, limit) = (state.id(), self.config.user_limit);
        let purchased = u32::from(state.purchased());
        let cart_len = state.cart_len() as u32;
        let mut bought = 0u32;
        let mut secrets: Vec<_> = state.open_secret().into_iter().collect();
        for purchase in state.purchases() {
            if secrets.contains(&purchase.secret) {
                return Err(format!("user {user} holds two codes with one secret"));
            }
            secrets.push(purchase.secret);
            let items = purchase.items();
            for index in items
                .filter(|i| i.outcome == ItemOutcome::Bought)
                .map(|i| i.item_index)
            {
                bought += 1;
                if let Some(earlier) = bought_by.insert(index, purchase.seq) {
                    let item = ItemId { sale, index };
                    return Err(format!(
                        "item {item} bought by records {earlier} and {}",
                        purchase.seq
                    ));
                }
            }
        }
        if purchased > limit {
            return Err(format!(
                "user {user} bought {purchased} items, over the limit {limit}"
            ));
        }
        if purchased != bought {
            return Err(format!(
                "user {user} counts {purchased} items bought, the purchases say {bought}"
            ));
        }
        if purchased + cart_len > limit {
            return Err(format!("user {user} has {cart_len} items in the cart after buying {purchased}, over the limit {limit}"));
        }
        Ok(())
    }

    /// Every held sale with something in it, for tests and diagnostics
    /// (walks the whole state: not for the request path).
    pub fn snapshot(&self) -> EngineSnapshot {
        let mut sales = BTreeMap::new();
        for sale in self.sales.all() {
            let snapshot = sale_snapshot(&sale);
            if !snapshot.is_empty() {
                sales.insert(sale.id, snapshot);
            }
        }
        EngineSnapshot { sales }
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

fn sale_snapshot(sale: &SaleState) -> SaleSnapshot {
    let mut users = BTreeMap::new();
    let mut codes = BTreeMap::new();
    sale.users.for_each_stripe(|stripe| {
        for (slot, state) in stripe.iter() {
            let user = state.id().to_string();
            let open_cart = stripe
                .open_code(slot)
                .map(|code| (code, state.cart().collect()));
            if let Some((code, _)) = &open_cart {
                codes.insert(*code, (user.clone(), None));
            }
            for purchase in state.purchases() {
                let snapshot = StoredPurchaseSnapshot {
                    items: purchase.items().collect(),
                    seq: purchase.seq,
                };
                let code = stripe.code(slot, purchase.secret);
                codes.insert(code, (user.clone(), Some(snapshot)));
            }
            let snapshot = UserSnapshot {
                purchased: state.purchased(),
                open_cart,
            };
            users.insert(user, snapshot);
        }
    });
    SaleSnapshot {
        sold: sale.inventory.claims(),
        items_sold: sale.inventory.items_sold(),
        users,
        codes,
    }
}

/// The engine's whole state, comparable with `==`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSnapshot {
    pub sales: BTreeMap<SaleId, SaleSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleSnapshot {
    /// Every item with its sold bit set, with the seq that sold it.
    pub sold: Vec<(u32, Option<u64>)>,
    pub items_sold: u32,
    pub users: BTreeMap<String, UserSnapshot>,
    /// Every code: its user and, once purchased, the stored result.
    pub codes: BTreeMap<CheckoutCode, (String, Option<StoredPurchaseSnapshot>)>,
}

impl SaleSnapshot {
    fn is_empty(&self) -> bool {
        self.sold.is_empty() && self.users.is_empty() && self.codes.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSnapshot {
    pub purchased: u16,
    pub open_cart: Option<(CheckoutCode, Vec<u32>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPurchaseSnapshot {
    pub items: Vec<PurchaseItem>,
    pub seq: u64,
}
