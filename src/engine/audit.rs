//! The audit after every start: replay only checks that each record fits
//! the state before it; the audit checks the whole (each sold item has
//! exactly one purchase that bought it and its bit set, the sold count
//! equals the bits set, no user over the limit, carts within what the
//! limit leaves, codes and carts agree). A log that passes both rebuilds
//! exactly the state the engine had before the crash.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::outcome::{ItemOutcome, PurchaseItem};
use super::sales::SaleState;
use super::users::{UserState, USER_STRIPES};
use super::Engine;
use crate::domain::{ItemId, SaleId};

/// An invariant that the state breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sale {sale}: {why}")]
#[non_exhaustive]
pub struct AuditError {
    pub sale: SaleId,
    pub why: String,
}

/// What the audit looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditReport {
    pub sales: u64,
    pub items_sold: u64,
    pub users: u64,
    pub open_carts: u64,
    pub purchases: u64,
}

impl Engine {
    /// Checks the invariants of every held sale, on one thread.
    pub fn audit(&self) -> Result<AuditReport, AuditError> {
        self.audit_with_threads(1)
    }

    /// `audit` with the users of each sale shared among up to `threads`
    /// threads by stripe (a start has the machine to itself).
    pub fn audit_with_threads(&self, threads: usize) -> Result<AuditReport, AuditError> {
        let mut report = AuditReport::default();
        for sale in self.sales.all() {
            let counts = self.audit_sale(&sale, threads)?;
            report.sales += 1;
            report.items_sold += counts.items_sold;
            report.users += counts.users;
            report.open_carts += counts.open_carts;
            report.purchases += counts.purchases;
        }
        Ok(report)
    }

    fn audit_sale(&self, sale: &SaleState, threads: usize) -> Result<AuditReport, AuditError> {
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
        // Which purchase (its seq; 0: none) bought each item, by index.
        let bought_by = BoughtBy::new(inventory.items_total());
        let mut report = audit_users(sale, &bought_by, threads).map_err(fail)?;
        for (index, seq) in inventory.claims() {
            match (seq, bought_by.get(index)) {
                (Some(seq), Some(bought_seq)) if seq == bought_seq => {}
                (seq, bought) => {
                    return Err(fail(format!(
                        "item {} is sold by claim record {seq:?}, but bought by {bought:?}",
                        item(index)
                    )))
                }
            }
        }
        if bought_by.len() != bits_set as usize {
            let unset = bought_by.indices().find(|&i| !inventory.is_claimed(i));
            return Err(fail(format!(
                "item {:?} is bought but not marked sold",
                unset.map(item)
            )));
        }
        report.items_sold = u64::from(bits_set);
        Ok(report)
    }
}

/// Checks every stripe and user of `sale` with up to `threads` threads
/// (each owning whole stripes), and fills `bought_by` with the items the
/// users' stored purchases bought.
fn audit_users(
    sale: &SaleState,
    bought_by: &BoughtBy,
    threads: usize,
) -> Result<AuditReport, String> {
    let parts = threads.clamp(1, USER_STRIPES);
    let audit_part = |part: usize| -> Result<AuditReport, String> {
        let mut report = AuditReport::default();
        for number in (part..USER_STRIPES).step_by(parts) {
            let stripe = sale.users.lock_stripe(number);
            stripe.check()?;
            for (_, state) in stripe.iter() {
                report.users += 1;
                report.open_carts += u64::from(state.open_secret().is_some());
                report.purchases += state.purchases().count() as u64;
                audit_user(sale, state, bought_by)?;
            }
        }
        Ok(report)
    };
    let results: Vec<Result<AuditReport, String>> = if parts == 1 {
        vec![audit_part(0)]
    } else {
        let audit_part = &audit_part;
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..parts)
                .map(|part| scope.spawn(move || audit_part(part)))
                .collect();
            let joined = handles.into_iter().map(|handle| handle.join());
            let panicked = || Err("an audit thread panicked".to_string());
            joined
                .map(|result| result.unwrap_or_else(|_| panicked()))
                .collect()
        })
    };
    let mut report = AuditReport::default();
    for part in results {
        let part = part?;
        report.users += part.users;
        report.open_carts += part.open_carts;
        report.purchases += part.purchases;
    }
    let counted = u64::from(sale.users.users_count());
    if counted != report.users {
        return Err(format!("{counted} users counted, {} held", report.users));
    }
    Ok(report)
}

