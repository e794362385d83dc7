//! The users of one sale: how many items each bought, their open cart and
//! the stored results of their purchases.
//!
//! Users live in a fixed number of stripes, each a mutex. The stripe's
//! mutex is "the user's lock": the engine holds it while it decides,
//! appends the record and applies the outcome, so concurrent requests of
//! one user are serialised (never two carts, never over the limit) while
//! requests of other users mostly run in parallel.
//!
//! Why it is shaped like this: a sale may hold millions of users and the
//! whole server has a memory budget, so a user costs one 64-byte slot plus
//! a few bytes of index, and nothing is kept twice:
//! - a stripe keeps its users densely, in creation order, in chunks of
//!   `SLOTS_PER_CHUNK` (no doubling slack: at most one partly filled chunk
//!   per stripe), and finds them through a hash table of 4-byte slot
//!   numbers whose hash and equality read the id in the slot;
//! - the id is stored once, inline for ids up to 24 bytes;
//! - a checkout code names the owner's stripe and slot (`codes`), so there
//!   is no separate code index; stored purchase results live with the user;
//! - rarely needed parts (cart items past the first two, stored purchases)
//!   are packed into one allocation that most users never make (`extra`).
//!
//! The stripe of a user comes from a fixed hash (`stripe_of`), not a random
//! one, and slots are numbered in creation order under the stripe's lock,
//! the same lock under which the creating record is appended. So replaying
//! the log in sequence order recreates every user in the same slot, and the
//! codes in the log keep naming their owners after a restart. The stripe
//! count, `stripe_of` and the slot numbering are therefore part of the
//! log's meaning: changing any of them makes codes in old logs stop
//! resolving (replay refuses such a log rather than misreading it).
//!
//! Promises: a user has a slot only after something was added to a cart
//! (rejected requests leave nothing behind); a slot is never removed or
//! renumbered while its sale is held; a user's open cart is never empty;
//! the number of users per sale is bounded by `users_max`, and per stripe by
//! `SLOTS_PER_STRIPE_MAX`.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, Ordering};

use compact_str::CompactString;
use hashbrown::{DefaultHashBuilder, HashTable};
use parking_lot::{Mutex, MutexGuard};

use crate::domain::CheckoutCode;

use super::codes::{self, CodeSecret, Locator, StoredPurchase, SLOTS_PER_STRIPE_MAX};
use super::overflow::{PurchaseWords, UserExtra};

/// Stripes per sale: enough that two busy users rarely share a lock on a
/// small machine, few enough that an untouched sale costs little. Codes
/// name the stripe in 8 bits, so this is fixed forever.
pub const USER_STRIPES: usize = 256;
const _: () = assert!(USER_STRIPES == codes::STRIPES_ADDRESSABLE);

/// Slots allocated at once in a stripe (256 × 64 bytes = 16 KiB): small
/// enough that the partly filled last chunks of 256 stripes reserve at most
/// 4 MiB per sale (and untouched pages of them are not even resident),
/// large enough that the chunk list stays short.
const SLOTS_PER_CHUNK: usize = 256;

/// Cart items kept in the slot before spilling to the heap (typical carts
/// are small; the limit is at most 1000). Two fill `UserState`'s 64 bytes.
const CART_ITEMS_INLINE: usize = 2;

/// The stripe of `user`: FNV-1a over the id's bytes, then murmur3's 64-bit
/// finaliser so the top bits depend on every byte; the top 8 bits pick the
/// stripe. Fixed (no random seed) because replay must find every user in
/// the stripe its codes name. Never change it.
pub fn stripe_of(user: &str) -> usize {
    const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = FNV_OFFSET_BASIS;
    for byte in user.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    (hash >> 56) as usize % USER_STRIPES
}

/// One user in one sale: the slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserState {
    id: CompactString,
    /// Spilled cart items and stored purchases; empty for most users.
    extra: UserExtra,
    /// Secret of the open cart's code; meaningful only while the cart is
    /// not empty.
    secret: CodeSecret,
    /// Items bought in this sale (at most the user limit).
    purchased: u16,
    cart_len: u16,
    cart_inline: [u32; CART_ITEMS_INLINE],
}

