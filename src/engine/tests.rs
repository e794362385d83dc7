//! Unit tests of the engine's decisions, records and reads.

use std::sync::Arc;

use crate::domain::{CheckoutCode, ItemId, SaleId};
use crate::engine::{
    CheckoutOutcome, ItemOutcome, PurchaseItem, PurchaseOutcome, Record, Rejection,
};

use super::fixtures::{at_minutes, in_thread, sale_config, user, Fixture};
use super::{EngineConfig, EngineConfigError, EngineError, SaleStatus, USERS_PER_SALE_MAX_LARGEST};

fn bought(index: u32) -> PurchaseItem {
    PurchaseItem {
        item_index: index,
        outcome: ItemOutcome::Bought,
    }
}

fn sold_out(index: u32) -> PurchaseItem {
    PurchaseItem {
        item_index: index,
        outcome: ItemOutcome::SoldOut,
    }
}

fn rejection<T: std::fmt::Debug>(decided: super::Decided<T>) -> Rejection {
    decided.answer.unwrap_err()
}

#[test]
fn config_is_validated() {
    assert_eq!(EngineConfig::default().validate(), Ok(()));
    let bad = |change: fn(&mut EngineConfig)| {
        let mut config = EngineConfig::default();
        change(&mut config);
        config.validate().unwrap_err()
    };
    assert_eq!(
        bad(|c| c.items_per_sale = 0),
        EngineConfigError::ItemsPerSale(0)
    );
    assert_eq!(
        bad(|c| c.items_per_sale = 1_000_001),
        EngineConfigError::ItemsPerSale(1_000_001)
    );
    assert_eq!(
        bad(|c| c.user_limit = 1001),
        EngineConfigError::UserLimit(1001)
    );
    assert_eq!(
        bad(|c| c.past_sales_retained_hours = 23),
        EngineConfigError::PastSalesRetainedHours(23)
    );
    assert_eq!(
        bad(|c| c.users_per_sale_max = 0),
        EngineConfigError::UsersPerSaleMax(0)
    );
}

#[test]
fn checkouts_of_a_user_share_one_cart_and_code() {
    let f = Fixture::small();
    let first = f.checkout("alice", 1);
    let cart = first.answer.clone().unwrap();
    assert_eq!(cart.items, vec![f.item(1)]);
    assert_eq!(cart.sale_ends_at, at_minutes(60));
    assert_eq!(first.wait_seq, first.seq);
    let second = f.cart("alice", 5);
    assert_eq!(second.code, cart.code);
    assert_eq!(second.items, vec![f.item(1), f.item(5)]);
    let other = f.cart("bob", 1);
    assert_ne!(other.code, cart.code, "carts are per user");
    let records = f.journal.records();
    let Record::SaleOpened(opened) = &records[0] else {
        panic!("the sale's settings come first");
    };
    assert_eq!((opened.items_per_sale, opened.user_limit), (8, 3));
    let Record::Checkout(record) = records[1].clone() else {
        panic!("checkout record expected");
    };
    assert_eq!(record.item_id, "2026112120-1");
    assert_eq!(record.user_id, "alice");
    assert_eq!(record.code, Some(cart.code.as_u128()));
    assert_eq!(record.outcome, CheckoutOutcome::Added { opened_cart: true });
    assert_eq!(record.at_unix_ms, at_minutes(0).timestamp_millis());
}

#[test]
fn an_item_already_in_the_cart_changes_nothing_even_when_full() {
    let f = Fixture::small();
    for index in 0..3 {
        f.checkout("alice", index);
    }
    assert_eq!(
        rejection(f.checkout("alice", 3)),
        Rejection::UserLimitReached
    );
    let again = f.checkout("alice", 2);
    assert_eq!(again.answer.unwrap().items.len(), 3);
    let Record::Checkout(record) = f.journal.last() else {
        panic!("checkout record expected");
    };
    assert_eq!(record.outcome, CheckoutOutcome::AlreadyInCart);
}

