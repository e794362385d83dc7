//! The engine's whole state as plain data (`EngineImage`), and an engine
//! rebuilt from it: what a snapshot file holds (`crate::snapshot` turns it
//! into bytes).
//!
//! Why it is shaped like this: an image is rebuilt through the same replay
//! steps (`replay_added`, `replay_completed`, `apply_sale_opened`) a log
//! record goes through, so every check replay makes on a record (a user
//! in the slot its codes name, an item sold once, a purchase of the cart
//! it names) is also made on an image, and an image that does not fit
//! stops the start like a damaged log. Users are listed stripe by stripe,
//! in slot order, so rebuilding recreates every user in the same slot.
//!
//! Promise: for an engine built by replay, `restore(image())` into a fresh
//! engine gives the same `Engine::snapshot()`.

use std::sync::atomic::Ordering;

use bincode::{Decode, Encode};

use super::config::SaleSettings;
use super::outcome::PurchaseItem;
use super::record::SaleOpenedRecord;
use super::replay::{Applied, ReplayError};
use super::sales::SaleState;
use super::Engine;
use crate::domain::{CheckoutCode, ItemId, SaleId, UserId};

/// 4000-01-01T00:00:00Z: a later time floor is damage (sale ids are
/// `YYYYMMDDHH` numbers in a `u32`).
const TIME_FLOOR_UNIX_MS_MAX: i64 = 64_060_588_800_000;

