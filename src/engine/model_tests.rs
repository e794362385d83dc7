//! Property test: random checkouts, purchases and clock moves by a few users
//! on a few items, against a plain reference model; then a replay of the
//! journal must rebuild the same state and pass the audit.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use crate::domain::{CheckoutCode, Clock, ItemId, SaleId};
use crate::engine::{ItemOutcome, PurchaseItem, Rejection};

use super::fixtures::{user, Fixture};
use super::{EngineConfig, EngineSnapshot, FUTURE_SALES_KNOWN_HOURS};

const USERS: [&str; 3] = ["ann", "ben", "cy"];
const ITEMS: u32 = 4;
const LIMIT: u32 = 2;
const RETAINED_HOURS: u32 = 24;

#[derive(Debug, Clone)]
enum Op {
    /// `sale_hours` relative to the active sale.
    Checkout {
        user: usize,
        sale_hours: i64,
        index: u32,
    },
    /// Purchase of the `pick`-th code seen so far (or an unknown one).
    Purchase {
        pick: usize,
    },
    Advance {
        minutes: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..USERS.len(), prop_oneof![8 => Just(0i64), 1 => -2i64..=1, 1 => Just(-30i64)], 0..=ITEMS)
            .prop_map(|(user, sale_hours, index)| Op::Checkout { user, sale_hours, index }),
        4 => (0..16usize).prop_map(|pick| Op::Purchase { pick }),
        1 => prop_oneof![0i64..90, Just(25 * 60i64)].prop_map(|minutes| Op::Advance { minutes }),
    ]
}

#[derive(Debug, Default, Clone)]
struct ModelUser {
    purchased: u32,
    cart: Option<(CheckoutCode, Vec<u32>)>,
}

/// A code's user and, once purchased, the stored result with its seq.
type ModelCode = (String, Option<(Vec<PurchaseItem>, u64)>);

#[derive(Debug, Default, Clone)]
struct ModelSale {
    sold: BTreeMap<u32, u64>,
    users: BTreeMap<String, ModelUser>,
    codes: BTreeMap<CheckoutCode, ModelCode>,
}

/// The contract, written as plainly as possible.
#[derive(Debug, Default)]
struct Model {
    sales: BTreeMap<SaleId, ModelSale>,
    codes_seen: Vec<CheckoutCode>,
}

impl Model {
    fn prune(&mut self, active: SaleId) {
        let oldest = active.hours_before(RETAINED_HOURS);
        self.sales.retain(|&sale, _| sale >= oldest);
    }

    fn checkout(
        &mut self,
        active: SaleId,
        name: &str,
        item: ItemId,
    ) -> Result<Vec<u32>, Rejection> {
        let hours = active.hours_until(item.sale);
        let known = -(RETAINED_HOURS as i64)..=FUTURE_SALES_KNOWN_HOURS as i64;
        if item.index >= ITEMS || !known.contains(&hours) {
            return Err(Rejection::ItemNotFound);
        }
        if item.sale != active {
            return Err(Rejection::SaleNotActive);
        }
        let sale = self.sales.entry(active).or_default();
        let state = sale.users.get(name).cloned().unwrap_or_default();
        let cart = state
            .cart
            .clone()
            .map(|(_, items)| items)
            .unwrap_or_default();
        if cart.contains(&item.index) {
            return Ok(cart);
        }
        if sale.sold.len() as u32 == ITEMS {
            return Err(Rejection::SaleSoldOut);
        }
        if sale.sold.contains_key(&item.index) {
            return Err(Rejection::ItemSoldOut);
        }
        if state.purchased + cart.len() as u32 >= LIMIT {
            return Err(Rejection::UserLimitReached);
        }
        let mut items = cart;
        items.push(item.index);
        Ok(items)
    }

    fn purchase(
        &self,
        active: SaleId,
        code: CheckoutCode,
    ) -> Result<(SaleId, Vec<PurchaseItem>), Rejection> {
        let found = self
            .sales
            .iter()
            .find_map(|(&id, sale)| sale.codes.get(&code).map(|c| (id, sale, c)));
        let Some((id, sale, (name, stored))) = found else {
            return Err(Rejection::CheckoutNotFound);
        };
        if let Some((items, _)) = stored {
            return Ok((id, items.clone()));
        }
        if id != active {
            return Err(Rejection::SaleNotActive);
        }
        let state = &sale.users[name];
        let (_, cart) = state.cart.as_ref().expect("open code has a cart");
        let mut purchased = state.purchased;
        let items = cart
            .iter()
            .map(|&item_index| {
                let outcome = if purchased >= LIMIT {
                    ItemOutcome::UserLimit
                } else if sale.sold.contains_key(&item_index) {
                    ItemOutcome::SoldOut
                } else {
                    purchased += 1;
                    ItemOutcome::Bought
                };
                PurchaseItem {
                    item_index,
                    outcome,
                }
            })
            .collect();
        Ok((id, items))
    }

