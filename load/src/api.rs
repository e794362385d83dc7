//! The flashsale HTTP API as the load generator sees it: request paths and the
//! few answer fields it reads (see `docs/api.md`). Only the fields that
//! are needed are decoded, borrowing from the response buffer where possible,
//! because decoding is on the hot path of every request.

use std::borrow::Cow;
use std::fmt::Write as _;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::http::{Connection, Method};

/// Items per listing page when reading the whole sale for the audit (the
/// server's maximum `limit`).
pub const LISTING_PAGE_ITEMS: u64 = 1000;
/// Largest sale the audit will read; bounds the listing loop.
const SALE_ITEMS_MAX: u64 = 10_000_000;

/// The active sale, from `GET /sales/active`.
#[derive(Debug, Clone, Deserialize)]
pub struct SaleInfo {
    pub id: String,
    pub total_items: u64,
    pub user_limit: u64,
    /// Unsold items when the run starts (`None`: the target did not say).
    #[serde(default)]
    pub items_available: Option<u64>,
}

impl SaleInfo {
    /// The SPEC's defaults for the sale of the current UTC hour, for servers
    /// that do not answer `/sales/active`.
    pub fn current_hour_default() -> Self {
        Self {
            id: current_sale_id(),
            total_items: 10_000,
            user_limit: 10,
            items_available: None,
        }
    }
}

/// `YYYYMMDDHH` of the current UTC hour: the id of the active sale.
pub fn current_sale_id() -> String {
    chrono::Utc::now().format("%Y%m%d%H").to_string()
}

/// The part of a 200 checkout answer the generator needs.
#[derive(Debug, Deserialize)]
pub struct CheckoutAnswer<'a> {
    #[serde(borrow)]
    pub code: Cow<'a, str>,
}

/// The part of a 200 purchase answer the ledger needs.
#[derive(Debug, Deserialize)]
pub struct PurchaseAnswer {
    pub purchased_items: Vec<PurchasedItem>,
}

#[derive(Debug, Deserialize)]
pub struct PurchasedItem {
    pub id: String,
}

/// Every error answer: `{"error": "...", "message": "..."}`.
#[derive(Debug, Deserialize)]
pub struct ErrorAnswer<'a> {
    #[serde(borrow)]
    pub error: Cow<'a, str>,
}

/// One page of `GET /sales/{id}/items`.
#[derive(Debug, Deserialize)]
pub struct ItemsPage {
    pub total: u64,
    pub items: Vec<ListedItem>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ListedItem {
    pub id: String,
    pub sold: bool,
}

/// Writes `/checkout?user_id=...&id=SALE-n` into `path`, reusing its memory.
/// User ids are `rRUNID-N`, all within `[A-Za-z0-9._-]`, so nothing needs
/// escaping.
pub fn checkout_path(path: &mut String, user: &UserLabel, sale_id: &str, item_index: u64) {
    path.clear();
    let _ = write!(path, "/checkout?user_id={user}&id={sale_id}-{item_index}");
}

/// Writes `/purchase?code=C`. Codes are URL-safe by the SPEC.
pub fn purchase_path(path: &mut String, code: &str) {
    path.clear();
    let _ = write!(path, "/purchase?code={code}");
}

/// Writes `/sales/{id}/items?offset=&limit=&available=`.
pub fn items_path(path: &mut String, sale_id: &str, offset: u64, limit: u64, available: bool) {
    path.clear();
    let _ = write!(
        path,
        "/sales/{sale_id}/items?offset={offset}&limit={limit}&available={available}"
    );
}

/// A user id made unique per run (`rRUNID-N`), so that repeated runs against
/// one server never meet an earlier run's user limits. Formatted on demand,
/// so no string is kept per user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserLabel {
    pub run_id: u32,
    pub number: u64,
}

impl std::fmt::Display for UserLabel {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "r{:08x}-{}", self.run_id, self.number)
    }
}

/// `GET /sales/active`.
pub async fn fetch_active_sale(connection: &mut Connection) -> anyhow::Result<SaleInfo> {
    let response = connection.send(Method::Get, "/sales/active").await?;
    if response.status != 200 {
        bail!("GET /sales/active answered {}", response.status);
    }
    serde_json::from_slice(response.body).context("decode GET /sales/active")
}

/// `GET /health`: its status and body, to recognise the stateless baseline.
pub async fn fetch_health(connection: &mut Connection) -> anyhow::Result<(u16, String)> {
    let response = connection.send(Method::Get, "/health").await?;
    Ok((
        response.status,
        String::from_utf8_lossy(response.body).into_owned(),
    ))
}

/// Reads every item of the sale, page by page (`available=false`).
pub async fn fetch_all_items(
    connection: &mut Connection,
    sale: &SaleInfo,
) -> anyhow::Result<Vec<ListedItem>> {
    if sale.total_items > SALE_ITEMS_MAX {
        bail!(
            "sale of {} items is over the {SALE_ITEMS_MAX} audit limit",
            sale.total_items
        );
    }
    let mut items = Vec::with_capacity(usize::try_from(sale.total_items).unwrap_or(0));
    let mut path = String::new();
    let pages_max = sale.total_items / LISTING_PAGE_ITEMS + 1;
    for page in 0..pages_max {
        let offset = page * LISTING_PAGE_ITEMS;
        if offset >= sale.total_items {
            break;
        }
        items_path(&mut path, &sale.id, offset, LISTING_PAGE_ITEMS, false);
        let response = connection.send(Method::Get, &path).await?;
        if response.status != 200 {
            bail!("GET {path} answered {}", response.status);
        }
        let page: ItemsPage =
            serde_json::from_slice(response.body).with_context(|| format!("decode GET {path}"))?;
        if page.total != sale.total_items {
            bail!(
                "listing says {} items, /sales/active says {}",
                page.total,
                sale.total_items
            );
        }
        items.extend(page.items);
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_written_without_escaping_needs() {
        let mut path = String::from("stale");
        let user = UserLabel {
            run_id: 0xab,
            number: 17,
        };
        checkout_path(&mut path, &user, "2026112120", 42);
        assert_eq!(path, "/checkout?user_id=r000000ab-17&id=2026112120-42");
        purchase_path(&mut path, "Zx_-9");
        assert_eq!(path, "/purchase?code=Zx_-9");
        items_path(&mut path, "2026112120", 100, 1000, false);
        assert_eq!(
            path,
            "/sales/2026112120/items?offset=100&limit=1000&available=false"
        );
    }

    #[test]
    fn answers_decode_only_what_is_needed() {
        let body = br#"{"code":"abc","sale_id":"1","items":["1-2"],"items_count":1}"#;
        let answer: CheckoutAnswer = serde_json::from_slice(body).expect("checkout");
        assert_eq!(answer.code, "abc");
        let body = br#"{"error":"item_sold_out","message":"item 1-2 is already sold"}"#;
        let answer: ErrorAnswer = serde_json::from_slice(body).expect("error");
        assert_eq!(answer.error, "item_sold_out");
        assert_eq!(current_sale_id().len(), 10);
    }
}
