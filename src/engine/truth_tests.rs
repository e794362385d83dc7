//! Tests of what a crash, a clock or an operator could take back: reads
//! that show only durable sales, "sold out" told after the claim it
//! depends on, sale settings fixed when the sale opens, a time that never
//! goes back.

use std::sync::Arc;

use chrono::Duration;

use super::fixtures::{at_minutes, in_thread, sale_config, user, Fixture};
use super::{ItemOutcome, Record, Rejection, SaleStatus};
use crate::domain::{ItemId, SaleId};

#[test]
fn reads_never_show_an_item_sold_before_its_record_is_durable() {
    let f = Fixture::small();
    let cart = f.cart("alice", 3);
    let durable_before = f.journal.records().len() as u64;
    f.journal.set_durable_limit(Some(durable_before));
    let purchase = f.purchase(cart.code);
    assert_eq!(purchase.answer.unwrap().total_purchased(), 1);
    let sale = f.engine.active_sale();
    assert_eq!((sale.items_sold, sale.items_available), (0, 8));
    let page = f.engine.items(f.sale(), 3, 1, false).unwrap();
    assert!(!page.items[0].sold, "the purchase's record is not durable");
    let available = f.engine.items(f.sale(), 0, 100, true).unwrap();
    assert_eq!((available.total, available.items.len()), (8, 8));
    assert_eq!(f.engine.active_items_sold(), 0);

    f.journal.set_durable_limit(Some(purchase.seq));
    let sale = f.engine.active_sale();
    assert_eq!((sale.items_sold, sale.items_available), (1, 7));
    assert!(f.engine.items(f.sale(), 3, 1, false).unwrap().items[0].sold);
    let available = f.engine.items(f.sale(), 0, 100, true).unwrap();
    assert_eq!(available.items.len(), 7);
    assert!(available.items.iter().all(|item| item.id.index != 3));
}

#[test]
fn a_stored_sold_out_is_recorded_after_the_claim_it_reports() {
    let f = Arc::new(Fixture::small());
    let alice = f.cart("alice", 6);
    let bob = f.cart("bob", 6);
    let (entered, release) = f.journal.hold_next_purchase();
    let buyer = in_thread(&f, move |f| f.purchase(alice.code));
    entered.recv().unwrap();
    // Alice holds item 6's bit, her record is not appended: Bob's
    // purchase must not append its "sold out" before it.
    let loser = in_thread(&f, move |f| f.purchase(bob.code));
    std::thread::sleep(std::time::Duration::from_millis(30));
    assert!(!loser.is_finished(), "recorded before the claim it reports");
    release.send(false).unwrap();
    let won = buyer.join().unwrap();
    let lost = loser.join().unwrap();
    let lost_view = lost.answer.unwrap();
    assert_eq!(
        lost_view.failed().collect::<Vec<_>>()[0].1,
        ItemOutcome::SoldOut
    );
    assert!(lost.seq > won.seq, "{} after {}", lost.seq, won.seq);
    f.replayed();
}

#[test]
fn two_purchases_claiming_each_others_items_do_not_wait_for_each_other() {
    let f = Arc::new(Fixture::small());
    let alice = f.cart("alice", 1);
    f.cart("alice", 2);
    let bob = f.cart("bob", 2);
    f.cart("bob", 1);
    let buyers: Vec<_> = [alice.code, bob.code]
        .into_iter()
        .map(|code| in_thread(&f, move |f| f.purchase(code)))
        .collect();
    let bought: u32 = buyers
        .into_iter()
        .map(|buyer| buyer.join().unwrap().answer.unwrap().total_purchased())
        .sum();
    assert_eq!(bought, 2, "each item once");
    f.replayed();
}

#[test]
fn the_audit_refuses_a_sold_out_recorded_before_the_claim_it_reports() {
    let f = Fixture::small();
    let alice = f.cart("alice", 6);
    let bob = f.cart("bob", 6);
    f.purchase(alice.code);
    f.purchase(bob.code);
    // Bob's sold-out purchase as if it had been appended before Alice's.
    let mut records = f.journal.records();
    let last = records.len() - 1;
    records.swap(last - 1, last);
    let Record::Purchase(first) = &records[last - 1] else {
        panic!("a purchase");
    };
    assert_eq!(first.items[0].outcome, ItemOutcome::SoldOut);
    let engine = f.restarted_with(f.engine.config().clone());
    for (index, record) in records.iter().enumerate() {
        engine.apply(index as u64 + 1, record).unwrap();
    }
    let message = engine.audit().unwrap_err().to_string();
    assert!(message.contains("not by an earlier record"), "{message}");
}