    fn snapshot(&self) -> EngineSnapshot {
        let sales = self
            .sales
            .iter()
            .filter(|(_, s)| !(s.sold.is_empty() && s.users.is_empty() && s.codes.is_empty()))
            .map(|(&id, sale)| {
                let users = sale
                    .users
                    .iter()
                    .map(|(name, u)| {
                        let snapshot = super::UserSnapshot {
                            purchased: u.purchased as u16,
                            open_cart: u.cart.clone(),
                        };
                        (name.clone(), snapshot)
                    })
                    .collect();
                let codes = sale
                    .codes
                    .iter()
                    .map(|(&code, (name, stored))| {
                        let stored = stored
                            .clone()
                            .map(|(items, seq)| super::StoredPurchaseSnapshot { items, seq });
                        (code, (name.clone(), stored))
                    })
                    .collect();
                let snapshot = super::SaleSnapshot {
                    sold: sale.sold.iter().map(|(&i, &seq)| (i, Some(seq))).collect(),
                    items_sold: sale.sold.len() as u32,
                    users,
                    codes,
                };
                (id, snapshot)
            })
            .collect();
        EngineSnapshot { sales }
    }
}

/// One checkout against the engine and the model, which must agree.
fn check_checkout(
    f: &Fixture,
    model: &mut Model,
    active: SaleId,
    name: &str,
    item: ItemId,
) -> Result<(), TestCaseError> {
    let expected = model.checkout(active, name, item);
    let got = f.engine.checkout(&user(name), item).unwrap();
    let got_items = got
        .answer
        .clone()
        .map(|c| c.items.iter().map(|i| i.index).collect::<Vec<_>>());
    prop_assert_eq!(&got_items, &expected, "checkout {:?} by {}", item, name);
    let Ok(cart) = got.answer else {
        return Ok(());
    };
    let model_sale = model.sales.entry(active).or_default();
    let state = model_sale.users.entry(name.to_string()).or_default();
    match &state.cart {
        Some((code, _)) => prop_assert_eq!(*code, cart.code),
        None => {
            prop_assert!(!model.codes_seen.contains(&cart.code), "code reused");
            model.codes_seen.push(cart.code);
            model_sale.codes.insert(cart.code, (name.to_string(), None));
        }
    }
    state.cart = Some((cart.code, expected.unwrap_or_default()));
    Ok(())
}

/// One purchase against the engine and the model, which must agree.
fn check_purchase(
    f: &Fixture,
    model: &mut Model,
    active: SaleId,
    code: CheckoutCode,
) -> Result<(), TestCaseError> {
    let expected = model.purchase(active, code);
    let got = f.engine.purchase(code).unwrap();
    let got_items = got.answer.clone().map(|v| (v.sale, v.items));
    prop_assert_eq!(&got_items, &expected, "purchase of {}", code);
    let Ok((sale_id, items)) = expected else {
        return Ok(());
    };
    let sale = model.sales.get_mut(&sale_id).expect("found above");
    let (name, stored) = sale.codes.get_mut(&code).expect("found above");
    if stored.is_some() {
        prop_assert!(got.wait_seq >= stored.as_ref().map_or(0, |s| s.1));
        return Ok(());
    }
    *stored = Some((items.clone(), got.seq));
    let state = sale.users.get_mut(name.as_str()).expect("cart owner");
    for item in items.iter().filter(|i| i.is_bought()) {
        sale.sold.insert(item.item_index, got.seq);
        state.purchased += 1;
    }
    state.cart = None;
    Ok(())
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let f = Fixture::new(EngineConfig {
        items_per_sale: ITEMS,
        user_limit: LIMIT,
        past_sales_retained_hours: RETAINED_HOURS,
        ..EngineConfig::default()
    });
    let mut model = Model::default();
    for op in ops {
        let active = SaleId::containing(f.clock.now());
        model.prune(active);
        match *op {
            Op::Checkout {
                user: u,
                sale_hours,
                index,
            } => {
                let sale =
                    SaleId::containing(active.starts_at() + chrono::Duration::hours(sale_hours));
                let item = ItemId { sale, index };
                check_checkout(&f, &mut model, active, USERS[u], item)?;
            }
            Op::Purchase { pick } => {
                let code = model
                    .codes_seen
                    .get(pick)
                    .copied()
                    .unwrap_or(CheckoutCode::from_u128(pick as u128));
                check_purchase(&f, &mut model, active, code)?;
            }
            Op::Advance { minutes } => f.clock.advance(chrono::Duration::minutes(minutes)),
        }
    }
    // Reads prune like requests do; bring both to the same "now".
    let active = f.engine.active_sale().id;
    model.prune(active);
    prop_assert_eq!(f.engine.snapshot(), model.snapshot());
    f.engine
        .audit()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let replayed = f.replayed();
    replayed.active_sale();
    prop_assert_eq!(replayed.snapshot(), f.engine.snapshot());
    let distinct: BTreeSet<_> = model.codes_seen.iter().collect();
    prop_assert_eq!(distinct.len(), model.codes_seen.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_the_reference_model_and_replays_exactly(ops in proptest::collection::vec(op(), 1..60)) {
        run(&ops)?;
    }
}
