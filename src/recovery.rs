//! Start-up, in one place for the server and the tests: read the log,
//! decode its records, replay them into a fresh engine, audit the
//! invariants; refuse to start if any step fails.
//!
//! Replay (`Engine::apply`) applies recorded outcomes and never decides
//! again; the audit (`Engine::audit`) checks the rebuilt whole. Every error
//! names the record (its sequence number), the item or the user concerned,
//! and keeps its cause.

use std::time::{Duration, Instant};

use crate::engine::{Applied, AuditError, AuditReport, Engine, Record, ReplayError};
use crate::journal::WalJournal;

/// Why the engine cannot start from this log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    #[error("cannot read the log after record {after_seq}")]
    Read {
        after_seq: u64,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("log record {seq} comes after record {previous}: sequence numbers must increase")]
    OutOfOrder { seq: u64, previous: u64 },
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error("the replayed state breaks an invariant; refusing to start")]
    Audit(#[from] AuditError),
}

/// What replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub records: u64,
    pub checkouts: u64,
    pub purchases: u64,
    pub sales_opened: u64,
    /// Takeovers of a replicated log's writes.
    pub takeovers: u64,
    /// Records of sales that had left retention: skipped.
    pub records_expired: u64,
    /// Sequence number of the last record (0 for an empty log; the
    /// snapshot's for an empty tail after one).
    pub last_seq: u64,
}

/// What a whole start-up did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub replayed: ReplayReport,
    pub audited: AuditReport,
    pub elapsed: Duration,
}

/// Applies `records` (in log order) to `engine`, which should be fresh.
pub fn replay<E>(
    engine: &Engine,
    records: impl IntoIterator<Item = Result<(u64, Record), E>>,
) -> Result<ReplayReport, RecoveryError>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    replay_after(engine, 0, records)
}

/// Applies `records`, which must come after record `after_seq`, to
/// `engine`, which holds the state up to `after_seq` (a fresh engine for
/// 0, or one restored from a snapshot covering up to `after_seq`).
pub fn replay_after<E>(
    engine: &Engine,
    after_seq: u64,
    records: impl IntoIterator<Item = Result<(u64, Record), E>>,
) -> Result<ReplayReport, RecoveryError>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut report = ReplayReport {
        last_seq: after_seq,
        ..ReplayReport::default()
    };
    for next in records {
        let (seq, record) = next.map_err(|error| RecoveryError::Read {
            after_seq: report.last_seq,
            source: error.into(),
        })?;
        if seq <= report.last_seq {
            return Err(RecoveryError::OutOfOrder {
                seq,
                previous: report.last_seq,
            });
        }
        if engine.apply(seq, &record)? == Applied::Expired {
            report.records_expired += 1;
        }
        report.last_seq = seq;
        report.records += 1;
        match record {
            Record::Checkout(_) => report.checkouts += 1,
            Record::Purchase(_) | Record::ForeignCode(_) => report.purchases += 1,
            Record::SaleOpened(_) => report.sales_opened += 1,
            Record::Takeover(_) => report.takeovers += 1,
        }
    }
    Ok(report)
}

/// `replay`, then `Engine::audit`: the whole start-up check.
pub fn recover<E>(
    engine: &Engine,
    records: impl IntoIterator<Item = Result<(u64, Record), E>>,
) -> Result<RecoveryReport, RecoveryError>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let replayed = replay(engine, records)?;
    let audited = engine.audit()?;
    Ok(RecoveryReport {
        replayed,
        audited,
        elapsed: started.elapsed(),
    })
}

