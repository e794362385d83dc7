//! One batch of records = one PostgreSQL transaction: the rows and the
//! cursor move together or not at all.
//!
//! The order inside the transaction, and why:
//! 1. lock the cursor row (`FOR UPDATE`) and check it is where this
//!    exporter left it, for the log this exporter reads: a second exporter
//!    waits here, then finds the cursor moved and writes nothing; an
//!    exporter of another log writes nothing either;
//! 2. add sales first seen, with their items (once per sale), taking the
//!    sale's settings from its `SaleOpened` record when the log has one;
//! 3. binary COPY of `checkout_attempts`, `purchases`, `purchase_items`,
//!    `sale_openings`;
//! 4. link the batch's replayed purchases to the purchase they repeat
//!    (which may be in this batch or any earlier one, hence after the COPY);
//! 5. move the cursor, `WHERE last_seq = <expected>`, checking one row moved;
//! 6. commit. A failure or a crash before the commit rolls everything back;
//!    a failure during the commit is resolved by re-reading the cursor.
//!
//! The cursor's `log_id` says which log the exported rows come from: a
//! cursor without one (a database exported before identities existed)
//! adopts the log of the first exporter that connects; a cursor of another
//! log is refused, never written to.

use std::collections::HashSet;

use tokio_postgres::{Client, Transaction};

use crate::domain::{ItemId, SaleId};
use crate::export::copy::copy_rows;
use crate::export::rows::{ItemRow, RowBatch, SeqOutOfRange};
use crate::export::schema::LOG_STREAM;
use crate::export::ExportError;

/// What `sales` records about every sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaleSettings {
    pub items_per_sale: u32,
    pub user_limit: u32,
}

/// The cursor move of one batch: records `from + 1 ..= to` of log `log_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CursorMove {
    pub log_id: u128,
    pub from: u64,
    pub to: u64,
}

/// A log identity as the cursor stores it: 32 lowercase hex digits.
pub fn log_id_text(log_id: u128) -> String {
    format!("{log_id:032x}")
}

/// Rows committed by one batch, per table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TableRows {
    pub sales: u64,
    pub items: u64,
    pub checkout_attempts: u64,
    pub purchases: u64,
    pub purchase_items: u64,
    pub sale_openings: u64,
}

