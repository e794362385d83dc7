//! The checkout decision: the contract's order of checks, then the record,
//! then (only once the record is appended) the change to the user's cart.
//!
//! A checkout never claims an item (no reservation); it only checks that
//! the item is unsold and the user is under the limit, so a rejection here
//! is the only thing that depends on other users' claims (`claim_wait`).

use chrono::{DateTime, Utc};

use super::claim_wait::ClaimWait;
use super::codes::CodeSecret;
use super::outcome::Rejection;
use super::record::{CheckoutOutcome, CheckoutRecord, Record};
use super::sales::{SaleState, FUTURE_SALES_KNOWN_HOURS};
use super::users::{UserState, UserStripe};
use super::views::{decided, open_cart_view, CartView, Decided};
use super::{Engine, EngineError, CODE_GENERATION_ATTEMPTS_MAX};
use crate::domain::{CheckoutCode, ItemId, SaleId, UserId};

/// What a checkout decides, before anything is recorded.
#[derive(Debug)]
enum CheckoutDecision {
    Reject(Rejection, ClaimWait),
    AlreadyInCart,
    Add,
}

impl Engine {
    /// Adds `item` to the user's cart in the active sale.
    pub fn checkout(&self, user: &UserId, item: ItemId) -> Result<Decided<CartView>, EngineError> {
        let now = self.now();
        let active = self.sales.active(now);
        self.open_sale(&active, now)?;
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
        assert!(code.is_some(), "already in a cart that is not open");
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
        if !self.is_known_item(active, item) {
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
        if purchased as usize + cart_len >= active.settings.user_limit as usize {
            return Reject(Rejection::UserLimitReached, ClaimWait::Nothing);
        }
        CheckoutDecision::Add
    }

    /// Whether `item` names an item of a sale the engine answers for: the
    /// retained past sales, the active one, and the next day's, each with
    /// its own number of items.
    fn is_known_item(&self, active: &SaleState, item: ItemId) -> bool {
        if item.sale == active.id {
            return item.index < active.settings.items_per_sale;
        }
        if item.index >= self.settings_of(item.sale).items_per_sale {
            return false;
        }
        let hours = active.id.hours_until(item.sale);
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
            None => match self.reserve_slot(active, stripe)? {
                Some(reserved) => Some(reserved),
                None => return self.reject_sale_full(active, user, item, now),
            },
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
        assert_eq!(slot, target, "a new user gets the reserved slot");
        let state = stripe.user_mut(slot);
        match open_secret {
            None => state.open_cart(secret, item.index),
            Some(_) => state.cart_push(item.index),
        }
        assert!(
            usize::from(state.purchased()) + state.cart_len()
                <= active.settings.user_limit as usize,
            "no user over the limit"
        );
        let view = open_cart_view(active, stripe, Some(slot), user);
        Ok((decided(Ok(view), seq), ClaimWait::Nothing))
    }

    /// The slot the new user will get, with one of the sale's places for
    /// users taken; `None` if the sale holds `users_per_sale_max` users
    /// (the contract's `sale_full`). `Overloaded` (503) if the stripe's
    /// slot table is full: unreachable while `users_per_sale_max` is at
    /// most `SLOTS_PER_STRIPE_MAX` (as `EngineConfig::validate` demands),
    /// since a stripe never holds more users than its sale, and kept as
    /// the engine's own bound.
    fn reserve_slot(
        &self,
        active: &SaleState,
        stripe: &UserStripe,
    ) -> Result<Option<u32>, EngineError> {
        if !active.users.try_reserve_user() {
            return Ok(None);
        }
        let Some(slot) = stripe.next_slot() else {
            active.users.release_user();
            return Err(EngineError::Overloaded);
        };
        Ok(Some(slot))
    }

    /// Records and answers `sale_full` for a new user: like every 409, a
    /// log record; it creates nothing (the user gets no slot).
    fn reject_sale_full(
        &self,
        active: &SaleState,
        user: &UserId,
        item: ItemId,
        now: DateTime<Utc>,
    ) -> Result<(Decided<CartView>, ClaimWait), EngineError> {
        let outcome = CheckoutOutcome::Rejected(Rejection::SaleFull);
        let seq = self.append_checkout(now, active.id, user, item, None, outcome)?;
        Ok((decided(Err(Rejection::SaleFull), seq), ClaimWait::Nothing))
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
            let secret = CodeSecret::generate().map_err(EngineError::CodeGeneration)?;
            if !user.is_some_and(|u| u.holds_secret(secret)) {
                return Ok(secret);
            }
        }
        Err(EngineError::CodeClash)
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
}
