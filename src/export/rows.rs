//! Log records as table rows: the one place that decides what an analyst
//! sees for each record.
//!
//! What it promises: every record maps to exactly one row of
//! `checkout_attempts`, `purchases` or `sale_openings` (plus one
//! `purchase_items` row per cart item of a purchase carried out now),
//! keyed by the record's sequence number, so a row count equals a record
//! count; a replayed purchase bought nothing, so its row counts nothing and
//! it has no items (`batch` links it to the purchase it repeats); the
//! mapping is pure (no I/O, no clock), so the same log always gives the
//! same rows; texts never contain a NUL byte (PostgreSQL refuses them, and
//! one refused row would stop the export forever).

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::{CheckoutCode, ItemId, SaleId};
use crate::engine::{
    CheckoutOutcome, CheckoutRecord, ForeignCodeRecord, ItemOutcome, PurchaseItem, PurchaseOutcome,
    PurchaseRecord, Record, Rejection, SaleOpenedRecord,
};
use crate::export::copy::{CopyRow, RowEncoder};

/// A sequence number that does not fit PostgreSQL's `bigint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("log sequence number {0} does not fit in a PostgreSQL bigint")]
pub struct SeqOutOfRange(pub u64);

/// A row of `checkout_attempts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutAttemptRow {
    pub seq: i64,
    pub at_unix_ms: i64,
    pub sale_id: String,
    pub user_id: String,
    pub item_id: String,
    /// The cart's code (32 hex digits) when the user has an open cart.
    pub code: Option<String>,
    /// `ok` or the contract's error code.
    pub outcome: &'static str,
}

/// A row of `purchases`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseRow {
    pub seq: i64,
    pub at_unix_ms: i64,
    /// `None` when the code named no cart.
    pub sale_id: Option<String>,
    pub user_id: Option<String>,
    pub code: String,
    /// `ok`, `replayed` or the contract's error code.
    pub outcome: &'static str,
    /// Items bought now: 0 unless `outcome` is `ok`.
    pub total_purchased: i32,
    /// Cart items not bought now: 0 unless `outcome` is `ok`.
    pub failed_count: i32,
}

/// A row of `purchase_items`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseItemRow {
    pub purchase_seq: i64,
    pub item_id: String,
    /// `bought`, `sold_out` or `user_limit`.
    pub outcome: &'static str,
}

/// A row of `sale_openings`: a sale's settings as its log fixed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleOpeningRow {
    pub seq: i64,
    pub at_unix_ms: i64,
    pub sale_id: String,
    pub total_items: u32,
    pub user_limit: u32,
}

/// A sale's settings as its `SaleOpened` record fixed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaleOpening {
    pub seq: i64,
    pub items_per_sale: u32,
    pub user_limit: u32,
}

/// A row of `items`: generated from the sale id, never read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRow {
    pub item: ItemId,
}

/// The rows of one batch of records.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RowBatch {
    pub checkout_attempts: Vec<CheckoutAttemptRow>,
    pub purchases: Vec<PurchaseRow>,
    pub purchase_items: Vec<PurchaseItemRow>,
    pub sale_openings: Vec<SaleOpeningRow>,
    /// Sales the batch proves exist, so `sales` and `items` must hold them.
    pub sales: BTreeSet<SaleId>,
    /// The settings of the sales opened in the batch (the first opening of
    /// a sale wins, should the log ever repeat one).
    pub openings: BTreeMap<SaleId, SaleOpening>,
}

impl RowBatch {
    pub fn from_records(records: &[(u64, Record)]) -> Result<RowBatch, SeqOutOfRange> {
        let mut batch = RowBatch::default();
        for (seq, record) in records {
            let seq = i64::try_from(*seq).map_err(|_| SeqOutOfRange(*seq))?;
            match record {
                Record::Checkout(checkout) => batch.push_checkout(seq, checkout),
                Record::Purchase(purchase) => batch.push_purchase(seq, purchase),
                Record::SaleOpened(opened) => batch.push_opening(seq, opened),
                Record::ForeignCode(foreign) => batch.push_foreign_code(seq, foreign),
                // Ownership of a replicated log: no sale row to export.
                Record::Takeover(_) => {}
            }
        }
        Ok(batch)
    }