#[test]
fn unknown_and_inactive_items_are_told_apart() {
    let f = Fixture::small();
    let sale = f.sale();
    let item = |sale: SaleId, index| ItemId { sale, index };
    let engine = &f.engine;
    let alice = user("alice");
    let check = |item| rejection(engine.checkout(&alice, item).unwrap());
    assert_eq!(check(item(sale, 8)), Rejection::ItemNotFound);
    assert_eq!(
        check(item(sale.hours_before(24), 0)),
        Rejection::SaleNotActive
    );
    assert_eq!(
        check(item(sale.hours_before(25), 0)),
        Rejection::ItemNotFound
    );
    let next_day = SaleId::containing(at_minutes(24 * 60));
    assert_eq!(check(item(next_day, 0)), Rejection::SaleNotActive);
    let too_far = SaleId::containing(at_minutes(25 * 60));
    assert_eq!(check(item(too_far, 0)), Rejection::ItemNotFound);
    let Record::Checkout(record) = f.journal.last() else {
        panic!("checkout record expected");
    };
    assert_eq!(
        record.sale_id,
        sale.number(),
        "unknown item: the active sale"
    );
    assert!(
        f.engine.snapshot().sales.is_empty(),
        "rejections leave nothing"
    );
}

#[test]
fn the_limit_counts_purchased_items_and_the_cart() {
    let f = Fixture::small();
    let cart = f.cart("alice", 0);
    f.checkout("alice", 1);
    let purchase = f.purchase(cart.code).answer.unwrap();
    assert_eq!(purchase.total_purchased(), 2);
    let next = f.cart("alice", 2);
    assert_ne!(next.code, cart.code, "a purchase closes the cart");
    assert_eq!(
        rejection(f.checkout("alice", 3)),
        Rejection::UserLimitReached
    );
    let bought_last = f.purchase(next.code).answer.unwrap();
    assert_eq!(bought_last.items, vec![bought(2)]);
    assert_eq!(
        rejection(f.checkout("alice", 4)),
        Rejection::UserLimitReached
    );
}

#[test]
fn purchase_buys_what_is_unsold_and_waits_for_the_claims_it_reports() {
    let f = Fixture::small();
    let alice = f.cart("alice", 1);
    f.checkout("alice", 2);
    let bob = f.cart("bob", 2);
    let bob_bought = f.purchase(bob.code);
    assert_eq!(bob_bought.answer.as_ref().unwrap().items, vec![bought(2)]);
    // Carol's checkout of a sold item waits for Bob's record.
    let carol = f.checkout("carol", 2);
    assert_eq!(carol.answer, Err(Rejection::ItemSoldOut));
    assert_eq!(carol.wait_seq, carol.seq.max(bob_bought.seq));
    let alice_bought = f.purchase(alice.code);
    let view = alice_bought.answer.clone().unwrap();
    assert_eq!(view.items, vec![bought(1), sold_out(2)]);
    assert!(view.success());
    assert_eq!((view.total_purchased(), view.failed_count()), (1, 1));
    assert_eq!(view.bought().collect::<Vec<_>>(), vec![f.item(1)]);
    assert_eq!(
        alice_bought.wait_seq, alice_bought.seq,
        "bob's claim is older"
    );
    assert_eq!(f.engine.active_sale().items_sold, 2);
    assert_eq!(f.engine.active_items_sold(), 2);
}

#[test]
fn a_repeated_purchase_returns_the_stored_result() {
    let f = Fixture::small();
    let cart = f.cart("alice", 4);
    let first = f.purchase(cart.code);
    let again = f.purchase(cart.code);
    assert_eq!(again.answer, first.answer);
    assert!(again.seq > first.seq && again.wait_seq == again.seq);
    let Record::Purchase(record) = f.journal.last() else {
        panic!("purchase record expected");
    };
    assert_eq!(record.outcome, PurchaseOutcome::Replayed);
    assert_eq!(record.items, vec![bought(4)]);
    // Also after the sale ended, and after a restart.
    f.clock.set(at_minutes(90));
    assert_eq!(f.purchase(cart.code).answer, first.answer);
    let restarted = f.replayed();
    assert_eq!(restarted.purchase(cart.code).unwrap().answer, first.answer);
}