impl UserState {
    fn new(id: &str) -> UserState {
        UserState {
            id: CompactString::new(id),
            extra: UserExtra::default(),
            secret: CodeSecret::default(),
            purchased: 0,
            cart_len: 0,
            cart_inline: [0; CART_ITEMS_INLINE],
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Items bought in this sale.
    pub fn purchased(&self) -> u16 {
        self.purchased
    }

    pub fn cart_len(&self) -> usize {
        usize::from(self.cart_len)
    }

    /// The open cart's items in insertion order (none if no cart is open).
    pub fn cart(&self) -> impl Iterator<Item = u32> + '_ {
        let inline_len = self.cart_len().min(CART_ITEMS_INLINE);
        self.cart_inline[..inline_len]
            .iter()
            .chain(self.extra.cart_spilled())
            .copied()
    }

    pub fn cart_contains(&self, index: u32) -> bool {
        self.cart().any(|i| i == index)
    }

    /// The open cart's secret, if a cart is open.
    pub fn open_secret(&self) -> Option<CodeSecret> {
        (self.cart_len > 0).then_some(self.secret)
    }

    /// The stored purchase whose code has `secret`.
    pub fn purchase(&self, secret: CodeSecret) -> Option<PurchaseWords<'_>> {
        self.purchases().find(|p| p.secret == secret)
    }

    /// The stored purchases, oldest first.
    pub fn purchases(&self) -> impl Iterator<Item = PurchaseWords<'_>> {
        self.extra.purchases()
    }

    /// Whether a code of this user (open or purchased) has `secret`.
    pub fn holds_secret(&self, secret: CodeSecret) -> bool {
        self.open_secret() == Some(secret) || self.purchase(secret).is_some()
    }

    /// Opens a cart whose code has `secret`, with its first item.
    pub fn open_cart(&mut self, secret: CodeSecret, index: u32) {
        assert_eq!(self.cart_len, 0, "one open cart per user per sale");
        assert!(self.purchase(secret).is_none(), "code secret reused");
        self.secret = secret;
        self.cart_push(index);
        assert_eq!(self.open_secret(), Some(secret));
    }

    /// Appends an item that is not in the open cart yet.
    pub fn cart_push(&mut self, index: u32) {
        assert!(!self.cart_contains(index), "item {index} twice in a cart");
        assert!(self.cart_len < u16::MAX, "cart bounded by the user limit");
        let position = self.cart_len();
        if position < CART_ITEMS_INLINE {
            self.cart_inline[position] = index;
        } else {
            self.extra.push_cart_item(index);
        }
        self.cart_len += 1;
        assert_eq!(self.cart().count(), self.cart_len());
    }

    /// Closes the open cart with the result of its purchase, counting the
    /// items it bought.
    pub fn close_cart(&mut self, purchase: StoredPurchase) {
        assert!(self.cart_len > 0, "closing a cart that is not open");
        assert_eq!(self.open_secret(), Some(purchase.secret));
        let bought = purchase.bought_count();
        self.purchased = self.purchased.saturating_add(bought);
        self.cart_len = 0;
        self.cart_inline = [0; CART_ITEMS_INLINE];
        self.secret = CodeSecret::default();
        self.extra.clear_cart();
        self.extra.push_purchase(&purchase);
    }
}

/// One stripe: the users whose id hashes to it.
#[derive(Debug)]
pub struct UserStripe {
    /// This stripe's place in the table (codes name it).
    number: usize,
    /// Users in creation order: slot `n` is `chunks[n / SLOTS_PER_CHUNK]
    /// [n % SLOTS_PER_CHUNK]`; every chunk but the last is full.
    chunks: Vec<Vec<UserState>>,
    /// Slot numbers, hashed and compared by the id in the slot.
    index: HashTable<u32>,
    /// Random per stripe: the index's hash need not survive a restart,
    /// and a random seed keeps chosen ids from colliding on purpose.
    hasher: DefaultHashBuilder,
}

