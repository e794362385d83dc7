//! Rebuilding an engine from an image (a snapshot's state), directly:
//! each user is written into its slot in one step under its stripe's
//! lock, and the sold bits set from the stored purchases, rather than
//! replaying one checkout per cart item (what made a start from a
//! snapshot cost several microseconds per user). The image is read piece
//! by piece from an [`ImageSource`] (a snapshot file being decoded), so
//! the whole image never sits in memory beside the engine it rebuilds.
//!
//! Why this is as safe as replay: everything replay would refuse is
//! checked here first, and refused with an error naming the snapshot's
//! record, never a panic: a user listed twice or not in the stripe its
//! codes name, a code naming another slot (all 128 bits are compared), a
//! secret used twice, an empty cart or one over the user limit, an item
//! twice in a cart or not of the sale, an item sold twice, a reserved
//! record number, a sale's sold count that its purchases do not make.
//! Then the audit checks the whole, as after any start.
//!
//! Stripes are independent (a user's codes name its stripe, and slots are
//! numbered within a stripe in the image's order), so the users of a sale
//! can be restored by several threads, each owning whole stripes, fed in
//! bounded batches by the thread that decodes: the result does not depend
//! on the thread count.
//!
//! Promise: for an engine built by replay, `restore(image())` into a fresh
//! engine gives the same `Engine::snapshot()`.

use std::sync::mpsc;

use super::codes::{self, CodeSecret, Locator, StoredPurchase};
use super::image::{CartImage, EngineImage, ImageSource, PurchaseImage, SaleHeader, UserImage};
use super::record::SaleOpenedRecord;
use super::replay::{Applied, ReplayError};
use super::sales::SaleState;
use super::users::{stripe_of, UserState, UserStripe, USER_STRIPES};
use super::Engine;
use crate::domain::{CheckoutCode, SaleId, UserId};

/// 4000-01-01T00:00:00Z: a later time floor is damage (sale ids are
/// `YYYYMMDDHH` numbers in a `u32`).
const TIME_FLOOR_UNIX_MS_MAX: i64 = 64_060_588_800_000;

/// Users decoded before they are handed to the restoring threads.
const RESTORE_BATCH_USERS: usize = 4096;
/// Batches waiting per restoring thread: bounds the decoded users in
/// memory to about `threads * (RESTORE_QUEUE_BATCHES + 2)` batches.
const RESTORE_QUEUE_BATCHES: usize = 2;

/// Threads a start restores and audits with: nothing is served yet, so
/// it has the machine to itself.
pub fn start_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

impl Engine {
    /// Rebuilds `image` into this engine, which must be fresh, on one
    /// thread; errors name `covered_seq`. Sales that left retention by now
    /// are skipped, as replay skips their records.
    pub fn restore(&self, image: &EngineImage, covered_seq: u64) -> Result<(), ReplayError> {
        self.restore_from(&mut image.source(), covered_seq, 1)
    }

    /// Rebuilds the image `source` yields into this engine, which must be
    /// fresh, with up to `threads` threads (the result is the same for
    /// any count); errors name `covered_seq`.
    pub fn restore_from(
        &self,
        source: &mut dyn ImageSource,
        covered_seq: u64,
        threads: usize,
    ) -> Result<(), ReplayError> {
        let bad = error_at(covered_seq);
        let (time_floor_unix_ms, sales) = source.start().map_err(&bad)?;
        if time_floor_unix_ms > TIME_FLOOR_UNIX_MS_MAX {
            return Err(bad(format!(
                "snapshot time {time_floor_unix_ms} ms is after the year 4000"
            )));
        }
        self.raise_time_floor(time_floor_unix_ms);
        for _ in 0..sales {
            let (header, users) = source.sale().map_err(&bad)?;
            self.restore_sale(header, users, source, covered_seq, threads)?;
        }
        Ok(())
    }

