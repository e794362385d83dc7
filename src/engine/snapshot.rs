//! A comparable copy of the engine's whole state: tests compare the state
//! rebuilt by replay (or from a snapshot file and the log after it) with
//! the state the running engine had. The snapshot files themselves hold
//! an `EngineImage` (`image`), which keeps the order users were created
//! in. Walks everything: not for the request path.

use std::collections::BTreeMap;

use super::outcome::PurchaseItem;
use super::sales::SaleState;
use super::Engine;
use crate::domain::{CheckoutCode, SaleId};

impl Engine {
    /// Every held sale with something in it, for tests and diagnostics
    /// (walks the whole state: not for the request path).
    pub fn snapshot(&self) -> EngineSnapshot {
        let mut sales = BTreeMap::new();
        for sale in self.sales.all() {
            let snapshot = sale_snapshot(&sale);
            if !snapshot.is_empty() {
                sales.insert(sale.id, snapshot);
            }
        }
        EngineSnapshot { sales }
    }
}

fn sale_snapshot(sale: &SaleState) -> SaleSnapshot {
    let mut users = BTreeMap::new();
    let mut codes = BTreeMap::new();
    sale.users.for_each_stripe(|stripe| {
        for (slot, state) in stripe.iter() {
            let user = state.id().to_string();
            let open_cart = stripe
                .open_code(slot)
                .map(|code| (code, state.cart().collect()));
            if let Some((code, _)) = &open_cart {
                codes.insert(*code, (user.clone(), None));
            }
            for purchase in state.purchases() {
                let snapshot = StoredPurchaseSnapshot {
                    items: purchase.items().collect(),
                    seq: purchase.seq,
                };
                let code = stripe.code(slot, purchase.secret);
                codes.insert(code, (user.clone(), Some(snapshot)));
            }
            let snapshot = UserSnapshot {
                purchased: state.purchased(),
                open_cart,
            };
            users.insert(user, snapshot);
        }
    });
    SaleSnapshot {
        sold: sale.inventory.claims(),
        items_sold: sale.inventory.items_sold(),
        users,
        codes,
    }
}

/// The engine's whole state, comparable with `==`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSnapshot {
    pub sales: BTreeMap<SaleId, SaleSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleSnapshot {
    /// Every item with its sold bit set, with the seq that sold it.
    pub sold: Vec<(u32, Option<u64>)>,
    pub items_sold: u32,
    pub users: BTreeMap<String, UserSnapshot>,
    /// Every code: its user and, once purchased, the stored result.
    pub codes: BTreeMap<CheckoutCode, (String, Option<StoredPurchaseSnapshot>)>,
}

impl SaleSnapshot {
    fn is_empty(&self) -> bool {
        self.sold.is_empty() && self.users.is_empty() && self.codes.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSnapshot {
    pub purchased: u16,
    pub open_cart: Option<(CheckoutCode, Vec<u32>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPurchaseSnapshot {
    pub items: Vec<PurchaseItem>,
    pub seq: u64,
}