#[test]
fn flags_changed_across_a_restart_apply_only_to_sales_that_open_later() {
    let f = Fixture::new(sale_config(2, 2));
    let cart = f.cart("alice", 0);
    f.checkout("alice", 1);
    f.purchase(cart.code);
    for (items_per_sale, user_limit) in [(20, 1), (1, 5), (1000, 1000)] {
        let config = sale_config(items_per_sale, user_limit);
        let restarted = f.replay_into(f.restarted_with(config));
        let sale = restarted.active_sale();
        assert_eq!((sale.total_items, sale.user_limit), (2, 2), "as it opened");
        assert_eq!((sale.items_sold, sale.items_available), (2, 0));
        let late = restarted.checkout(&user("bob"), f.item(1)).unwrap();
        assert_eq!(late.answer, Err(Rejection::SaleSoldOut));
        let beyond = ItemId {
            sale: f.sale(),
            index: 2,
        };
        let unknown = restarted.checkout(&user("bob"), beyond).unwrap();
        assert_eq!(unknown.answer, Err(Rejection::ItemNotFound));
        let next = restarted.sale(SaleId::containing(at_minutes(60))).unwrap();
        assert_eq!(
            (next.total_items, next.user_limit),
            (items_per_sale, user_limit)
        );
    }
}

#[test]
fn a_clock_that_jumps_back_never_reopens_a_sale() {
    let f = Fixture::small();
    let first = f.sale();
    let cart = f.cart("alice", 0);
    f.purchase(cart.code);
    // Forward by more than the retention: the first sale leaves memory.
    f.clock.set(at_minutes(30 * 60));
    let later = f.sale();
    assert!(later > first);
    f.cart("bob", 0);
    assert_eq!(f.engine.sale(first), None);
    // Back again: the engine's time stays where it was.
    f.clock.set(at_minutes(10));
    assert_eq!(f.sale(), later, "the time never goes back");
    let again = ItemId {
        sale: first,
        index: 0,
    };
    let refused = f.engine.checkout(&user("carol"), again).unwrap();
    assert_eq!(refused.answer, Err(Rejection::ItemNotFound));
    // Nor across a restart with the clock still behind.
    let restarted = f.replay_into(f.restarted_with(f.engine.config().clone()));
    assert_eq!(restarted.active_sale().id, later);
    assert_eq!(restarted.active_sale().status, SaleStatus::Active);
}

#[test]
fn a_machine_that_boots_ahead_and_steps_back_does_not_reopen_the_sale_it_skipped() {
    let f = Fixture::small();
    let first = f.sale();
    let cart = f.cart("alice", 0);
    f.purchase(cart.code);
    f.clock.set(at_minutes(0) + Duration::days(3));
    let restarted = f.replay_into(f.restarted_with(f.engine.config().clone()));
    let ahead = restarted.active_sale().id;
    assert!(ahead > first);
    f.clock.set(at_minutes(20));
    assert_eq!(restarted.active_sale().id, ahead, "no way back");
    let again = ItemId {
        sale: first,
        index: 0,
    };
    let refused = restarted.checkout(&user("carol"), again).unwrap();
    assert_ne!(refused.answer.map(|cart| cart.sale), Ok(first));
}

#[test]
fn a_repeated_purchase_after_a_restart_answers_the_same_with_new_flags() {
    let f = Fixture::small();
    let alice = f.cart("alice", 1);
    let bob = f.cart("bob", 1);
    f.checkout("bob", 2);
    let first = f.purchase(alice.code).answer.unwrap();
    let second = f.purchase(bob.code).answer.unwrap();
    let config = sale_config(2, 1);
    let restarted = f.replay_into(f.restarted_with(config));
    assert_eq!(
        restarted.purchase(alice.code).unwrap().answer.unwrap(),
        first
    );
    assert_eq!(
        restarted.purchase(bob.code).unwrap().answer.unwrap(),
        second
    );
}