    fn restore_sale(
        &self,
        header: SaleHeader,
        users: u64,
        source: &mut dyn ImageSource,
        covered_seq: u64,
        threads: usize,
    ) -> Result<(), ReplayError> {
        let bad = error_at(covered_seq);
        let sale_id = SaleId::from_number(header.sale_id)
            .ok_or_else(|| bad(format!("snapshot sale id {} is not a sale", header.sale_id)))?;
        let expired = if header.opened_seq != 0 {
            let opened = SaleOpenedRecord {
                // Unused: the image's time floor is raised once, before.
                at_unix_ms: 0,
                sale_id: header.sale_id,
                items_per_sale: header.items_per_sale,
                user_limit: header.user_limit,
            };
            self.apply_sale_opened(header.opened_seq, &opened)? == Applied::Expired
        } else {
            self.is_expired(sale_id)
        };
        if expired {
            // Read past its users: the next sale follows them.
            for _ in 0..users {
                source.user().map_err(&bad)?;
            }
            return Ok(());
        }
        let sale = self.sales.get_or_insert(sale_id);
        if !sale.is_untouched() {
            return Err(bad(format!("sale {sale_id} is listed twice")));
        }
        sale.users.reserve(users);
        let restored = restore_users(&sale, users, source, covered_seq, threads);
        // Also after an error: the engine is dropped, but consistently.
        sale.inventory.count_restored();
        restored?;
        let sold = sale.inventory.items_sold();
        if sold != header.items_sold {
            return Err(bad(format!(
                "snapshot sale {sale_id} says {} items sold, its purchases sell {sold}",
                header.items_sold
            )));
        }
        Ok(())
    }
}

/// Makes errors that name the snapshot's record `covered_seq`.
fn error_at(covered_seq: u64) -> impl Fn(String) -> ReplayError {
    move |why| ReplayError {
        seq: covered_seq,
        why,
    }
}

