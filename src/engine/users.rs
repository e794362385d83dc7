//! The users of one sale: how many items each bought and their open cart.
//!
//! Users live in a fixed number of stripes, each a mutex around a hash map.
//! The stripe's mutex is "the user's lock": the engine holds it while it
//! decides, appends the record and applies the outcome, so concurrent
//! requests of one user are serialised (never two carts, never over the
//! limit) while requests of other users mostly run in parallel. The state is
//! compact because a sale may hold millions of users: a user id shared with
//! the code index (`Arc<str>`), counts as `u16`, the code as 16 bytes
//! without `u128`'s alignment, and the first cart items inline.
//!
//! Promises: a user has an entry only after something was added to a cart
//! (rejected requests leave nothing behind); a user's open cart is never
//! empty; the number of users per sale is bounded by `users_max`.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use crate::domain::CheckoutCode;

/// Stripes per sale: enough that two busy users rarely share a lock on a
/// small machine, few enough that an untouched sale costs little.
pub const USER_STRIPES: usize = 256;

/// Cart items kept inline before spilling to the heap (typical carts are
/// small; the limit is at most 1000). Three keep `UserState` at 48 bytes.
const CART_ITEMS_INLINE: usize = 3;

/// The item indices of an open cart, in insertion order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CartItems {
    len: u16,
    inline: [u32; CART_ITEMS_INLINE],
    /// A thin pointer (8 bytes) rather than a `Vec` (24): most carts
    /// never spill, and every user pays for this field.
    #[allow(clippy::box_collection)]
    spilled: Option<Box<Vec<u32>>>,
}

impl CartItems {
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let inline_len = self.len().min(CART_ITEMS_INLINE);
        let spilled = self.spilled.as_deref().map(Vec::as_slice).unwrap_or(&[]);
        self.inline[..inline_len]
            .iter()
            .chain(spilled.iter())
            .copied()
    }

    pub fn contains(&self, index: u32) -> bool {
        self.iter().any(|i| i == index)
    }

    /// Appends an item that is not in the cart yet.
    pub fn push(&mut self, index: u32) {
        debug_assert!(!self.contains(index), "item {index} twice in a cart");
        assert!(self.len < u16::MAX, "cart bounded by the user limit");
        let position = self.len();
        if position < CART_ITEMS_INLINE {
            self.inline[position] = index;
        } else {
            self.spilled
                .get_or_insert_with(Default::default)
                .push(index);
        }
        self.len += 1;
        debug_assert_eq!(self.iter().count(), self.len());
    }

    pub fn to_vec(&self) -> Vec<u32> {
        self.iter().collect()
    }
}

/// One user in one sale.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UserState {
    /// Items bought in this sale (at most the user limit).
    pub purchased: u16,
    /// Code of the open cart, little-endian; meaningful only if `cart` is
    /// not empty (kept as bytes to avoid `u128`'s 16-byte alignment).
    code_bytes: [u8; 16],
    /// The open cart's items; empty when no cart is open.
    pub cart: CartItems,
}

impl UserState {
    pub fn open_code(&self) -> Option<CheckoutCode> {
        if self.cart.is_empty() {
            return None;
        }
        Some(CheckoutCode::from_u128(u128::from_le_bytes(
            self.code_bytes,
        )))
    }

    /// Opens a cart named `code` with its first item.
    pub fn open_cart(&mut self, code: CheckoutCode, index: u32) {
        assert!(self.cart.is_empty(), "one open cart per user per sale");
        self.code_bytes = code.as_u128().to_le_bytes();
        self.cart.push(index);
        debug_assert_eq!(self.open_code(), Some(code));
    }

    /// Closes the open cart after its purchase bought `bought` items.
    pub fn close_cart(&mut self, bought: u16) {
        debug_assert!(!self.cart.is_empty(), "closing a cart that is not open");
        self.purchased = self.purchased.saturating_add(bought);
        self.cart = CartItems::default();
        self.code_bytes = [0; 16];
    }
}

/// One stripe: the users whose id hashes to it.
#[derive(Debug, Default)]
pub struct UserStripe {
    users: HashMap<Arc<str>, UserState>,
}

