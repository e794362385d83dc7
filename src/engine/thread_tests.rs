//! Many threads, few items, few users: the invariants must hold whatever the
//! interleaving, and the journal must tell a story replay can rebuild.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Barrier};

use crate::domain::CheckoutCode;
use crate::engine::{CheckoutOutcome, ItemOutcome, PurchaseOutcome, Record};

use super::fixtures::{sale_config, user, Fixture};

const THREADS: usize = 8;
const OPS_PER_THREAD: usize = 400;
const USERS: usize = 5;
const ITEMS: u32 = 24;
const LIMIT: u32 = 3;

/// xorshift64: enough randomness for interleavings, no extra crate.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn hammer(f: &Fixture, seed: u64) {
    let mut random = seed | 1;
    let mut codes: Vec<CheckoutCode> = Vec::new();
    for _ in 0..OPS_PER_THREAD {
        let name = format!("user{}", next_random(&mut random) % USERS as u64);
        let index = (next_random(&mut random) % u64::from(ITEMS)) as u32;
        if next_random(&mut random).is_multiple_of(3) && !codes.is_empty() {
            let code = codes[(next_random(&mut random) % codes.len() as u64) as usize];
            let decided = f.engine.purchase(code).unwrap();
            assert!(decided.wait_seq >= decided.seq);
        } else if let Ok(cart) = f
            .engine
            .checkout(&user(&name), f.item(index))
            .unwrap()
            .answer
        {
            codes.push(cart.code);
        }
    }
}

/// Checks the journal's story: items bought once, users within the limit,
/// a user never opens a cart while one is open.
fn check_story(records: &[Record]) {
    let mut item_buyers: BTreeMap<u32, usize> = BTreeMap::new();
    let mut bought_per_user: BTreeMap<String, u32> = BTreeMap::new();
    let mut open_cart: BTreeMap<String, u128> = BTreeMap::new();
    for record in records {
        match record {
            Record::SaleOpened(_) | Record::ForeignCode(_) | Record::Takeover(_) => {}
            Record::Checkout(c) => {
                if c.outcome == (CheckoutOutcome::Added { opened_cart: true }) {
                    let code = c.code.unwrap();
                    let previous = open_cart.insert(c.user_id.clone(), code);
                    assert_eq!(previous, None, "{} opened a second cart", c.user_id);
                } else if let CheckoutOutcome::Added { .. } = c.outcome {
                    assert_eq!(open_cart.get(&c.user_id), c.code.as_ref());
                }
            }
            Record::Purchase(p) if p.outcome == PurchaseOutcome::Completed => {
                let name = p.user_id.clone().unwrap();
                assert_eq!(open_cart.remove(&name), Some(p.code));
                for item in p.items.iter().filter(|i| i.outcome == ItemOutcome::Bought) {
                    *item_buyers.entry(item.item_index).or_default() += 1;
                    *bought_per_user.entry(name.clone()).or_default() += 1;
                }
            }
            Record::Purchase(_) => {}
        }
    }
    assert!(
        item_buyers.values().all(|&n| n == 1),
        "item sold twice: {item_buyers:?}"
    );
    assert!(
        bought_per_user.values().all(|&n| n <= LIMIT),
        "over the limit: {bought_per_user:?}"
    );
}

#[test]
fn many_threads_never_oversell_nor_pass_the_limit() {
    let f = Arc::new(Fixture::new(sale_config(ITEMS, LIMIT)));
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let f = &f;
            scope.spawn(move || hammer(f, 0x9E37_79B9 * (thread as u64 + 1)));
        }
    });
    check_story(&f.journal.records());
    let report = f.engine.audit().unwrap();
    assert!(report.items_sold > 0, "the test should sell something");
    assert_eq!(f.replayed().snapshot(), f.engine.snapshot());
}

#[test]
fn concurrent_checkouts_of_one_user_open_one_cart() {
    let f = Arc::new(Fixture::new(sale_config(64, 5)));
    let barrier = Barrier::new(THREADS);
    let codes: BTreeSet<Option<CheckoutCode>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS as u32)
            .map(|index| {
                let (f, barrier) = (&f, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    let decided = f.engine.checkout(&user("zed"), f.item(index)).unwrap();
                    decided.answer.ok().map(|cart| cart.code)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let carts: Vec<_> = codes.iter().flatten().collect();
    assert_eq!(carts.len(), 1, "one cart for all: {codes:?}");
    let snapshot = f.engine.snapshot();
    let cart = snapshot.sales[&f.sale()].users["zed"]
        .open_cart
        .clone()
        .unwrap();
    assert_eq!(
        cart.1.len(),
        5,
        "the cart fills up to the limit, no further"
    );
    check_story(&f.journal.records());
}

#[test]
fn users_created_concurrently_in_one_stripe_get_the_same_slots_on_replay() {
    let f = Fixture::new(sale_config(64, 5));
    // Names sharing one stripe, so that threads race for its next slot.
    let names: Vec<String> = (0..)
        .map(|n| format!("racer{n}"))
        .filter(|name| super::users::stripe_of(name) == 0)
        .take(THREADS * 20)
        .collect();
    std::thread::scope(|scope| {
        for chunk in names.chunks(20) {
            let f = &f;
            scope.spawn(move || {
                for (n, name) in chunk.iter().enumerate() {
                    f.engine.checkout(&user(name), f.item(n as u32)).unwrap();
                }
            });
        }
    });
    let snapshot = f.engine.snapshot();
    assert_eq!(snapshot.sales[&f.sale()].users.len(), names.len());
    // Codes carry the slots: equal snapshots mean equal slots.
    assert_eq!(f.replayed().snapshot(), snapshot);
}