#[test]
fn unknown_codes_and_ended_sales_are_rejected() {
    let f = Fixture::small();
    let unknown = f.purchase(CheckoutCode::from_u128(42));
    assert_eq!(unknown.answer, Err(Rejection::CheckoutNotFound));
    let Record::Purchase(record) = f.journal.last() else {
        panic!("purchase record expected");
    };
    assert_eq!((record.sale_id, record.user_id), (None, None));
    let cart = f.cart("alice", 0);
    f.clock.set(at_minutes(60));
    assert_eq!(rejection(f.purchase(cart.code)), Rejection::SaleNotActive);
    let snapshot = f.engine.snapshot();
    let past = &snapshot.sales[&SaleId::containing(at_minutes(0))];
    assert!(
        past.users["alice"].open_cart.is_some(),
        "the cart stays open"
    );
    let old_item = ItemId {
        sale: SaleId::containing(at_minutes(0)),
        index: 1,
    };
    let late = f.engine.checkout(&user("alice"), old_item).unwrap();
    assert_eq!(late.answer, Err(Rejection::SaleNotActive));
}

#[test]
fn past_sales_are_kept_for_the_retention_then_dropped() {
    let f = Fixture::small();
    let first = f.sale();
    let cart = f.cart("alice", 0);
    f.clock.set(at_minutes(24 * 60 + 30));
    assert_eq!(f.engine.sale(first).map(|s| s.items_sold), Some(0));
    assert_eq!(rejection(f.purchase(cart.code)), Rejection::SaleNotActive);
    f.clock.set(at_minutes(25 * 60));
    assert_eq!(f.engine.sale(first), None);
    assert_eq!(
        rejection(f.purchase(cart.code)),
        Rejection::CheckoutNotFound
    );
    assert!(f.engine.snapshot().sales.is_empty());
}

#[test]
fn reads_show_untouched_sales_as_unsold_and_the_next_day_as_upcoming() {
    let f = Fixture::small();
    let sale = f.sale();
    let cart = f.cart("alice", 3);
    f.purchase(cart.code);
    let view = f.engine.active_sale();
    assert_eq!(
        (view.total_items, view.items_sold, view.items_available),
        (8, 1, 7)
    );
    assert_eq!(
        (view.starts_at, view.ends_at, view.user_limit),
        (at_minutes(0), at_minutes(60), 3)
    );
    let earlier = sale.hours_before(5);
    assert_eq!(f.engine.sale(earlier).map(|s| s.items_sold), Some(0));
    let next = f.engine.sale(SaleId::containing(at_minutes(60))).unwrap();
    assert_eq!(next.status, SaleStatus::Upcoming);
    assert_eq!(
        (next.items_sold, next.total_items, next.user_limit),
        (0, 8, 3)
    );
    assert_eq!(
        f.engine.sale(sale.hours_before(5)).unwrap().status,
        SaleStatus::Ended
    );
    assert_eq!(view.status, SaleStatus::Active);
    let beyond = SaleId::containing(at_minutes(25 * 60));
    assert_eq!(f.engine.sale(beyond), None, "more than a day ahead");
    let page = f.engine.items(sale, 2, 3, false).unwrap();
    assert_eq!(page.total, 8);
    let sold: Vec<(u32, bool)> = page.items.iter().map(|i| (i.id.index, i.sold)).collect();
    assert_eq!(sold, vec![(2, false), (3, true), (4, false)]);
    let available = f.engine.items(sale, 2, 100, true).unwrap();
    assert_eq!(available.total, 7);
    let indices: Vec<u32> = available.items.iter().map(|i| i.id.index).collect();
    assert_eq!(indices, vec![2, 4, 5, 6, 7]);
    assert_eq!(f.engine.items(earlier, 0, 2, true).unwrap().total, 8);
    let upcoming = f
        .engine
        .items(SaleId::containing(at_minutes(120)), 0, 1, false);
    assert_eq!(upcoming.unwrap().items.len(), 1, "the next day is listed");
    assert!(f.engine.items(beyond, 0, 1, false).is_none());
}

