//! The engine's words for what happened to a request: the contract's
//! rejections and what a purchase did to each item of the cart.
//!
//! They are the engine's vocabulary, so they live with the engine; the log
//! records (`record`) carry them, the HTTP layer renders them, the exporter
//! turns them into rows. Their variant order is part of the log's format
//! (bincode numbers variants): add variants at the end, never reorder.

use bincode::{Decode, Encode};

/// The contract's 404/409 answers that a checkout or purchase can get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub enum Rejection {
    ItemNotFound,
    SaleNotActive,
    ItemSoldOut,
    SaleSoldOut,
    UserLimitReached,
    CheckoutNotFound,
    /// A new user asked for a place in a sale that holds
    /// `users_per_sale_max` users already (users in it keep buying).
    SaleFull,
}

impl Rejection {
    /// The contract's `error` code.
    pub fn code(self) -> &'static str {
        match self {
            Rejection::ItemNotFound => "item_not_found",
            Rejection::SaleNotActive => "sale_not_active",
            Rejection::ItemSoldOut => "item_sold_out",
            Rejection::SaleSoldOut => "sale_sold_out",
            Rejection::UserLimitReached => "user_limit_reached",
            Rejection::CheckoutNotFound => "checkout_not_found",
            Rejection::SaleFull => "sale_full",
        }
    }
}

/// One cart item of a purchase, with what happened to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct PurchaseItem {
    pub item_index: u32,
    pub outcome: ItemOutcome,
}

impl PurchaseItem {
    pub fn is_bought(&self) -> bool {
        self.outcome == ItemOutcome::Bought
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub enum ItemOutcome {
    Bought,
    SoldOut,
    UserLimit,
}

impl ItemOutcome {
    /// The contract's `reason` of a failed item, and the export's outcome.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemOutcome::Bought => "bought",
            ItemOutcome::SoldOut => "sold_out",
            ItemOutcome::UserLimit => "user_limit",
        }
    }
}

/// Indices of the items of `items` that had `outcome`, in cart order.
pub fn indices_with(items: &[PurchaseItem], outcome: ItemOutcome) -> Vec<u32> {
    items
        .iter()
        .filter(|item| item.outcome == outcome)
        .map(|item| item.item_index)
        .collect()
}