/// The user in `slot` of `chunks`, if it exists.
fn slot_in(chunks: &[Vec<UserState>], slot: u32) -> Option<&UserState> {
    let slot = slot as usize;
    chunks
        .get(slot / SLOTS_PER_CHUNK)?
        .get(slot % SLOTS_PER_CHUNK)
}

impl UserStripe {
    fn new(number: usize) -> UserStripe {
        UserStripe {
            number,
            chunks: Vec::new(),
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    /// Users in this stripe.
    pub fn len(&self) -> u32 {
        let full_chunks = self.chunks.len().saturating_sub(1) * SLOTS_PER_CHUNK;
        let last = self.chunks.last().map_or(0, Vec::len);
        (full_chunks + last) as u32
    }

    /// The slot of `user`, if the user has one.
    pub fn find(&self, user: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(user);
        let chunks = &self.chunks;
        let found = self.index.find(hash, |&slot| {
            slot_in(chunks, slot).is_some_and(|s| s.id() == user)
        });
        found.copied()
    }

    /// The user in `slot`, if the slot exists (`slot` may come from a
    /// client's code).
    pub fn get(&self, slot: u32) -> Option<&UserState> {
        slot_in(&self.chunks, slot)
    }

    /// The user in `slot`, which exists (found by `find` or `push`).
    pub fn user(&self, slot: u32) -> &UserState {
        match self.get(slot) {
            Some(state) => state,
            None => unreachable!("stripe {} has no slot {slot}", self.number),
        }
    }

    pub fn user_mut(&mut self, slot: u32) -> &mut UserState {
        let slot_usize = slot as usize;
        let chunk = self.chunks.get_mut(slot_usize / SLOTS_PER_CHUNK);
        match chunk.and_then(|c| c.get_mut(slot_usize % SLOTS_PER_CHUNK)) {
            Some(state) => state,
            None => unreachable!("stripe {} has no slot {slot}", self.number),
        }
    }

    pub fn locator(&self, slot: u32) -> Locator {
        Locator {
            stripe: self.number,
            slot,
        }
    }

    /// The code of the cart in `slot` whose secret is `secret`.
    pub fn code(&self, slot: u32, secret: CodeSecret) -> CheckoutCode {
        codes::compose(secret, self.locator(slot))
    }

    /// The code of the open cart in `slot`, if one is open.
    pub fn open_code(&self, slot: u32) -> Option<CheckoutCode> {
        let secret = self.user(slot).open_secret()?;
        Some(self.code(slot, secret))
    }

    /// The slot the next new user gets; `None` if the stripe is full.
    pub fn next_slot(&self) -> Option<u32> {
        let len = self.len();
        (len < SLOTS_PER_STRIPE_MAX).then_some(len)
    }

    /// Gives `user`, who has no slot, the next slot (`next_slot`, which
    /// must be `Some`) and returns it.
    pub fn push(&mut self, user: &str) -> u32 {
        assert!(self.find(user).is_none(), "user {user} has a slot");
        let Some(slot) = self.next_slot() else {
            unreachable!("stripe {} is full; next_slot says so first", self.number);
        };
        if self
            .chunks
            .last()
            .is_none_or(|c| c.len() == SLOTS_PER_CHUNK)
        {
            self.chunks.push(Vec::with_capacity(SLOTS_PER_CHUNK));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(UserState::new(user));
        }
        let hash = self.hasher.hash_one(user);
        let (index, rehash) = self.index_with_rehash();
        index.insert_unique(hash, slot, rehash);
        assert_eq!(self.find(user), Some(slot));
        slot
    }

    /// Makes room for `additional` more users without rehashing.
    pub fn reserve(&mut self, additional: usize) {
        let (index, rehash) = self.index_with_rehash();
        index.reserve(additional, rehash);
        self.chunks.reserve(additional / SLOTS_PER_CHUNK + 1);
    }

    /// The index, and the hash of the id in a slot it names (what the
    /// index needs when it grows), borrowed apart.
    fn index_with_rehash(&mut self) -> (&mut HashTable<u32>, impl Fn(&u32) -> u64 + '_) {
        let Self {
            chunks,
            index,
            hasher,
            ..
        } = self;
        let (chunks, hasher) = (&*chunks, &*hasher);
        let rehash = move |&s: &u32| hasher.hash_one(slot_in(chunks, s).map_or("", UserState::id));
        (index, rehash)
    }

    /// Every user with its slot, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &UserState)> {
        self.chunks.iter().flatten().zip(0..).map(|(s, n)| (n, s))
    }

    /// Checks that every user hashes to this stripe and that the index
    /// finds every user in its slot and nothing else.
    pub fn check(&self) -> Result<(), String> {
        if self.index.len() != self.len() as usize {
            return Err(format!(
                "stripe {} holds {} users, its index {}",
                self.number,
                self.len(),
                self.index.len()
            ));
        }
        for (slot, state) in self.iter() {
            let user = state.id();
            if stripe_of(user) != self.number {
                return Err(format!(
                    "user {user} is in stripe {}, hashes to {}",
                    self.number,
                    stripe_of(user)
                ));
            }
            if self.find(user) != Some(slot) {
                return Err(format!(
                    "user {user} is in {}, the index says {:?}",
                    self.locator(slot),
                    self.find(user)
                ));
            }
        }
        Ok(())
    }
}

/// The users of one sale.
#[derive(Debug)]
pub struct UserTable {
    stripes: Box<[Mutex<UserStripe>]>,
    users_count: AtomicU32,
    users_max: u32,
}

impl UserTable {
    pub fn new(users_max: u32) -> UserTable {
        UserTable {
            stripes: (0..USER_STRIPES)
                .map(|n| Mutex::new(UserStripe::new(n)))
                .collect(),
            users_count: AtomicU32::new(0),
            users_max,
        }
    }