    /// Rows over all tables except `sales` and `items`.
    pub fn rows(&self) -> usize {
        self.checkout_attempts.len()
            + self.purchases.len()
            + self.purchase_items.len()
            + self.sale_openings.len()
    }

    fn push_opening(&mut self, seq: i64, record: &SaleOpenedRecord) {
        // A sale number that names no hour gets its row here, and no sale.
        if let Some(sale) = SaleId::from_number(record.sale_id) {
            self.sales.insert(sale);
            self.openings.entry(sale).or_insert(SaleOpening {
                seq,
                items_per_sale: record.items_per_sale,
                user_limit: record.user_limit,
            });
        }
        self.sale_openings.push(SaleOpeningRow {
            seq,
            at_unix_ms: record.at_unix_ms,
            sale_id: sale_text(record.sale_id),
            total_items: record.items_per_sale,
            user_limit: record.user_limit,
        });
    }

    fn push_checkout(&mut self, seq: i64, record: &CheckoutRecord) {
        if let Some(sale) = checkout_proves_sale(record) {
            self.sales.insert(sale);
        }
        self.checkout_attempts.push(checkout_row(seq, record));
    }

    /// A code this server never issues: a `checkout_not_found` purchase
    /// row with the code as the client sent it.
    fn push_foreign_code(&mut self, seq: i64, record: &ForeignCodeRecord) {
        self.purchases.push(PurchaseRow {
            seq,
            at_unix_ms: record.at_unix_ms,
            sale_id: None,
            user_id: None,
            code: postgres_text(&record.code),
            outcome: Rejection::CheckoutNotFound.code(),
            total_purchased: 0,
            failed_count: 0,
        });
    }

    fn push_purchase(&mut self, seq: i64, record: &PurchaseRecord) {
        // A purchase with a sale names a cart, and a cart only exists in a
        // sale that was active.
        if let Some(sale) = record.sale_id.and_then(SaleId::from_number) {
            self.sales.insert(sale);
        }
        self.purchase_items.extend(purchase_item_rows(seq, record));
        self.purchases.push(purchase_row(seq, record));
    }
}

/// The sale a checkout proves to exist. `sale_not_active` is the one answer
/// that can name any hour a client typed (`1999010100-5`): creating a sale
/// and its items for it would let clients fill the database.
fn checkout_proves_sale(record: &CheckoutRecord) -> Option<SaleId> {
    match record.outcome {
        CheckoutOutcome::Rejected(Rejection::SaleNotActive) => None,
        _ => record.sale(),
    }
}

pub fn checkout_row(seq: i64, record: &CheckoutRecord) -> CheckoutAttemptRow {
    CheckoutAttemptRow {
        seq,
        at_unix_ms: record.at_unix_ms,
        sale_id: sale_text(record.sale_id),
        user_id: postgres_text(&record.user_id),
        item_id: postgres_text(&record.item_id),
        code: record.code().map(|code| code.to_string()),
        outcome: checkout_outcome(record.outcome),
    }
}

pub fn checkout_outcome(outcome: CheckoutOutcome) -> &'static str {
    match outcome {
        CheckoutOutcome::Added { .. } | CheckoutOutcome::AlreadyInCart => "ok",
        CheckoutOutcome::Rejected(rejection) => rejection.code(),
    }
}