mod restarts {
    //! Random operations with a clock that jumps forward and back and
    //! restarts with random flags: no item sold twice, no user over the
    //! limit (the audit), every acknowledged purchase answered identically
    //! after each restart.

    use std::collections::BTreeMap;
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::super::fixtures::{at_minutes, sale_config, user, TestJournal};
    use super::super::{Engine, EngineConfig, PurchaseView};
    use crate::domain::{CheckoutCode, ItemId, ManualClock};

    #[derive(Debug, Clone)]
    enum Op {
        Checkout {
            user: usize,
            index: u32,
        },
        Purchase {
            pick: usize,
        },
        Jump {
            minutes: i64,
        },
        Restart {
            items_per_sale: u32,
            user_limit: u32,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            5 => (0..4usize, 0..6u32).prop_map(|(user, index)| Op::Checkout { user, index }),
            3 => (0..8usize).prop_map(|pick| Op::Purchase { pick }),
            1 => (-3000..3000i64).prop_map(|minutes| Op::Jump { minutes }),
            1 => (1..6u32, 1..4u32).prop_map(|(items_per_sale, user_limit)| Op::Restart {
                items_per_sale,
                user_limit,
            }),
        ]
    }

    struct World {
        clock: Arc<ManualClock>,
        journal: Arc<TestJournal>,
        engine: Engine,
        codes: Vec<CheckoutCode>,
        acknowledged: BTreeMap<CheckoutCode, PurchaseView>,
    }

    impl World {
        fn start(&self, items_per_sale: u32, user_limit: u32) -> Engine {
            let config = sale_config(items_per_sale, user_limit);
            let engine = Engine::new(config, self.clock.clone(), self.journal.clone()).unwrap();
            for numbered in self.journal.numbered() {
                let (seq, record) = numbered.unwrap();
                engine.apply(seq, &record).unwrap();
            }
            engine.audit().unwrap();
            engine
        }

        fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
            match *op {
                Op::Checkout { user: u, index } => {
                    let sale = self.engine.active_sale().id;
                    let item = ItemId { sale, index };
                    let name = ["ann", "ben", "cat", "dan"][u];
                    if let Ok(cart) = self.engine.checkout(&user(name), item).unwrap().answer {
                        self.codes.push(cart.code);
                    }
                }
                Op::Purchase { pick } => {
                    let Some(&code) = self.codes.get(pick) else {
                        return Ok(());
                    };
                    if let Ok(view) = self.engine.purchase(code).unwrap().answer {
                        let first = self.acknowledged.entry(code).or_insert(view.clone());
                        prop_assert_eq!(&*first, &view, "a repeat answers the same");
                    }
                }
                Op::Jump { minutes } => {
                    self.clock.advance(chrono::Duration::minutes(minutes));
                }
                Op::Restart {
                    items_per_sale,
                    user_limit,
                } => {
                    self.engine = self.start(items_per_sale, user_limit);
                    let active = self.engine.active_sale().id;
                    // Past sales are answered for a day (the retention).
                    let retained = self
                        .acknowledged
                        .iter()
                        .filter(|(_, first)| first.sale.hours_until(active) <= 24);
                    for (code, first) in retained {
                        let again = self.engine.purchase(*code).unwrap().answer;
                        prop_assert_eq!(again.as_ref(), Ok(first), "after a restart");
                    }
                }
            }
            self.engine
                .audit()
                .map_err(|error| TestCaseError::fail(error.to_string()))?;
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn clock_jumps_and_flag_changes_never_break_a_promise(
            ops in proptest::collection::vec(op(), 1..50)
        ) {
            let clock = Arc::new(ManualClock::new(at_minutes(0)));
            let journal = Arc::new(TestJournal::default());
            let engine = Engine::new(
                EngineConfig { items_per_sale: 4, user_limit: 2, ..EngineConfig::default() },
                clock.clone(),
                journal.clone(),
            )
            .unwrap();
            let mut world = World {
                clock,
                journal,
                engine,
                codes: Vec::new(),
                acknowledged: BTreeMap::new(),
            };
            for op in &ops {
                world.run(op)?;
            }
        }
    }
}