    /// Locks the stripe of `user`: the user's lock.
    pub fn lock(&self, user: &str) -> MutexGuard<'_, UserStripe> {
        self.lock_stripe(stripe_of(user))
    }

    /// Locks stripe `stripe` (`< USER_STRIPES`, as every locator's is).
    pub fn lock_stripe(&self, stripe: usize) -> MutexGuard<'_, UserStripe> {
        assert!(stripe < USER_STRIPES);
        self.stripes[stripe % USER_STRIPES].lock()
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
        assert!(before > 0);
    }

    /// Takes a place without the bound (replay applies what was decided).
    pub fn count_user(&self) {
        self.users_count.fetch_add(1, Ordering::AcqRel);
    }

    pub fn users_count(&self) -> u32 {
        self.users_count.load(Ordering::Acquire)
    }

    /// Makes room for `users` users spread over the stripes (a restore
    /// that knows how many follow); at most `users_max` are counted.
    pub fn reserve(&self, users: u64) {
        let users = users.min(u64::from(self.users_max)) as usize;
        // The stripe hash spreads ids within about 15% of the mean.
        let per_stripe = users / USER_STRIPES + users / USER_STRIPES / 6 + 1;
        for stripe in self.stripes.iter() {
            stripe.lock().reserve(per_stripe);
        }
    }

    /// Calls `visit` for every stripe, one locked at a time, in order.
    pub fn for_each_stripe(&self, mut visit: impl FnMut(&UserStripe)) {
        for stripe in self.stripes.iter() {
            visit(&stripe.lock());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{ItemOutcome, PurchaseItem};

    fn stored(secret: CodeSecret, items: &[(u32, ItemOutcome)]) -> StoredPurchase {
        let items = items.iter().map(|&(item_index, outcome)| PurchaseItem {
            item_index,
            outcome,
        });
        StoredPurchase {
            secret,
            items: items.collect(),
            seq: 9,
        }
    }

    fn secret() -> CodeSecret {
        CodeSecret::generate().unwrap()
    }

    #[test]
    fn cart_keeps_insertion_order_past_the_inline_part() {
        let mut user = UserState::new("alice");
        user.open_cart(secret(), 9);
        for index in [3, 7, 1, 8, 2] {
            user.cart_push(index);
        }
        assert_eq!(user.cart().collect::<Vec<_>>(), vec![9, 3, 7, 1, 8, 2]);
        assert_eq!(user.cart_len(), 6);
        assert!(user.cart_contains(2) && !user.cart_contains(4));
    }

    #[test]
    fn cart_opens_and_closes_into_a_stored_purchase() {
        let mut user = UserState::new("alice");
        assert_eq!(user.open_secret(), None);
        let first = secret();
        user.open_cart(first, 4);
        user.cart_push(5);
        user.cart_push(6);
        assert_eq!(user.open_secret(), Some(first));
        let outcomes = [
            (4, ItemOutcome::Bought),
            (5, ItemOutcome::SoldOut),
            (6, ItemOutcome::Bought),
        ];
        user.close_cart(stored(first, &outcomes));
        assert_eq!((user.open_secret(), user.cart_len()), (None, 0));
        assert_eq!(user.cart().count(), 0, "the spilled items went too");
        assert_eq!(user.purchased(), 2);
        let kept = user.purchase(first).map(PurchaseWords::to_stored);
        assert_eq!(kept, Some(stored(first, &outcomes)));
        let second = secret();
        user.open_cart(second, 7);
        assert!(user.holds_secret(first) && user.holds_secret(second));
        assert!(!user.holds_secret(secret()));
    }

    #[test]
    fn user_state_is_compact() {
        // Every user of a sale pays for this: see the module docs.
        assert_eq!(std::mem::size_of::<UserState>(), 64);
        assert_eq!(std::mem::size_of::<CompactString>(), 24);
    }

    #[test]
    fn the_stripe_hash_never_changes() {
        // Codes in old logs name stripes computed this way.
        let stripes: Vec<usize> = ["alice", "bob", "user-0000001", ""]
            .iter()
            .map(|u| stripe_of(u))
            .collect();
        assert_eq!(stripes, vec![53, 246, 214, 239]);
    }

    #[test]
    fn the_stripe_hash_spreads_similar_ids() {
        let mut counts = vec![0u32; USER_STRIPES];
        for n in 0..256_000 {
            counts[stripe_of(&format!("user-{n:07}"))] += 1;
        }
        let (min, max) = (counts.iter().min(), counts.iter().max());
        assert!(min >= Some(&850) && max <= Some(&1150), "{min:?}..{max:?}");
    }

    #[test]
    fn slots_are_numbered_in_creation_order_across_chunks() {
        let mut stripe = UserStripe::new(7);
        let users: Vec<String> = (0..SLOTS_PER_CHUNK * 2 + 3)
            .map(|n| format!("u{n}"))
            .collect();
        for (n, user) in users.iter().enumerate() {
            assert_eq!(stripe.next_slot(), Some(n as u32));
            assert_eq!(stripe.push(user), n as u32);
        }
        assert_eq!(stripe.len() as usize, users.len());
        assert_eq!(stripe.find("u300"), Some(300));
        assert_eq!(stripe.user(300).id(), "u300");
        assert_eq!(stripe.find("nobody"), None);
        assert!(stripe.get(stripe.len()).is_none());
        assert_eq!(stripe.chunks.len(), 3, "no slack past one chunk");
        let order: Vec<u32> = stripe.iter().map(|(slot, _)| slot).collect();
        assert_eq!(order, (0..users.len() as u32).collect::<Vec<_>>());
        let message = stripe.check().unwrap_err();
        assert!(message.contains("hashes to"), "{message}");
    }

    #[test]
    fn codes_name_the_slot() {
        let table = UserTable::new(10);
        let mut stripe = table.lock("alice");
        let slot = stripe.push("alice");
        let first = secret();
        stripe.user_mut(slot).open_cart(first, 3);
        let code = stripe.open_code(slot).unwrap();
        assert_eq!(codes::split(code), (first, stripe.locator(slot)));
        assert_eq!(codes::split(code).1.stripe, stripe_of("alice"));
        stripe.check().unwrap();
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
}