/// Restores the next `users` users of `source` into `sale` (opened
/// already, empty), with up to `threads` threads.
fn restore_users(
    sale: &SaleState,
    users: u64,
    source: &mut dyn ImageSource,
    covered_seq: u64,
    threads: usize,
) -> Result<(), ReplayError> {
    let threads = threads.clamp(1, USER_STRIPES);
    if threads == 1 || users < RESTORE_BATCH_USERS as u64 {
        for _ in 0..users {
            let user = source.user().map_err(error_at(covered_seq))?;
            restore_one(sale, &user, covered_seq)?;
        }
        return Ok(());
    }
    std::thread::scope(|scope| {
        let mut senders = Vec::with_capacity(threads);
        let mut workers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (sender, receiver) = mpsc::sync_channel::<Vec<UserImage>>(RESTORE_QUEUE_BATCHES);
            senders.push(sender);
            workers.push(scope.spawn(move || {
                for batch in receiver {
                    for user in &batch {
                        restore_one(sale, user, covered_seq)?;
                    }
                }
                Ok(())
            }));
        }
        let decoded = feed(source, users, &senders);
        drop(senders);
        let mut first_error = decoded.err().map(error_at(covered_seq));
        for worker in workers {
            let result = worker.join().unwrap_or_else(|_| {
                Err(ReplayError {
                    seq: covered_seq,
                    why: "a restore thread panicked".to_string(),
                })
            });
            if let Err(error) = result {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    })
}

/// Reads `users` users from `source` in batches, each user to the thread
/// that owns its stripe. Stops early, without error, when a thread quit
/// (on an error of its own, which it reports).
fn feed(
    source: &mut dyn ImageSource,
    users: u64,
    senders: &[mpsc::SyncSender<Vec<UserImage>>],
) -> Result<(), String> {
    let parts = senders.len();
    let mut remaining = users;
    while remaining > 0 {
        let count = remaining.min(RESTORE_BATCH_USERS as u64);
        remaining -= count;
        let mut batches: Vec<Vec<UserImage>> = (0..parts)
            .map(|_| Vec::with_capacity(RESTORE_BATCH_USERS / parts + 16))
            .collect();
        for _ in 0..count {
            let user = source.user()?;
            batches[stripe_of(&user.user_id) % parts].push(user);
        }
        for (sender, batch) in senders.iter().zip(batches) {
            if sender.send(batch).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn restore_one(sale: &SaleState, user: &UserImage, covered_seq: u64) -> Result<(), ReplayError> {
    restore_user(sale, stripe_of(&user.user_id), user).map_err(|why| ReplayError {
        seq: covered_seq,
        why: format!("snapshot user {:?}: {why}", user.user_id),
    })
}

/// One user, checked whole before anything is written.
fn restore_user(sale: &SaleState, stripe_number: usize, image: &UserImage) -> Result<(), String> {
    let user = UserId::parse(&image.user_id).map_err(|e| e.to_string())?;
    let mut stripe = sale.users.lock_stripe(stripe_number);
    if stripe.find(user.as_str()).is_some() {
        return Err("listed twice".to_string());
    }
    let slot = stripe
        .next_slot()
        .ok_or_else(|| format!("stripe {stripe_number} is full"))?;
    let locator = stripe.locator(slot);
    for purchase in &image.purchases {
        if purchase.seq == 0 || purchase.seq == u64::MAX {
            return Err(format!(
                "a purchase has the reserved record number {}",
                purchase.seq
            ));
        }
        let cart = purchase.items.iter().map(|item| item.item_index);
        check_cart(sale, purchase.code, cart, locator)?;
    }
    if let Some(cart) = &image.open_cart {
        check_cart(sale, cart.code, cart.items.iter().copied(), locator)?;
    }
    check_secrets(image)?;
    claim_bought(sale, &image.purchases)?;
    sale.users.count_user();
    write_user(&mut stripe, user.as_str(), image);
    Ok(())
}

/// A cart (open or purchased) the user in `locator` may hold: its code
/// names that slot exactly, it is not empty and within the user limit,
/// and each item is of the sale and in it once. Carts are bounded by the
/// limit, so the quadratic check is small and allocates nothing (this
/// runs for each of millions of users at a start).
fn check_cart(
    sale: &SaleState,
    code: u128,
    items: impl Iterator<Item = u32> + Clone,
    locator: Locator,
) -> Result<(), String> {
    let code = CheckoutCode::from_u128(code);
    let (secret, named) = codes::split(code);
    if codes::compose(secret, locator) != code {
        return Err(format!(
            "code {code} names {named}, but the user's place is {locator}"
        ));
    }
    let settings = &sale.settings;
    let len = items.clone().count();
    if len == 0 {
        return Err(format!("cart {code} is empty"));
    }
    if len > settings.user_limit as usize {
        return Err(format!("cart {code} holds more than the user limit"));
    }
    for (position, index) in items.clone().enumerate() {
        if index >= settings.items_per_sale {
            return Err(format!("cart {code} holds item {index}, not of the sale"));
        }
        if items.clone().take(position).any(|earlier| earlier == index) {
            return Err(format!("cart {code} holds item {index} twice"));
        }
    }
    Ok(())
}

/// The user holds at least one code, and no two share a secret.
/// Purchases per user are few (each bought or lost a raced item), so the
/// quadratic check allocates nothing.
fn check_secrets(image: &UserImage) -> Result<(), String> {
    let open = image.open_cart.iter().map(|cart| cart.code);
    let all = image.purchases.iter().map(|p| p.code).chain(open);
    let secret = |code: u128| codes::split(CheckoutCode::from_u128(code)).0;
    if all.clone().next().is_none() {
        return Err("holds neither a cart nor a purchase".to_string());
    }
    for (position, code) in all.clone().enumerate() {
        if all
            .clone()
            .take(position)
            .any(|c| secret(c) == secret(code))
        {
            return Err("two of the user's codes share a secret".to_string());
        }
    }
    Ok(())
}

/// Sets the sold bit of every item the purchases bought, with the
/// purchase's record number; an item sold already is damage.
fn claim_bought(sale: &SaleState, purchases: &[PurchaseImage]) -> Result<(), String> {
    for purchase in purchases {
        for item in purchase.items.iter().filter(|item| item.is_bought()) {
            sale.inventory
                .claim_for_restore(item.item_index, purchase.seq)
                .map_err(|earlier| {
                    format!(
                        "item {} bought by record {}, but sold already by record {earlier}",
                        item.item_index, purchase.seq
                    )
                })?;
        }
    }
    Ok(())
}

/// Writes the checked user into the next slot of `stripe`.
fn write_user(stripe: &mut UserStripe, user: &str, image: &UserImage) {
    let slot = stripe.push(user);
    let state = stripe.user_mut(slot);
    for purchase in &image.purchases {
        let (secret, _) = codes::split(CheckoutCode::from_u128(purchase.code));
        fill_cart(state, secret, purchase.items.iter().map(|i| i.item_index));
        state.close_cart(StoredPurchase {
            secret,
            items: purchase.items.clone().into(),
            seq: purchase.seq,
        });
    }
    if let Some(CartImage { code, items }) = &image.open_cart {
        let (secret, _) = codes::split(CheckoutCode::from_u128(*code));
        fill_cart(state, secret, items.iter().copied());
    }
}

fn fill_cart(state: &mut UserState, secret: CodeSecret, mut items: impl Iterator<Item = u32>) {
    if let Some(first) = items.next() {
        state.open_cart(secret, first);
    }
    for index in items {
        state.cart_push(index);
    }
}
