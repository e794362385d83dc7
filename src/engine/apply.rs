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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::domain::{CheckoutCode, ItemId, SaleId, UserId};
use crate::journal::{
    CheckoutOutcome, CheckoutRecord, ItemOutcome, PurchaseItem, PurchaseOutcome, PurchaseRecord,
    Record,
};
use crate::recovery::{AuditError, AuditReport, RecoveryError};

use super::codes::StoredPurchase;
use super::sales::SaleState;
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
        let is_new_user = stripe.get(user.as_str()).is_none();
        let (key, state) = stripe.entry(user.as_str());
        if is_new_user {
            sale.users.count_user();
        }
        match (opened_cart, state.open_code()) {
            (true, None) => {
                state.open_cart(code, item.index);
                if !sale.codes.insert_open(code, key) {
                    return Err(bad(format!(
                        "user {user} opened a cart with code {code}, which is taken"
                    )));
                }
            }
            (false, Some(open)) if open == code && !state.cart.contains(item.index) => {
                state.cart.push(item.index)
            }
            (_, open) => {
                return Err(bad(format!(
                    "user {user} added item {item} to cart {code} (opened: {opened_cart}), \
                     but the open cart is {open:?}"
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
        let state = stripe
            .get_mut(user_text)
            .filter(|state| state.open_code() == Some(code))
            .ok_or_else(|| {
                bad(format!(
                    "user {user_text} has no open cart {code} to purchase"
                ))
            })?;
        let recorded: Vec<u32> = record.items.iter().map(|i| i.item_index).collect();
        if recorded != state.cart.to_vec() {
            return Err(bad(format!(
                "purchase of {code} by {user_text} lists items {recorded:?}, the cart holds {:?}",
                state.cart.to_vec()
            )));
        }
        let bought: Vec<u32> = record
            .items
            .iter()
            .filter(|i| i.outcome == ItemOutcome::Bought)
            .map(|i| i.item_index)
            .collect();
        for &index in &bought {
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
        state.close_cart(u16::try_from(bought.len()).unwrap_or(u16::MAX));
        let stored = StoredPurchase {
            items: record.items.clone().into(),
            seq,
        };
        if !sale.codes.store_purchase(code, stored) {
            return Err(bad(format!(
                "code {code} of user {user_text} is not an open cart"
            )));
        }
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
        // Which purchase bought each item, and how many each user bought.
        let mut bought_by: HashMap<u32, (u64, Arc<str>)> = HashMap::new();
        let mut bought_per_user: HashMap<Arc<str>, u32> = HashMap::new();
        let mut open_codes: HashMap<Arc<str>, CheckoutCode> = HashMap::new();
        let mut report = AuditReport::default();
        let mut duplicate = None;
        sale.codes.for_each(|code, entry| {
            let Some(purchase) = &entry.purchase else {
                open_codes.insert(Arc::clone(&entry.user), code);
                return;
            };
            report.purchases += 1;
            for bought in purchase
                .items
                .iter()
                .filter(|i| i.outcome == ItemOutcome::Bought)
            {
                *bought_per_user.entry(Arc::clone(&entry.user)).or_default() += 1;
                let previous =
                    bought_by.insert(bought.item_index, (purchase.seq, Arc::clone(&entry.user)));
                if let Some((earlier, _)) = previous {
                    duplicate = Some((bought.item_index, earlier, purchase.seq));
                }
            }
        });
        if let Some((index, earlier, later)) = duplicate {
            return Err(fail(format!(
                "item {} bought by records {earlier} and {later}",
                item(index)
            )));
        }
        for (index, seq) in inventory.claims() {
            match (seq, bought_by.get(&index)) {
                (Some(seq), Some((bought_seq, _))) if seq == *bought_seq => {}
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
        self.audit_users(sale, &bought_per_user, &mut open_codes, &mut report)
            .map_err(fail)?;
        if let Some((user, code)) = open_codes.into_iter().next() {
            return Err(fail(format!(
                "code {code} names an open cart of {user}, who has none"
            )));
        }
        Ok(report)
    }

    /// Checks every user of `sale`; removes the users' codes from
    /// `open_codes`, so what remains names carts nobody has.
    fn audit_users(
        &self,
        sale: &SaleState,
        bought_per_user: &HashMap<Arc<str>, u32>,
        open_codes: &mut HashMap<Arc<str>, CheckoutCode>,
        report: &mut AuditReport,
    ) -> Result<(), String> {
        let limit = self.config.user_limit;
        let mut problem = None;
        sale.users.for_each(|user, state| {
            report.users += 1;
            let purchased = u32::from(state.purchased);
            let bought = bought_per_user.get(user).copied().unwrap_or(0);
            let cart_len = state.cart.len() as u32;
            let open = state.open_code();
            let indexed = open_codes.remove(user);
            report.open_carts += u64::from(open.is_some());
            let why = if purchased > limit {
                format!("user {user} bought {purchased} items, over the limit {limit}")
            } else if purchased != bought {
                format!("user {user} counts {purchased} items bought, the purchases say {bought}")
            } else if purchased + cart_len > limit {
                format!("user {user} has {cart_len} items in the cart after buying {purchased}, over the limit {limit}")
            } else if open != indexed {
                format!("user {user} has open cart {open:?}, the code index says {indexed:?}")
            } else {
                return;
            };
            problem.get_or_insert(why);
        });
        let counted = u64::from(sale.users.users_count());
        if counted != report.users {
            problem.get_or_insert(format!("{counted} users counted, {} held", report.users));
        }
        problem.map_or(Ok(()), Err)
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

fn sale_snapshot(sale: &SaleState) -> SaleSnapshot {
    let mut users = BTreeMap::new();
    sale.users.for_each(|user, state| {
        let open_cart = state.open_code().map(|code| (code, state.cart.to_vec()));
        let snapshot = UserSnapshot {
            purchased: state.purchased,
            open_cart,
        };
        users.insert(user.to_string(), snapshot);
    });
    let mut codes = BTreeMap::new();
    sale.codes.for_each(|code, entry| {
        let purchase = entry.purchase.as_ref().map(|p| StoredPurchaseSnapshot {
            items: p.items.to_vec(),
            seq: p.seq,
        });
        codes.insert(code, (entry.user.to_string(), purchase));
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