/// `recover` from every record the journal's log holds: what the server
/// does before it serves.
pub fn recover_from_journal(
    engine: &Engine,
    journal: &WalJournal,
) -> Result<RecoveryReport, RecoveryError> {
    let records = journal.read_all().map_err(|error| RecoveryError::Read {
        after_seq: 0,
        source: Box::new(error),
    })?;
    recover(engine, records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fixtures::{at_minutes, Fixture};
    use crate::engine::{EngineConfig, ItemOutcome, MemoryJournal, PurchaseOutcome};
    use std::sync::Arc;

    fn numbered(records: Vec<Record>) -> Vec<Result<(u64, Record), String>> {
        records
            .into_iter()
            .enumerate()
            .map(|(i, r)| Ok((i as u64 + 1, r)))
            .collect()
    }

    fn fresh(f: &Fixture) -> Engine {
        let journal = Arc::new(MemoryJournal::default());
        Engine::new(f.engine.config().clone(), f.clock.clone(), journal).unwrap()
    }

    /// A story with every kind of record: carts, purchases (bought, sold
    /// out), a repeat, rejections, an open cart left behind.
    fn story() -> Fixture {
        let f = Fixture::small();
        let alice = f.cart("alice", 1);
        f.checkout("alice", 2);
        f.checkout("alice", 2);
        let bob = f.cart("bob", 2);
        f.purchase(bob.code);
        f.purchase(alice.code);
        f.purchase(alice.code);
        f.checkout("carol", 2);
        f.checkout("carol", 5);
        f.purchase(crate::domain::CheckoutCode::from_u128(3));
        f
    }

    #[test]
    fn replay_rebuilds_the_state_exactly_and_passes_the_audit() {
        let f = story();
        let engine = fresh(&f);
        let RecoveryReport {
            replayed, audited, ..
        } = recover(&engine, f.journal.numbered()).unwrap();
        assert_eq!(replayed.records, 11);
        assert_eq!(
            (
                replayed.checkouts,
                replayed.purchases,
                replayed.sales_opened
            ),
            (6, 4, 1)
        );
        assert_eq!((replayed.last_seq, replayed.records_expired), (11, 0));
        assert_eq!(engine.snapshot(), f.engine.snapshot());
        assert_eq!(audited.items_sold, 2);
        assert_eq!(
            (audited.users, audited.open_carts, audited.purchases),
            (3, 1, 2)
        );
        assert_eq!(f.engine.audit().unwrap(), audited);
    }

    #[test]
    fn replay_refuses_an_item_sold_twice() {
        let f = story();
        let mut records = f.journal.records();
        // Alice's purchase (record 7) claims item 2 that Bob bought.
        let Record::Purchase(purchase) = &mut records[6] else {
            panic!("record 7 is alice's purchase");
        };
        assert_eq!(purchase.items[1].outcome, ItemOutcome::SoldOut);
        purchase.items[1].outcome = ItemOutcome::Bought;
        let error = replay(&fresh(&f), numbered(records)).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("record 7"), "{message}");
        assert!(message.contains("2026112120-2"), "{message}");
        assert!(message.contains("record 6"), "{message}");
    }

    #[test]
    fn replay_refuses_a_purchase_of_a_cart_that_is_not_open() {
        let f = story();
        let mut records = f.journal.records();
        let Record::Purchase(repeat) = &mut records[7] else {
            panic!("record 8 is alice's repeated purchase");
        };
        assert_eq!(repeat.outcome, PurchaseOutcome::Replayed);
        repeat.outcome = PurchaseOutcome::Completed;
        let message = replay(&fresh(&f), numbered(records))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("record 8") && message.contains("alice"),
            "{message}"
        );
    }

    #[test]
    fn replay_refuses_a_second_cart_and_a_foreign_item() {
        let f = story();
        let second_cart = f.journal.records()[1].clone();
        let mut extra = f.journal.records();
        extra.insert(2, second_cart);
        let message = replay(&fresh(&f), numbered(extra)).unwrap_err().to_string();
        assert!(
            message.contains("record 3") && message.contains("alice"),
            "{message}"
        );
        let mut foreign = f.journal.records();
        let Record::Checkout(checkout) = &mut foreign[1] else {
            panic!("record 2 is a checkout");
        };
        checkout.item_id = "2026112120-99".into();
        let message = replay(&fresh(&f), numbered(foreign))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("record 2") && message.contains("2026112120-99"),
            "{message}"
        );
    }

    #[test]
    fn replay_refuses_disordered_and_unreadable_logs() {
        let f = story();
        let mut records = f.journal.numbered();
        records.swap(2, 3);
        let error = replay(&fresh(&f), records).unwrap_err();
        assert!(
            matches!(
                error,
                RecoveryError::OutOfOrder {
                    seq: 3,
                    previous: 4
                }
            ),
            "{error}"
        );
        let mut records = f.journal.numbered();
        records[4] = Err("bad checksum in segment 7 at offset 96".into());
        let error = replay(&fresh(&f), records).unwrap_err();
        let message = format!("{error}: {}", std::error::Error::source(&error).unwrap());
        assert!(
            message.contains("after record 4") && message.contains("segment 7"),
            "{message}"
        );
    }

    #[test]
    fn audit_refuses_a_user_over_the_limit() {
        let f = story();
        let dave = f.cart("dave", 3);
        f.checkout("dave", 4);
        f.purchase(dave.code);
        // The same log, as if the sale had opened with a limit of 1.
        let mut records = f.journal.records();
        let Record::SaleOpened(opened) = &mut records[0] else {
            panic!("record 1 opens the sale");
        };
        opened.user_limit = 1;
        let error = recover(&fresh(&f), numbered(records)).unwrap_err();
        let RecoveryError::Audit(audit) = &error else {
            panic!("not an audit error: {error}");
        };
        let message = audit.to_string();
        assert!(message.contains("user dave bought 2 items"), "{message}");
    }

    #[test]
    fn a_lower_user_limit_flag_does_not_apply_to_a_sale_the_log_holds() {
        let f = story();
        let dave = f.cart("dave", 3);
        f.checkout("dave", 4);
        f.purchase(dave.code);
        let strict = Engine::new(
            EngineConfig {
                user_limit: 1,
                items_per_sale: 4,
                ..f.engine.config().clone()
            },
            f.clock.clone(),
            Arc::new(MemoryJournal::default()),
        )
        .unwrap();
        recover(&strict, f.journal.numbered()).unwrap();
        assert_eq!(strict.snapshot(), f.engine.snapshot());
        let sale = strict.active_sale();
        assert_eq!((sale.user_limit, sale.total_items), (3, 8), "as it opened");
        let next = strict
            .sale(crate::domain::SaleId::containing(f.sale().ends_at()))
            .unwrap();
        assert_eq!((next.user_limit, next.total_items), (1, 4), "the flags");
    }

    #[test]
    fn replayed_open_carts_can_be_purchased_by_their_codes() {
        let f = story();
        let engine = fresh(&f);
        recover(&engine, f.journal.numbered()).unwrap();
        let snapshot = engine.snapshot();
        let carol = &snapshot.sales[&f.sale()].users["carol"];
        let (code, items) = carol.open_cart.clone().unwrap();
        let purchase = engine.purchase(code).unwrap().answer.unwrap();
        assert_eq!(purchase.user.as_str(), "carol");
        let bought: Vec<u32> = purchase.bought().map(|item| item.index).collect();
        assert_eq!(bought, items);
    }

    #[test]
    fn replay_refuses_a_code_that_names_another_slot() {
        let f = story();
        let moved = |record: usize, code_bits: fn(u128) -> u128| {
            let mut records = f.journal.records();
            match &mut records[record] {
                Record::Checkout(checkout) => checkout.code = checkout.code.map(code_bits),
                Record::Purchase(purchase) => purchase.code = code_bits(purchase.code),
                Record::SaleOpened(_) | Record::ForeignCode(_) | Record::Takeover(_) => {
                    panic!("the story's records name issued codes")
                }
            }
            replay(&fresh(&f), numbered(records))
                .unwrap_err()
                .to_string()
        };
        // Alice's first cart, as if another stripe or slot had been used.
        let message = moved(1, |bits| bits ^ 1);
        assert!(
            message.contains("record 2") && message.contains("disagree"),
            "{message}"
        );
        let message = moved(1, |bits| bits ^ 1 << 24);
        assert!(message.contains("record 2"), "{message}");
        // Her second item, and Bob's purchase, with a moved locator.
        let message = moved(2, |bits| bits ^ 1);
        assert!(
            message.contains("record 3") && message.contains("names stripe"),
            "{message}"
        );
        let message = moved(5, |bits| bits ^ 1);
        assert!(
            message.contains("record 6") && message.contains("bob"),
            "{message}"
        );
    }

    #[test]
    fn replay_skips_sales_that_left_retention() {
        let f = story();
        f.clock.set(at_minutes(26 * 60));
        let engine = fresh(&f);
        let report = replay(&engine, f.journal.numbered()).unwrap();
        assert_eq!(
            report.records_expired, 7,
            "the opening, 4 additions, 2 purchases"
        );
        assert!(engine.snapshot().sales.is_empty());
        engine.audit().unwrap();
    }
}
