//! Who owns the cart a code names, without deciding anything: the per-user
//! rate limit of purchases (`limits`) keys a purchase by its cart's owner.
//!
//! Only the active sale is asked (one stripe lock, no record, no change):
//! that is where purchases that matter are made, and it keeps the lookup
//! cheap. A code of a past sale, or one naming nobody, has no owner here;
//! such purchases are limited per client address only.

use super::codes;
use super::Engine;
use crate::domain::{CheckoutCode, UserId};

impl Engine {
    /// The owner of the cart `code` names in the active sale (open or
    /// bought), if a user of the active sale holds all 128 bits of it.
    pub fn owner_in_active_sale(&self, code: CheckoutCode) -> Option<UserId> {
        let active = self.sales.active(self.now());
        let (secret, locator) = codes::split(code);
        let stripe = active.users.lock_stripe(locator.stripe);
        let state = stripe.get(locator.slot)?;
        if !state.holds_secret(secret) {
            return None;
        }
        UserId::parse(state.id()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::Fixture;
    use crate::domain::CheckoutCode;

    #[test]
    fn a_code_names_its_owner_and_a_forged_one_names_nobody() {
        let f = Fixture::small();
        let cart = f.cart("alice", 0).code;
        assert_eq!(
            f.engine.owner_in_active_sale(cart).map(|u| u.to_string()),
            Some("alice".to_string())
        );
        let forged = CheckoutCode::from_u128(cart.as_u128() ^ (1 << 100));
        assert_eq!(f.engine.owner_in_active_sale(forged), None);
    }
}