/// Checks one user's counts, limit and codes, and records in `bought_by`
/// what its purchases bought.
fn audit_user(sale: &SaleState, state: &UserState, bought_by: &BoughtBy) -> Result<(), String> {
    let (user, limit) = (state.id(), sale.settings.user_limit);
    let purchased = u32::from(state.purchased());
    let cart_len = state.cart_len() as u32;
    let mut bought = 0u32;
    let open = state.open_secret();
    for (n, purchase) in state.purchases().enumerate() {
        // Purchases per user are few: a quadratic check allocates nothing.
        let mut earlier = state.purchases().take(n).map(|p| p.secret);
        if open == Some(purchase.secret) || earlier.any(|secret| secret == purchase.secret) {
            return Err(format!("user {user} holds two codes with one secret"));
        }
        check_sold_out_before(sale, purchase.items(), purchase.seq)
            .map_err(|why| format!("user {user}'s purchase: {why}"))?;
        let items = purchase.items();
        for index in items.filter(|i| i.is_bought()).map(|i| i.item_index) {
            bought += 1;
            if let Some(earlier) = bought_by.insert(index, purchase.seq)? {
                let item = ItemId {
                    sale: sale.id,
                    index,
                };
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

/// Which purchase bought each item of a sale: one word per item (dense,
/// as the sale's items are), 0 for none (no record has number 0); shared
/// by the audit's threads.
struct BoughtBy {
    seq_by_index: Vec<AtomicU64>,
    count: AtomicUsize,
}

impl BoughtBy {
    fn new(items_total: u32) -> BoughtBy {
        BoughtBy {
            seq_by_index: (0..items_total).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicUsize::new(0),
        }
    }

    /// Notes that record `seq` bought `index`; the earlier buyer if one
    /// did already.
    fn insert(&self, index: u32, seq: u64) -> Result<Option<u64>, String> {
        let Some(slot) = self.seq_by_index.get(index as usize) else {
            return Err(format!("item index {index} is past the sale's items"));
        };
        if seq == 0 {
            return Err(format!("item index {index} bought by record 0"));
        }
        match slot.compare_exchange(0, seq, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                self.count.fetch_add(1, Ordering::AcqRel);
                Ok(None)
            }
            Err(earlier) => Ok(Some(earlier)),
        }
    }

    fn get(&self, index: u32) -> Option<u64> {
        let slot = self.seq_by_index.get(index as usize)?;
        Some(slot.load(Ordering::Acquire)).filter(|&seq| seq != 0)
    }

    fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.seq_by_index.len() as u32).filter(|&index| self.get(index).is_some())
    }
}

/// Every item a purchase reports sold out was sold by an earlier record:
/// a "sold out" told before the claim it depends on could be kept by a
/// crash that loses the claim (a phantom).
fn check_sold_out_before(
    sale: &SaleState,
    items: impl Iterator<Item = PurchaseItem>,
    purchase_seq: u64,
) -> Result<(), String> {
    for item in items.filter(|i| i.outcome == ItemOutcome::SoldOut) {
        let index = item.item_index;
        match sale.inventory.published_seq(index) {
            Some(seq) if seq < purchase_seq => {}
            sold_by => {
                let item = ItemId {
                    sale: sale.id,
                    index,
                };
                return Err(format!(
                    "record {purchase_seq} reports item {item} sold out, but it was sold by \
                     {sold_by:?}, not by an earlier record"
                ));
            }
        }
    }
    Ok(())
}