#[test]
fn a_sold_out_sale_waits_for_the_last_claim() {
    let f = Fixture::new(sale_config(2, 2));
    let cart = f.cart("alice", 0);
    f.checkout("alice", 1);
    let purchase = f.purchase(cart.code);
    let late = f.checkout("bob", 0);
    assert_eq!(late.answer, Err(Rejection::SaleSoldOut));
    assert_eq!(late.wait_seq, late.seq.max(purchase.seq));
}

#[test]
fn a_failed_append_changes_nothing_and_blocks_claims() {
    let f = Fixture::small();
    let cart = f.cart("alice", 0);
    f.journal.set_failing(true);
    assert!(matches!(
        f.engine.checkout(&user("bob"), f.item(1)),
        Err(EngineError::Unavailable(_))
    ));
    assert!(matches!(
        f.engine.purchase(cart.code),
        Err(EngineError::Unavailable(_))
    ));
    f.journal.set_failing(false);
    let snapshot = f.engine.snapshot();
    let sale = &snapshot.sales[&f.sale()];
    assert!(
        !sale.users.contains_key("bob"),
        "no entry for a failed checkout"
    );
    assert!(
        sale.users["alice"].open_cart.is_some(),
        "the cart stays open"
    );
    assert_eq!(sale.sold, vec![(0, None)], "the claim stays, unrecorded");
    // Whoever depends on the unrecorded claim gets 503, never "sold out".
    assert!(matches!(
        f.engine.checkout(&user("carol"), f.item(0)),
        Err(EngineError::ClaimNotRecorded { .. })
    ));
}

#[test]
fn a_full_sale_turns_new_users_away_with_a_recorded_sale_full_and_no_slot() {
    let f = Fixture::new(EngineConfig {
        items_per_sale: 8,
        users_per_sale_max: 1,
        ..EngineConfig::default()
    });
    f.checkout("alice", 0);
    let records = f.journal.records().len();
    assert_eq!(rejection(f.checkout("bob", 1)), Rejection::SaleFull);
    let recorded = f.journal.records();
    assert_eq!(recorded.len(), records + 1, "a 409 is a log record");
    match recorded.last() {
        Some(Record::Checkout(r)) => {
            assert_eq!(r.outcome, CheckoutOutcome::Rejected(Rejection::SaleFull));
            assert_eq!(r.code, None, "the refused user has no cart");
        }
        other => panic!("not a checkout record: {other:?}"),
    }
    assert_eq!(rejection(f.checkout("bob", 99)), Rejection::ItemNotFound);
    f.checkout("alice", 1);
    let snapshot = f.engine.snapshot();
    assert_eq!(snapshot.sales[&f.sale()].users.len(), 1, "no slot for bob");
}

#[test]
fn users_per_sale_max_beyond_a_stripes_slots_is_refused() {
    let mut config = EngineConfig {
        users_per_sale_max: USERS_PER_SALE_MAX_LARGEST,
        ..EngineConfig::default()
    };
    assert!(config.validate().is_ok());
    config.users_per_sale_max = USERS_PER_SALE_MAX_LARGEST + 1;
    assert!(config.validate().is_err());
}

