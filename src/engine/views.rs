//! What the engine answers: decisions with the sequence number the caller
//! must see durable, and read-only views of carts, purchases, sales and
//! item pages. Views are plain values; the HTTP layer renders them.

use chrono::{DateTime, Utc};

use super::outcome::{ItemOutcome, PurchaseItem, Rejection};
use super::sales::SaleState;
use super::users::UserStripe;
use crate::domain::{CheckoutCode, ItemId, SaleId, UserId};

/// A decision with the record that tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided<T> {
    pub answer: Result<T, Rejection>,
    /// Sequence number of this decision's own record.
    pub seq: u64,
    /// The caller answers only once every record up to here is durable:
    /// the own record and every claim record the answer depends on.
    pub wait_seq: u64,
}

/// An open cart, as a checkout answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartView {
    pub code: CheckoutCode,
    pub sale: SaleId,
    pub user: UserId,
    /// In the order they were added.
    pub items: Vec<ItemId>,
    pub sale_ends_at: DateTime<Utc>,
}

/// A carried-out purchase (also when repeated for the same code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseView {
    pub code: CheckoutCode,
    pub sale: SaleId,
    pub user: UserId,
    /// Every cart item in cart order with what happened to it.
    pub items: Vec<PurchaseItem>,
}

impl PurchaseView {
    /// True when at least one item was bought.
    pub fn success(&self) -> bool {
        self.total_purchased() > 0
    }

    pub fn total_purchased(&self) -> u32 {
        self.bought().count() as u32
    }

    pub fn failed_count(&self) -> u32 {
        self.failed().count() as u32
    }

    pub fn bought(&self) -> impl Iterator<Item = ItemId> + '_ {
        self.items
            .iter()
            .filter(|i| i.is_bought())
            .map(|i| self.item(i.item_index))
    }

    /// Items not bought, with the reason.
    pub fn failed(&self) -> impl Iterator<Item = (ItemId, ItemOutcome)> + '_ {
        self.items
            .iter()
            .filter(|i| !i.is_bought())
            .map(|i| (self.item(i.item_index), i.outcome))
    }

    fn item(&self, index: u32) -> ItemId {
        ItemId {
            sale: self.sale,
            index,
        }
    }
}

/// A sale as `/sales/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleView {
    pub id: SaleId,
    pub status: SaleStatus,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub total_items: u32,
    pub items_sold: u32,
    pub items_available: u32,
    pub user_limit: u32,
}

/// Where a sale stands relative to the engine's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaleStatus {
    Upcoming,
    Active,
    Ended,
}

impl SaleStatus {
    /// The contract's `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            SaleStatus::Upcoming => "upcoming",
            SaleStatus::Active => "active",
            SaleStatus::Ended => "ended",
        }
    }
}

/// One page of a sale's items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemsPage {
    pub sale: SaleId,
    /// Items matching the filter, over all pages.
    pub total: u32,
    pub offset: u32,
    pub limit: u32,
    pub items: Vec<ItemView>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemView {
    pub id: ItemId,
    pub sold: bool,
}

pub(super) fn decided<T>(answer: Result<T, Rejection>, seq: u64) -> Decided<T> {
    Decided {
        answer,
        seq,
        wait_seq: seq,
    }
}

/// The open cart of the user in `slot` of `sale`, which must exist (just
/// added to or found holding the item).
pub(super) fn open_cart_view(
    sale: &SaleState,
    stripe: &UserStripe,
    slot: Option<u32>,
    user: &UserId,
) -> CartView {
    let open = slot.and_then(|slot| Some((slot, stripe.open_code(slot)?)));
    let Some((slot, code)) = open else {
        unreachable!("user {user} has no open cart in sale {}", sale.id);
    };
    CartView {
        code,
        sale: sale.id,
        user: user.clone(),
        items: stripe
            .user(slot)
            .cart()
            .map(|index| ItemId {
                sale: sale.id,
                index,
            })
            .collect(),
        sale_ends_at: sale.ends_at,
    }
}

pub(super) fn purchase_view(
    sale: SaleId,
    user: &str,
    code: CheckoutCode,
    items: Vec<PurchaseItem>,
) -> PurchaseView {
    PurchaseView {
        code,
        sale,
        // Slots of the user table were made from valid `UserId`s.
        user: UserId::parse(user)
            .unwrap_or_else(|_| unreachable!("stored user id {user:?} is valid")),
        items,
    }
}