pub fn purchase_row(seq: i64, record: &PurchaseRecord) -> PurchaseRow {
    let items = carried_out_items(record);
    let bought = items
        .iter()
        .filter(|item| item.outcome == ItemOutcome::Bought)
        .count();
    let failed = items.len() - bought;
    PurchaseRow {
        seq,
        at_unix_ms: record.at_unix_ms,
        sale_id: record.sale_id.map(sale_text),
        user_id: record.user_id.as_deref().map(postgres_text),
        code: CheckoutCode::from_u128(record.code).to_string(),
        outcome: purchase_outcome(record.outcome),
        // A cart holds at most `user_limit` items: far below i32::MAX.
        total_purchased: i32::try_from(bought).unwrap_or(i32::MAX),
        failed_count: i32::try_from(failed).unwrap_or(i32::MAX),
    }
}

pub fn purchase_outcome(outcome: PurchaseOutcome) -> &'static str {
    match outcome {
        PurchaseOutcome::Completed => "ok",
        PurchaseOutcome::Replayed => "replayed",
        PurchaseOutcome::Rejected(rejection) => rejection.code(),
    }
}

/// The items a purchase acted on now: a replayed purchase repeats the
/// answer of its original and acted on none (its items are the original's
/// rows already; counting them again would count a sale twice).
fn carried_out_items(record: &PurchaseRecord) -> &[PurchaseItem] {
    match record.outcome {
        PurchaseOutcome::Replayed => &[],
        _ => &record.items,
    }
}

/// One row per cart item of a purchase carried out now. A cart is a set,
/// so an item appears once; should a record ever repeat one, the first wins
/// rather than the primary key stopping the export for good.
pub fn purchase_item_rows(seq: i64, record: &PurchaseRecord) -> Vec<PurchaseItemRow> {
    let Some(sale_number) = record.sale_id else {
        return Vec::new();
    };
    let mut seen = BTreeSet::new();
    carried_out_items(record)
        .iter()
        .filter(|item| seen.insert(item.item_index))
        .map(|item| PurchaseItemRow {
            purchase_seq: seq,
            item_id: format!("{}-{}", sale_text(sale_number), item.item_index),
            outcome: item.outcome.as_str(),
        })
        .collect()
}

/// A sale id as text: `YYYYMMDDHH`, like `SaleId`'s Display.
pub fn sale_text(sale_number: u32) -> String {
    format!("{sale_number:010}")
}

/// PostgreSQL's `text` cannot hold NUL; the client's raw item id can.
pub fn postgres_text(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

impl CopyRow for CheckoutAttemptRow {
    const TABLE: &'static str = "checkout_attempts";
    const COLUMNS: &'static [&'static str] = &[
        "seq", "at", "sale_id", "user_id", "item_id", "code", "outcome",
    ];
    fn encode(&self, row: &mut RowEncoder<'_>) {
        row.int8(self.seq);
        row.timestamp_unix_ms(self.at_unix_ms);
        row.text(&self.sale_id);
        row.text(&self.user_id);
        row.text(&self.item_id);
        row.text_or_null(self.code.as_deref());
        row.text(self.outcome);
    }
}

impl CopyRow for PurchaseRow {
    const TABLE: &'static str = "purchases";
    const COLUMNS: &'static [&'static str] = &[
        "seq",
        "at",
        "sale_id",
        "user_id",
        "code",
        "outcome",
        "total_purchased",
        "failed_count",
    ];
    fn encode(&self, row: &mut RowEncoder<'_>) {
        row.int8(self.seq);
        row.timestamp_unix_ms(self.at_unix_ms);
        row.text_or_null(self.sale_id.as_deref());
        row.text_or_null(self.user_id.as_deref());
        row.text(&self.code);
        row.text(self.outcome);
        row.int4(self.total_purchased);
        row.int4(self.failed_count);
    }
}

impl CopyRow for PurchaseItemRow {
    const TABLE: &'static str = "purchase_items";
    const COLUMNS: &'static [&'static str] = &["purchase_seq", "item_id", "outcome"];
    fn encode(&self, row: &mut RowEncoder<'_>) {
        row.int8(self.purchase_seq);
        row.text(&self.item_id);
        row.text(self.outcome);
    }
}