#[test]
fn a_rejection_waits_for_a_claim_in_flight() {
    let f = Arc::new(Fixture::small());
    let cart = f.cart("alice", 6);
    let (entered, release) = f.journal.hold_next_purchase();
    let buyer = in_thread(&f, move |f| f.purchase(cart.code));
    entered.recv().unwrap();
    // The bit is set, the record not yet appended: Bob must wait for it.
    let rejecter = in_thread(&f, move |f| f.checkout("bob", 6));
    std::thread::sleep(std::time::Duration::from_millis(30));
    assert!(
        !rejecter.is_finished(),
        "answered before the claim was recorded"
    );
    release.send(false).unwrap();
    let purchase = buyer.join().unwrap();
    let rejected = rejecter.join().unwrap();
    assert_eq!(rejected.answer, Err(Rejection::ItemSoldOut));
    assert!(rejected.wait_seq >= purchase.seq);
}

#[test]
fn a_rejection_depending_on_a_failed_claim_is_unavailable() {
    let f = Arc::new(Fixture::small());
    let cart = f.cart("alice", 6);
    let (entered, release) = f.journal.hold_next_purchase();
    let buyer = in_thread(&f, move |f| f.engine.purchase(cart.code));
    entered.recv().unwrap();
    let rejecter = in_thread(&f, move |f| f.engine.checkout(&user("bob"), f.item(6)));
    release.send(true).unwrap();
    assert!(matches!(
        buyer.join().unwrap(),
        Err(EngineError::Unavailable(_))
    ));
    assert!(matches!(
        rejecter.join().unwrap(),
        Err(EngineError::ClaimNotRecorded { .. })
    ));
}

#[test]
fn engine_is_shared_between_threads_and_refuses_bad_settings() {
    fn shareable<T: Send + Sync>() {}
    shareable::<super::Engine>();
    let clock = Arc::new(crate::domain::ManualClock::new(at_minutes(0)));
    let journal = Arc::new(crate::engine::MemoryJournal::default());
    let config = EngineConfig {
        user_limit: 0,
        ..EngineConfig::default()
    };
    let error = super::Engine::new(config, clock, journal).unwrap_err();
    assert_eq!(error, EngineConfigError::UserLimit(0));
}

#[test]
fn a_code_resolves_only_with_all_its_bits() {
    let f = Fixture::small();
    let cart = f.cart("alice", 1);
    let bits = cart.code.as_u128();
    let (_, locator) = super::codes::split(cart.code);
    let wrong_secret = CheckoutCode::from_u128(bits ^ 1 << 100);
    let wrong_slot = CheckoutCode::from_u128(bits ^ 1);
    assert_eq!(super::codes::split(wrong_secret).1, locator);
    for code in [wrong_secret, wrong_slot, CheckoutCode::from_u128(0)] {
        assert_eq!(rejection(f.purchase(code)), Rejection::CheckoutNotFound);
    }
    assert_eq!(f.purchase(cart.code).answer.unwrap().items, vec![bought(1)]);
    assert_eq!(
        rejection(f.purchase(wrong_secret)),
        Rejection::CheckoutNotFound,
        "nor a purchased code"
    );
}

#[test]
fn codes_naming_one_slot_in_two_sales_stay_apart() {
    let f = Fixture::small();
    let first = f.cart("alice", 1);
    let first_bought = f.purchase(first.code).answer.unwrap();
    let left_open = f.cart("alice", 2);
    f.clock.set(at_minutes(60));
    let second = f.cart("alice", 1);
    let locator = |code| super::codes::split(code).1;
    assert_eq!(locator(first.code), locator(second.code), "same slot");
    assert_ne!(first.sale, second.sale);
    assert_eq!(f.purchase(first.code).answer.unwrap(), first_bought);
    assert_eq!(
        rejection(f.purchase(left_open.code)),
        Rejection::SaleNotActive
    );
    let second_bought = f.purchase(second.code).answer.unwrap();
    assert_eq!(second_bought.sale, second.sale);
    assert_eq!(second_bought.items, vec![bought(1)]);
    let restarted = f.replayed();
    assert_eq!(restarted.snapshot(), f.engine.snapshot());
    let again = restarted.purchase(first.code).unwrap().answer.unwrap();
    assert_eq!(again, first_bought);
}