/// Everything the engine holds. Field order is part of the snapshot format.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct EngineImage {
    /// The engine's time floor (milliseconds since the Unix epoch).
    pub time_floor_unix_ms: i64,
    /// Held sales, oldest first.
    pub sales: Vec<SaleImage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct SaleImage {
    pub sale_id: u32,
    pub items_per_sale: u32,
    pub user_limit: u32,
    /// Sequence number of the sale's `SaleOpened` record (0: none).
    pub opened_seq: u64,
    /// Items sold, checked against the rebuilt sold bits.
    pub items_sold: u32,
    /// Stripe by stripe, in slot order.
    pub users: Vec<UserImage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct UserImage {
    pub user_id: String,
    /// Oldest first.
    pub purchases: Vec<PurchaseImage>,
    pub open_cart: Option<CartImage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct PurchaseImage {
    pub code: u128,
    /// The purchase record's sequence number (also its claims').
    pub seq: u64,
    /// The cart, in order, each item with its outcome.
    pub items: Vec<PurchaseItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct CartImage {
    pub code: u128,
    pub items: Vec<u32>,
}

impl EngineImage {
    pub fn users(&self) -> usize {
        self.sales.iter().map(|sale| sale.users.len()).sum()
    }
}

impl Engine {
    /// The whole state. Walks every user (one stripe locked at a time):
    /// meant for an engine nobody else writes to (the snapshot builder's).
    pub fn image(&self) -> EngineImage {
        let sales = self
            .sales
            .all()
            .iter()
            .map(|sale| sale_image(sale))
            .filter(|sale| sale.opened_seq != 0 || !sale.users.is_empty())
            .collect();
        EngineImage {
            time_floor_unix_ms: self.time_floor_unix_ms.load(Ordering::Acquire),
            sales,
        }
    }

    /// Rebuilds `image` into this engine, which should be fresh; errors
    /// name `covered_seq` or the record a purchase came from. Sales that
    /// left retention by now are skipped, as replay skips their records.
    pub fn restore(&self, image: &EngineImage, covered_seq: u64) -> Result<(), ReplayError> {
        if image.time_floor_unix_ms > TIME_FLOOR_UNIX_MS_MAX {
            return Err(ReplayError {
                seq: covered_seq,
                why: format!(
                    "snapshot time {} ms is after the year 4000",
                    image.time_floor_unix_ms
                ),
            });
        }
        self.raise_time_floor(image.time_floor_unix_ms);
        for sale in &image.sales {
            self.restore_sale(sale, covered_seq)?;
        }
        Ok(())
    }

    fn restore_sale(&self, image: &SaleImage, covered_seq: u64) -> Result<(), ReplayError> {
        let bad = |why: String| ReplayError {
            seq: covered_seq,
            why,
        };
        let sale_id = SaleId::from_number(image.sale_id)
            .ok_or_else(|| bad(format!("snapshot sale id {} is not a sale", image.sale_id)))?;
        if image.opened_seq != 0 {
            let opened = SaleOpenedRecord {
                // Unused: the image's time floor is raised once, above.
                at_unix_ms: 0,
                sale_id: image.sale_id,
                items_per_sale: image.items_per_sale,
                user_limit: image.user_limit,
            };
            if self.apply_sale_opened(image.opened_seq, &opened)? == Applied::Expired {
                return Ok(());
            }
        } else if self.is_expired(sale_id) {
            return Ok(());
        }
        for user in &image.users {
            self.restore_user(sale_id, user, covered_seq)?;
        }
        let sold = self
            .sales
            .get(sale_id)
            .map_or(0, |sale| sale.inventory.items_sold());
        if sold != image.items_sold {
            return Err(bad(format!(
                "snapshot sale {sale_id} says {} items sold, its purchases sell {sold}",
                image.items_sold
            )));
        }
        Ok(())
    }

    fn restore_user(
        &self,
        sale_id: SaleId,
        image: &UserImage,
        covered_seq: u64,
    ) -> Result<(), ReplayError> {
        let user = UserId::parse(&image.user_id).map_err(|e| ReplayError {
            seq: covered_seq,
            why: format!("snapshot user id {:?}: {e}", image.user_id),
        })?;
        let user = user.as_str();
        for purchase in &image.purchases {
            // 0 and u64::MAX mean "no record" to the inventory: a purchase
            // naming either is damage, not a claim to publish.
            if purchase.seq == 0 || purchase.seq == u64::MAX {
                return Err(ReplayError {
                    seq: covered_seq,
                    why: format!(
                        "snapshot purchase of {:?} has the reserved record number {}",
                        image.user_id, purchase.seq
                    ),
                });
            }
            let code = CheckoutCode::from_u128(purchase.code);
            let cart = purchase.items.iter().map(|item| item.item_index);
            self.restore_cart(purchase.seq, sale_id, user, code, cart)?;
            self.replay_completed(purchase.seq, sale_id, user, code, &purchase.items)?;
        }
        if let Some(cart) = &image.open_cart {
            let code = CheckoutCode::from_u128(cart.code);
            let items = cart.items.iter().copied();
            self.restore_cart(covered_seq, sale_id, user, code, items)?;
        }
        Ok(())
    }

    /// Opens the cart `code` with `items`, as the checkouts that filled it did.
    fn restore_cart(
        &self,
        seq: u64,
        sale_id: SaleId,
        user: &str,
        code: CheckoutCode,
        items: impl Iterator<Item = u32>,
    ) -> Result<(), ReplayError> {
        let mut opened_cart = true;
        for index in items {
            let item = ItemId {
                sale: sale_id,
                index,
            };
            self.replay_added(seq, sale_id, user, item, code, opened_cart)?;
            opened_cart = false;
        }
        if opened_cart {
            return Err(ReplayError {
                seq,
                why: format!("snapshot cart {code} of user {user} is empty"),
            });
        }
        Ok(())
    }
}

fn sale_image(sale: &SaleState) -> SaleImage {
    let mut users = Vec::with_capacity(sale.users.users_count() as usize);
    sale.users.for_each_stripe(|stripe| {
        for (slot, state) in stripe.iter() {
            let purchases = state
                .purchases()
                .map(|purchase| PurchaseImage {
                    code: stripe.code(slot, purchase.secret).as_u128(),
                    seq: purchase.seq,
                    items: purchase.items().collect(),
                })
                .collect();
            let open_cart = stripe.open_code(slot).map(|code| CartImage {
                code: code.as_u128(),
                items: state.cart().collect(),
            });
            users.push(UserImage {
                user_id: state.id().to_string(),
                purchases,
                open_cart,
            });
        }
    });
    let SaleSettings {
        items_per_sale,
        user_limit,
    } = sale.settings;
    SaleImage {
        sale_id: sale.id.number(),
        items_per_sale,
        user_limit,
        opened_seq: sale.opened_seq(),
        items_sold: sale.inventory.items_sold(),
        users,
    }
}
