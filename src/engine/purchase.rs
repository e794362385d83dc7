//! The purchase decision: find the cart a code names, claim its items in
//! cart order (one `fetch_or` each), record the outcome, then publish the
//! claims, close the cart and store the result with its owner. A repeated
//! purchase of the same code answers the stored result again.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::codes::{self, StoredPurchase};
use super::outcome::{indices_with, ItemOutcome, PurchaseItem, Rejection};
use super::overflow::PurchaseWords;
use super::record::{ForeignCodeRecord, PurchaseOutcome, PurchaseRecord, Record};
use super::sales::SaleState;
use super::users::{UserState, UserStripe};
use super::views::{decided, purchase_view, Decided, PurchaseView};
use super::{Engine, EngineError};
use crate::domain::{CheckoutCode, SaleId, UserId};

impl Engine {
    /// Buys what is still unsold of the cart named `code`. The code names
    /// its owner's slot but not the sale: the active sale is asked first,
    /// then the retained ones, newest first.
    pub fn purchase(&self, code: CheckoutCode) -> Result<Decided<PurchaseView>, EngineError> {
        self.purchase_as(code, None)
    }

    /// `purchase`, by `acting` when identity is on: a cart of another user
    /// is not found, exactly like an unknown code (same answer, same
    /// record), and is left untouched.
    pub fn purchase_as(
        &self,
        code: CheckoutCode,
        acting: Option<&UserId>,
    ) -> Result<Decided<PurchaseView>, EngineError> {
        let now = self.now();
        let active = self.sales.active(now);
        let others = std::iter::once_with(|| self.sales.others_newest_first(&active));
        let candidates = std::iter::once(Arc::clone(&active)).chain(others.flatten());
        for sale in candidates {
            if let Some(found) = self.purchase_in(&sale, code, acting, active.id, now) {
                return found;
            }
        }
        let outcome = PurchaseOutcome::Rejected(Rejection::CheckoutNotFound);
        let seq = self.append(&purchase_record(now, code, None, outcome, Vec::new()))?;
        Ok(decided(Err(Rejection::CheckoutNotFound), seq))
    }

    /// A purchase with a code this server never issues: 404, recorded.
    pub fn purchase_foreign(&self, code: &str) -> Result<Decided<PurchaseView>, EngineError> {
        let record = Record::ForeignCode(ForeignCodeRecord {
            at_unix_ms: self.now().timestamp_millis(),
            code: code.to_string(),
        });
        let seq = self.append(&record)?;
        Ok(decided(Err(Rejection::CheckoutNotFound), seq))
    }