impl CopyRow for SaleOpeningRow {
    const TABLE: &'static str = "sale_openings";
    const COLUMNS: &'static [&'static str] = &["seq", "at", "sale_id", "total_items", "user_limit"];
    fn encode(&self, row: &mut RowEncoder<'_>) {
        row.int8(self.seq);
        row.timestamp_unix_ms(self.at_unix_ms);
        row.text(&self.sale_id);
        row.int8(i64::from(self.total_items));
        row.int8(i64::from(self.user_limit));
    }
}

impl CopyRow for ItemRow {
    const TABLE: &'static str = "items";
    const COLUMNS: &'static [&'static str] =
        &["item_id", "sale_id", "item_index", "name", "image_url"];
    fn encode(&self, row: &mut RowEncoder<'_>) {
        row.text(&self.item.to_string());
        row.text(&self.item.sale.to_string());
        // Item indexes are below `items_per_sale`, which the configuration
        // keeps within i32.
        row.int4(i32::try_from(self.item.index).unwrap_or(i32::MAX));
        row.text(&self.item.name());
        row.text(&self.item.image_url());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALE: u32 = 2026112120;

    fn checkout(outcome: CheckoutOutcome, code: Option<u128>) -> CheckoutRecord {
        CheckoutRecord {
            at_unix_ms: 1_795_291_200_123,
            sale_id: SALE,
            user_id: "alice".into(),
            item_id: "2026112120-42".into(),
            code,
            outcome,
        }
    }

    fn purchase(outcome: PurchaseOutcome, items: Vec<PurchaseItem>) -> PurchaseRecord {
        PurchaseRecord {
            at_unix_ms: 1_795_291_200_200,
            sale_id: Some(SALE),
            user_id: Some("alice".into()),
            code: 0xab,
            outcome,
            items,
        }
    }

    fn item(item_index: u32, outcome: ItemOutcome) -> PurchaseItem {
        PurchaseItem {
            item_index,
            outcome,
        }
    }

    #[test]
    fn checkout_outcomes_are_ok_or_the_contract_code() {
        let added = checkout_row(
            7,
            &checkout(CheckoutOutcome::Added { opened_cart: true }, Some(1)),
        );
        assert_eq!(
            added,
            CheckoutAttemptRow {
                seq: 7,
                at_unix_ms: 1_795_291_200_123,
                sale_id: "2026112120".into(),
                user_id: "alice".into(),
                item_id: "2026112120-42".into(),
                code: Some("00000000000000000000000000000001".into()),
                outcome: "ok",
            }
        );
        assert_eq!(checkout_outcome(CheckoutOutcome::AlreadyInCart), "ok");
        assert_eq!(
            checkout_outcome(CheckoutOutcome::Rejected(Rejection::UserLimitReached)),
            "user_limit_reached"
        );
    }

    #[test]
    fn purchase_counts_come_from_its_items() {
        let record = purchase(
            PurchaseOutcome::Completed,
            vec![
                item(1, ItemOutcome::Bought),
                item(2, ItemOutcome::SoldOut),
                item(3, ItemOutcome::UserLimit),
                item(4, ItemOutcome::Bought),
            ],
        );
        let row = purchase_row(9, &record);
        assert_eq!(
            (row.outcome, row.total_purchased, row.failed_count),
            ("ok", 2, 2)
        );
        assert_eq!(row.code, "000000000000000000000000000000ab");
        let items = purchase_item_rows(9, &record);
        assert_eq!(items.len(), 4);
        assert_eq!(items[1].item_id, "2026112120-2");
        assert_eq!(items[1].outcome, "sold_out");
        assert_eq!(items[2].outcome, "user_limit");
    }

    #[test]
    fn a_replayed_purchase_does_not_count_its_items_again() {
        let record = purchase(
            PurchaseOutcome::Replayed,
            vec![item(1, ItemOutcome::Bought), item(2, ItemOutcome::SoldOut)],
        );
        let row = purchase_row(10, &record);
        assert_eq!(
            (row.outcome, row.total_purchased, row.failed_count),
            ("replayed", 0, 0)
        );
        assert!(purchase_item_rows(10, &record).is_empty());
    }

    #[test]
    fn the_first_opening_of_a_sale_fixes_its_settings() {
        let opened = |items_per_sale| {
            Record::SaleOpened(SaleOpenedRecord {
                at_unix_ms: 1_795_291_200_000,
                sale_id: SALE,
                items_per_sale,
                user_limit: 3,
            })
        };
        let batch = RowBatch::from_records(&[(1, opened(5)), (2, opened(9))]).unwrap();
        assert_eq!(batch.sale_openings.len(), 2, "one row per record");
        let sale = SaleId::from_number(SALE).unwrap();
        let opening = batch.openings[&sale];
        assert_eq!(
            (opening.seq, opening.items_per_sale, opening.user_limit),
            (1, 5, 3)
        );
        assert!(batch.sales.contains(&sale));
    }

    #[test]
    fn unknown_code_purchase_has_no_sale_user_or_items() {
        let mut record = purchase(
            PurchaseOutcome::Rejected(Rejection::CheckoutNotFound),
            vec![],
        );
        record.sale_id = None;
        record.user_id = None;
        let batch = RowBatch::from_records(&[(1, Record::Purchase(record))]).unwrap();
        assert_eq!(batch.purchases[0].sale_id, None);
        assert_eq!(batch.purchases[0].user_id, None);
        assert_eq!(batch.purchases[0].outcome, "checkout_not_found");
        assert!(batch.purchase_items.is_empty());
        assert!(batch.sales.is_empty());
    }

    #[test]
    fn a_foreign_code_is_a_checkout_not_found_row_with_the_code_as_sent() {
        let record = Record::ForeignCode(ForeignCodeRecord {
            at_unix_ms: 5,
            code: "not-ours".into(),
        });
        let batch = RowBatch::from_records(&[(7, record)]).unwrap();
        assert_eq!(batch.purchases.len(), 1, "one row per record");
        let row = &batch.purchases[0];
        assert_eq!((row.seq, row.code.as_str()), (7, "not-ours"));
        assert_eq!(
            (row.outcome, row.sale_id.as_ref()),
            ("checkout_not_found", None)
        );
        assert!(batch.purchase_items.is_empty() && batch.sales.is_empty());
    }

    #[test]
    fn a_client_naming_a_far_hour_creates_no_sale() {
        let mut far = checkout(CheckoutOutcome::Rejected(Rejection::SaleNotActive), None);
        far.sale_id = 1999010100;
        far.item_id = "1999010100-5".into();
        let near = checkout(CheckoutOutcome::Rejected(Rejection::ItemSoldOut), None);
        let batch =
            RowBatch::from_records(&[(1, Record::Checkout(far)), (2, Record::Checkout(near))])
                .unwrap();
        assert_eq!(batch.checkout_attempts.len(), 2);
        assert_eq!(batch.checkout_attempts[0].sale_id, "1999010100");
        let sales: Vec<String> = batch.sales.iter().map(|s| s.to_string()).collect();
        assert_eq!(sales, ["2026112120"]);
    }

    #[test]
    fn texts_never_carry_nul_and_items_never_repeat() {
        let mut record = checkout(CheckoutOutcome::Rejected(Rejection::ItemNotFound), None);
        record.item_id = "a\0b".into();
        assert_eq!(checkout_row(1, &record).item_id, "a\u{FFFD}b");
        let twice = purchase(
            PurchaseOutcome::Completed,
            vec![item(5, ItemOutcome::Bought), item(5, ItemOutcome::SoldOut)],
        );
        let rows = purchase_item_rows(1, &twice);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].outcome, "bought");
    }

    #[test]
    fn sequence_numbers_beyond_bigint_are_refused() {
        let record = Record::Checkout(checkout(CheckoutOutcome::AlreadyInCart, None));
        assert_eq!(
            RowBatch::from_records(&[(u64::MAX, record)]),
            Err(SeqOutOfRange(u64::MAX))
        );
    }
}
