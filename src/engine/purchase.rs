//! The purchase decision: find the cart a code names, claim its items in
//! cart order (one `fetch_or` each), record the outcome, then publish the
//! claims, close the cart and store the result with its owner. A repeated
//! purchase of the same code answers the stored result again.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::claim_wait::ClaimWait;
use super::codes::{self, StoredPurchase};
use super::inventory::Inventory;
use super::outcome::{indices_with, ItemOutcome, PurchaseItem, Rejection};
use super::overflow::PurchaseWords;
use super::record::{PurchaseOutcome, PurchaseRecord, Record};
use super::sales::SaleState;
use super::users::{UserState, UserStripe};
use super::views::{decided, purchase_view, Decided, PurchaseView};
use super::{Engine, EngineError};
use crate::domain::{CheckoutCode, SaleId};

impl Engine {
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
        let wait = ClaimWait::Items(indices_with(&items, ItemOutcome::SoldOut));
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
        assert_eq!(stripe.open_code(slot), Some(code), "not the open cart");
        let state = stripe.user_mut(slot);
        let items = self.claim_cart(&sale.inventory, state);
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
        assert!(u32::from(state.purchased()) <= self.config.user_limit);
        let wait = ClaimWait::Items(indices_with(&items, ItemOutcome::SoldOut));
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