impl UserStripe {
    pub fn get(&self, user: &str) -> Option<&UserState> {
        self.users.get(user)
    }

    pub fn get_mut(&mut self, user: &str) -> Option<&mut UserState> {
        self.users.get_mut(user)
    }

    /// The user's entry, created if missing, with the shared key.
    pub fn entry(&mut self, user: &str) -> (Arc<str>, &mut UserState) {
        let key = match self.users.get_key_value(user) {
            Some((key, _)) => Arc::clone(key),
            None => Arc::from(user),
        };
        let state = self.users.entry(Arc::clone(&key)).or_default();
        (key, state)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &UserState)> {
        self.users.iter()
    }
}

/// The users of one sale.
#[derive(Debug)]
pub struct UserTable {
    stripes: Box<[Mutex<UserStripe>]>,
    hasher: RandomState,
    users_count: AtomicU32,
    users_max: u32,
}

impl UserTable {
    pub fn new(users_max: u32) -> UserTable {
        UserTable {
            stripes: (0..USER_STRIPES).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            users_count: AtomicU32::new(0),
            users_max,
        }
    }

    /// Locks the stripe of `user`: the user's lock.
    pub fn lock(&self, user: &str) -> MutexGuard<'_, UserStripe> {
        let stripe = self.hasher.hash_one(user) as usize % USER_STRIPES;
        self.stripes[stripe].lock()
    }

    /// Takes one of the `users_max` places for a new user; false if full.
    pub fn try_reserve_user(&self) -> bool {
        self.users_count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
                (count < self.users_max).then_some(count + 1)
            })
            .is_ok()
    }

    /// Gives back a place taken by `try_reserve_user` that was not used.
    pub fn release_user(&self) {
        let before = self.users_count.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0);
    }

    /// Takes a place without the bound (replay applies what was decided).
    pub fn count_user(&self) {
        self.users_count.fetch_add(1, Ordering::AcqRel);
    }

    pub fn users_count(&self) -> u32 {
        self.users_count.load(Ordering::Acquire)
    }

    /// Calls `visit` for every user, one stripe locked at a time.
    pub fn for_each(&self, mut visit: impl FnMut(&Arc<str>, &UserState)) {
        for stripe in self.stripes.iter() {
            let stripe = stripe.lock();
            for (user, state) in stripe.iter() {
                visit(user, state);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cart_items_keep_insertion_order_past_the_inline_part() {
        let mut items = CartItems::default();
        for index in [9, 3, 7, 1, 8, 2] {
            items.push(index);
        }
        assert_eq!(items.to_vec(), vec![9, 3, 7, 1, 8, 2]);
        assert_eq!(items.len(), 6);
        assert!(items.contains(2) && !items.contains(4));
    }

    #[test]
    fn cart_opens_and_closes() {
        let mut user = UserState::default();
        assert_eq!(user.open_code(), None);
        let code = CheckoutCode::from_u128(u128::MAX - 5);
        user.open_cart(code, 4);
        user.cart.push(5);
        assert_eq!(user.open_code(), Some(code));
        user.close_cart(2);
        assert_eq!(user.open_code(), None);
        assert_eq!(user.purchased, 2);
    }

    #[test]
    fn user_state_is_compact() {
        // Key (16) + state must stay small: a sale may hold millions.
        assert!(std::mem::size_of::<UserState>() <= 48);
        assert!(std::mem::size_of::<(Arc<str>, UserState)>() <= 64);
    }

    #[test]
    fn users_bound_is_enforced_and_released() {
        let table = UserTable::new(2);
        assert!(table.try_reserve_user());
        assert!(table.try_reserve_user());
        assert!(!table.try_reserve_user());
        table.release_user();
        assert!(table.try_reserve_user());
        assert_eq!(table.users_count(), 2);
    }

    #[test]
    fn entry_shares_the_key() {
        let table = UserTable::new(10);
        let mut stripe = table.lock("alice");
        let (key, state) = stripe.entry("alice");
        state.purchased = 1;
        assert_eq!(&*key, "alice");
        assert_eq!(stripe.get("alice").map(|u| u.purchased), Some(1));
        let (again, _) = stripe.entry("alice");
        assert!(Arc::ptr_eq(&key, &again));
    }
}