impl TableRows {
    pub fn by_table(&self) -> [(&'static str, u64); 6] {
        [
            ("sales", self.sales),
            ("items", self.items),
            ("checkout_attempts", self.checkout_attempts),
            ("purchases", self.purchases),
            ("purchase_items", self.purchase_items),
            ("sale_openings", self.sale_openings),
        ]
    }

    pub fn add(&mut self, other: TableRows) {
        self.sales += other.sales;
        self.items += other.items;
        self.checkout_attempts += other.checkout_attempts;
        self.purchases += other.purchases;
        self.purchase_items += other.purchase_items;
        self.sale_openings += other.sale_openings;
    }

    pub fn total(&self) -> u64 {
        self.by_table().iter().map(|(_, rows)| rows).sum()
    }
}

/// Reads the committed cursor (0 before the first batch) after checking
/// it belongs to log `log_id`; a cursor of no log adopts `log_id` first.
pub async fn claim_cursor(client: &Client, log_id: u128) -> Result<u64, ExportError> {
    let ours = log_id_text(log_id);
    let adopted = client
        .query_opt(
            "UPDATE export_cursor SET log_id = $2 WHERE stream = $1 AND log_id IS NULL
             RETURNING last_seq",
            &[&LOG_STREAM, &ours],
        )
        .await?;
    match adopted.map(|row| row.try_get::<_, i64>(0)).transpose()? {
        Some(0) => tracing::info!(log_id = %ours, "the export now belongs to this log"),
        Some(last_seq) => tracing::warn!(
            log_id = %ours,
            last_seq,
            "the export cursor named no log (an export from before log identities): \
             it is taken to be this log's"
        ),
        None => {}
    }
    let row = client
        .query_opt(
            "SELECT last_seq, log_id FROM export_cursor WHERE stream = $1",
            &[&LOG_STREAM],
        )
        .await?;
    let found = checked_cursor(row, &ours, 0)?;
    u64::try_from(found).map_err(|_| ExportError::CursorMoved {
        expected: 0,
        found: Some(found),
    })
}

/// The `last_seq` of a cursor row (`last_seq, log_id`) of log `ours`; a
/// missing row is a moved cursor, a row of another log a refusal.
fn checked_cursor(
    row: Option<tokio_postgres::Row>,
    ours: &str,
    expected: u64,
) -> Result<i64, ExportError> {
    let Some(row) = row else {
        return Err(ExportError::CursorMoved {
            expected,
            found: None,
        });
    };
    let found_log: Option<String> = row.try_get(1)?;
    match found_log {
        Some(found_log) if found_log == ours => Ok(row.try_get(0)?),
        database_log_id => Err(ExportError::OtherLog {
            database_log_id: database_log_id.unwrap_or_else(|| "none".into()),
            log_id: ours.to_string(),
        }),
    }
}

/// Writes the rows of records `cursor.from + 1 ..= cursor.to` and moves the
/// cursor to `cursor.to`, in one transaction.
pub async fn write_batch(
    client: &mut Client,
    cursor: CursorMove,
    rows: &RowBatch,
    settings: SaleSettings,
) -> Result<TableRows, ExportError> {
    assert!(cursor.to > cursor.from, "a batch holds at least one record");
    let expected = i64::try_from(cursor.from).map_err(|_| SeqOutOfRange(cursor.from))?;
    let new_cursor = i64::try_from(cursor.to).map_err(|_| SeqOutOfRange(cursor.to))?;
    let transaction = client.transaction().await?;
    lock_cursor(&transaction, expected, cursor.log_id).await?;
    let mut written = insert_new_sales(&transaction, rows, settings).await?;
    written.checkout_attempts = copy_rows(&transaction, &rows.checkout_attempts).await?;
    written.purchases = copy_rows(&transaction, &rows.purchases).await?;
    written.purchase_items = copy_rows(&transaction, &rows.purchase_items).await?;
    written.sale_openings = copy_rows(&transaction, &rows.sale_openings).await?;
    link_replays(&transaction, expected, new_cursor).await?;
    move_cursor(&transaction, expected, new_cursor).await?;
    transaction.commit().await?;
    Ok(written)
}

async fn lock_cursor(
    transaction: &Transaction<'_>,
    expected: i64,
    log_id: u128,
) -> Result<(), ExportError> {
    let row = transaction
        .query_opt(
            "SELECT last_seq, log_id FROM export_cursor WHERE stream = $1 FOR UPDATE",
            &[&LOG_STREAM],
        )
        .await?;
    let found = checked_cursor(row, &log_id_text(log_id), expected as u64)?;
    if found != expected {
        return Err(ExportError::CursorMoved {
            expected: expected as u64,
            found: Some(found),
        });
    }
    Ok(())
}

/// Points each replayed purchase of records `after + 1 ..= last` to the
/// first purchase carried out with the same code (NULL if the export has
/// none). The same statement as migration 5's, for rows exported before it.
async fn link_replays(
    transaction: &Transaction<'_>,
    after: i64,
    last: i64,
) -> Result<u64, ExportError> {
    let linked = transaction
        .execute(
            "UPDATE purchases r
             SET replay_of = (SELECT min(o.seq) FROM purchases o
                              WHERE o.code = r.code AND o.outcome = 'ok' AND o.seq < r.seq)
             WHERE r.seq > $1 AND r.seq <= $2 AND r.outcome = 'replayed'",
            &[&after, &last],
        )
        .await?;
    Ok(linked)
}

async fn move_cursor(
    transaction: &Transaction<'_>,
    expected: i64,
    new_cursor: i64,
) -> Result<(), ExportError> {
    let moved = transaction
        .execute(
            "UPDATE export_cursor SET last_seq = $1, updated_at = now()
             WHERE stream = $2 AND last_seq = $3",
            &[&new_cursor, &LOG_STREAM, &expected],
        )
        .await?;
    if moved != 1 {
        return Err(ExportError::CursorMoved {
            expected: expected as u64,
            found: None,
        });
    }
    Ok(())
}

/// Adds the sales PostgreSQL does not have yet, each with all its items:
/// with the settings of its `SaleOpened` record, which precedes every other
/// record of the sale (so it is in this batch if the sale is new), or with
/// the configured ones when the log has none.
async fn insert_new_sales(
    transaction: &Transaction<'_>,
    rows: &RowBatch,
    configured: SaleSettings,
) -> Result<TableRows, ExportError> {
    let mut written = TableRows::default();
    if rows.sales.is_empty() {
        return Ok(written);
    }
    let names: Vec<String> = rows.sales.iter().map(|sale| sale.to_string()).collect();
    let known: HashSet<String> = transaction
        .query(
            "SELECT sale_id FROM sales WHERE sale_id = ANY($1)",
            &[&names],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for sale in &rows.sales {
        let name = sale.to_string();
        if known.contains(&name) {
            continue;
        }
        let opening = rows.openings.get(sale);
        let settings = opening.map_or(configured, |opening| SaleSettings {
            items_per_sale: opening.items_per_sale,
            user_limit: opening.user_limit,
        });
        let opened_seq = opening.map(|opening| opening.seq);
        written.sales += insert_sale(transaction, *sale, &name, settings, opened_seq).await?;
        let items = (0..settings.items_per_sale).map(|index| ItemRow {
            item: ItemId { sale: *sale, index },
        });
        written.items += copy_rows(transaction, items).await?;
    }
    Ok(written)
}

async fn insert_sale(
    transaction: &Transaction<'_>,
    sale: SaleId,
    name: &str,
    settings: SaleSettings,
    opened_seq: Option<i64>,
) -> Result<u64, ExportError> {
    // The configured settings were checked to fit an int by
    // `ExportConfig::validate`; the engine's limits keep the logged ones
    // far below.
    let total_items = i32::try_from(settings.items_per_sale).unwrap_or(i32::MAX);
    let user_limit = i32::try_from(settings.user_limit).unwrap_or(i32::MAX);
    let inserted = transaction
        .execute(
            "INSERT INTO sales (sale_id, starts_at, ends_at, total_items, user_limit, opened_seq)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &name,
                &sale.starts_at(),
                &sale.ends_at(),
                &total_items,
                &user_limit,
                &opened_seq,
            ],
        )
        .await?;
    Ok(inserted)
}
