//! One batch of records = one PostgreSQL transaction: the rows and the
//! cursor move together or not at all.
//!
//! The order inside the transaction, and why:
//! 1. lock the cursor row (`FOR UPDATE`) and check it is where this
//!    exporter left it: a second exporter waits here, then finds the cursor
//!    moved and writes nothing;
//! 2. add sales first seen, with their items (once per sale);
//! 3. binary COPY of `checkout_attempts`, `purchases`, `purchase_items`;
//! 4. move the cursor, `WHERE last_seq = <expected>`, checking one row moved;
//! 5. commit. A failure or a crash before the commit rolls everything back;
//!    a failure during the commit is resolved by re-reading the cursor.

use std::collections::HashSet;

use tokio_postgres::{Client, Transaction};

use crate::domain::{ItemId, SaleId};
use crate::export::copy::copy_rows;
use crate::export::rows::{ItemRow, RowBatch};
use crate::export::schema::LOG_STREAM;
use crate::export::ExportError;

/// What `sales` records about every sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaleSettings {
    pub items_per_sale: u32,
    pub user_limit: u32,
}

/// Rows committed by one batch, per table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TableRows {
    pub sales: u64,
    pub items: u64,
    pub checkout_attempts: u64,
    pub purchases: u64,
    pub purchase_items: u64,
}

impl TableRows {
    pub fn by_table(&self) -> [(&'static str, u64); 5] {
        [
            ("sales", self.sales),
            ("items", self.items),
            ("checkout_attempts", self.checkout_attempts),
            ("purchases", self.purchases),
            ("purchase_items", self.purchase_items),
        ]
    }

    pub fn add(&mut self, other: TableRows) {
        self.sales += other.sales;
        self.items += other.items;
        self.checkout_attempts += other.checkout_attempts;
        self.purchases += other.purchases;
        self.purchase_items += other.purchase_items;
    }

    pub fn total(&self) -> u64 {
        self.by_table().iter().map(|(_, rows)| rows).sum()
    }
}

/// Reads the committed cursor (0 before the first batch).
pub async fn read_cursor(client: &Client) -> Result<u64, ExportError> {
    let row = client
        .query_opt(
            "SELECT last_seq FROM export_cursor WHERE stream = $1",
            &[&LOG_STREAM],
        )
        .await?;
    let found: Option<i64> = row.map(|row| row.get(0));
    match found.map(u64::try_from) {
        Some(Ok(seq)) => Ok(seq),
        _ => Err(ExportError::CursorMoved { expected: 0, found }),
    }
}

/// Writes the rows of records `cursor + 1 ..= last_seq` and moves the
/// cursor to `last_seq`, in one transaction.
pub async fn write_batch(
    client: &mut Client,
    cursor: u64,
    last_seq: u64,
    rows: &RowBatch,
    settings: SaleSettings,
) -> Result<TableRows, ExportError> {
    assert!(last_seq > cursor, "a batch holds at least one record");
    let expected = i64::try_from(cursor).map_err(|_| crate::export::rows::SeqOutOfRange(cursor))?;
    let new_cursor =
        i64::try_from(last_seq).map_err(|_| crate::export::rows::SeqOutOfRange(last_seq))?;
    let transaction = client.transaction().await?;
    lock_cursor(&transaction, expected).await?;
    let mut written = insert_new_sales(&transaction, &rows.sales, settings).await?;
    written.checkout_attempts = copy_rows(&transaction, &rows.checkout_attempts).await?;
    written.purchases = copy_rows(&transaction, &rows.purchases).await?;
    written.purchase_items = copy_rows(&transaction, &rows.purchase_items).await?;
    move_cursor(&transaction, expected, new_cursor).await?;
    transaction.commit().await?;
    Ok(written)
}

async fn lock_cursor(transaction: &Transaction<'_>, expected: i64) -> Result<(), ExportError> {
    let found: Option<i64> = transaction
        .query_opt(
            "SELECT last_seq FROM export_cursor WHERE stream = $1 FOR UPDATE",
            &[&LOG_STREAM],
        )
        .await?
        .map(|row| row.get(0));
    if found != Some(expected) {
        return Err(ExportError::CursorMoved {
            expected: expected as u64,
            found,
        });
    }
    Ok(())
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

/// Adds the sales PostgreSQL does not have yet, each with all its items.
async fn insert_new_sales(
    transaction: &Transaction<'_>,
    sales: &std::collections::BTreeSet<SaleId>,
    settings: SaleSettings,
) -> Result<TableRows, ExportError> {
    let mut written = TableRows::default();
    if sales.is_empty() {
        return Ok(written);
    }
    let names: Vec<String> = sales.iter().map(|sale| sale.to_string()).collect();
    let known: HashSet<String> = transaction
        .query(
            "SELECT sale_id FROM sales WHERE sale_id = ANY($1)",
            &[&names],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for sale in sales {
        let name = sale.to_string();
        if known.contains(&name) {
            continue;
        }
        written.sales += insert_sale(transaction, *sale, &name, settings).await?;
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
) -> Result<u64, ExportError> {
    // Both settings were checked to fit an int by `ExportConfig::validate`.
    let total_items = i32::try_from(settings.items_per_sale).unwrap_or(i32::MAX);
    let user_limit = i32::try_from(settings.user_limit).unwrap_or(i32::MAX);
    let inserted = transaction
        .execute(
            "INSERT INTO sales (sale_id, starts_at, ends_at, total_items, user_limit)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &name,
                &sale.starts_at(),
                &sale.ends_at(),
                &total_items,
                &user_limit,
            ],
        )
        .await?;
    Ok(inserted)
}