    /// The purchase decision for `code` in `sale`, under the owner's lock;
    /// `None` if no user of `sale` holds `code` (open or purchased), or if
    /// its holder is not `acting`.
    ///
    /// No answer here depends on a claim that is not in the log before its
    /// own record: a purchase that finds an item claimed waits (in
    /// `claim_cart`) until that claim's record is appended, so a "sold
    /// out" it stores is always told after the record that sold the item.
    fn purchase_in(
        &self,
        sale: &SaleState,
        code: CheckoutCode,
        acting: Option<&UserId>,
        active: SaleId,
        now: DateTime<Utc>,
    ) -> Option<Result<Decided<PurchaseView>, EngineError>> {
        let (secret, locator) = codes::split(code);
        let mut stripe = sale.users.lock_stripe(locator.stripe);
        let state = stripe.get(locator.slot)?;
        if acting.is_some_and(|user| user.as_str() != state.id()) {
            return None;
        }
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
            return Some(appended.map(|seq| decided(Err(Rejection::SaleNotActive), seq)));
        }
        Some(self.complete_purchase(sale, &mut stripe, locator.slot, code, now))
    }

    /// The stored answer again; it waits for what the first answer waited
    /// for: the first record (the claims it reports sold out come before
    /// it in the log).
    fn repeat_purchase(
        &self,
        sale: &SaleState,
        code: CheckoutCode,
        user: &str,
        stored: PurchaseWords<'_>,
        now: DateTime<Utc>,
    ) -> Result<Decided<PurchaseView>, EngineError> {
        let items: Vec<PurchaseItem> = stored.items().collect();
        let owner = Some((sale.id, user));
        let outcome = PurchaseOutcome::Replayed;
        let seq = self.append(&purchase_record(now, code, owner, outcome, items.clone()))?;
        Ok(Decided {
            answer: Ok(purchase_view(sale.id, user, code, items)),
            seq,
            wait_seq: seq.max(stored.seq),
        })
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
    ) -> Result<Decided<PurchaseView>, EngineError> {
        assert_eq!(stripe.open_code(slot), Some(code), "not the open cart");
        let state = stripe.user_mut(slot);
        let items = self.claim_cart(sale, state)?;
        let bought = indices_with(&items, ItemOutcome::Bought);
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
        sale.inventory
            .publish(&bought, seq, self.journal.durable_seq());
        let (secret, _) = codes::split(code);
        let stored = StoredPurchase {
            secret,
            items: items.clone().into(),
            seq,
        };
        state.close_cart(stored);
        assert!(
            u32::from(state.purchased()) <= sale.settings.user_limit,
            "no user over the limit"
        );
        let view = purchase_view(sale.id, state.id(), code, items);
        Ok(decided(Ok(view), seq))
    }

    /// Claims the cart's items (the first ones in cart order that the
    /// user's limit leaves room for). Changes only the sold bits: the
    /// user's state changes after the append.
    ///
    /// Claims are made in ascending item order, and an item claimed by
    /// another purchase is waited for (its record appended) before going
    /// on: a waiter holds only claims of lower items than the one it waits
    /// for, so two purchases can never wait for each other.
    fn claim_cart(
        &self,
        sale: &SaleState,
        state: &UserState,
    ) -> Result<Vec<PurchaseItem>, EngineError> {
        let room = sale
            .settings
            .user_limit
            .saturating_sub(u32::from(state.purchased())) as usize;
        let mut items: Vec<PurchaseItem> = state
            .cart()
            .enumerate()
            .map(|(position, item_index)| PurchaseItem {
                item_index,
                outcome: if position < room {
                    ItemOutcome::SoldOut
                } else {
                    ItemOutcome::UserLimit
                },
            })
            .collect();
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_unstable_by_key(|&position| items[position].item_index);
        for position in order {
            let item = &mut items[position];
            if item.outcome == ItemOutcome::UserLimit {
                continue;
            }
            if sale.inventory.try_claim(item.item_index) {
                item.outcome = ItemOutcome::Bought;
            } else if let Err(source) = sale.inventory.wait_claim_seq(item.item_index) {
                let claimed = indices_with(&items, ItemOutcome::Bought);
                claimed.iter().for_each(|&index| sale.inventory.fail(index));
                return Err(EngineError::ClaimNotRecorded {
                    sale: sale.id,
                    source,
                });
            }
        }
        Ok(items)
    }
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

#[cfg(test)]
mod acting_user_tests {
    use super::super::fixtures::{user, Fixture};
    use crate::engine::{Record, Rejection};

    #[test]
    fn another_users_code_is_not_found_recorded_like_an_unknown_code_and_left_open() {
        let f = Fixture::small();
        let cart = f.cart("alice", 0);
        let before = f.engine.snapshot();
        let stolen = f.engine.purchase_as(cart.code, Some(&user("mallory")));
        assert_eq!(stolen.unwrap().answer, Err(Rejection::CheckoutNotFound));
        let Record::Purchase(record) = f.journal.last() else {
            panic!("purchase record expected");
        };
        assert_eq!((record.sale_id, record.user_id), (None, None));
        assert_eq!(f.engine.snapshot(), before, "the cart is untouched");
        let own = f.engine.purchase_as(cart.code, Some(&user("alice")));
        assert!(own.unwrap().answer.unwrap().success());
        let again = f.engine.purchase_as(cart.code, Some(&user("mallory")));
        assert_eq!(again.unwrap().answer, Err(Rejection::CheckoutNotFound));
    }
}
