//! Checks before a run: a run against a sale that is already sold out, or
//! that admits no more users, measures only the rejection path (409s) and
//! says nothing about selling. That happens easily (a second run in the
//! same hour), so the generator says so before it starts.

use crate::api::SaleInfo;
use crate::http::{Connection, Method};

/// The user of the probe checkout: one fixed name, so probes of many runs
/// cost the sale at most one user of `--users-per-sale-max`.
const PROBE_USER: &str = "flashsale-load-probe";

/// Sends one checkout by a user outside the run, of item 0: its 409 code
/// (`sale_sold_out`, `sale_full`, ...) or `None` when it was accepted or
/// says nothing about the sale. The cart it may open is never bought.
pub async fn probe_new_user(connection: &mut Connection, sale: &SaleInfo) -> Option<String> {
    let path = format!("/checkout?user_id={PROBE_USER}&id={}-0", sale.id);
    let response = connection.send(Method::Post, &path).await.ok()?;
    if response.status != 409 {
        return None;
    }
    let error: serde_json::Value = serde_json::from_slice(response.body).ok()?;
    error["error"].as_str().map(str::to_string)
}

/// The warnings for `sale` and the probe's answer, one line each.
pub fn warnings(sale: &SaleInfo, probe_error: Option<&str>) -> Vec<String> {
    let mut lines = Vec::new();
    let sold_out = sale.items_available == Some(0) || probe_error == Some("sale_sold_out");
    if sold_out {
        lines.push(format!(
            "sale {} is already sold out: this run measures only the sold-out path (409); \
             wait for the next hour or start the server on an empty --data-dir",
            sale.id
        ));
    } else if let Some(available) = sale.items_available.filter(|&n| n < sale.total_items) {
        lines.push(format!(
            "sale {} already has {} of {} items sold: it sells out sooner than on a fresh sale",
            sale.id,
            sale.total_items - available,
            sale.total_items
        ));
    }
    if probe_error == Some("sale_full") {
        lines.push(format!(
            "sale {} admits no more users (--users-per-sale-max reached): every user of this \
             run gets 409 sale_full; wait for the next hour or raise the limit",
            sale.id
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sale(total_items: u64, items_available: Option<u64>) -> SaleInfo {
        SaleInfo {
            id: "2026112120".into(),
            total_items,
            user_limit: 10,
            items_available,
        }
    }

    #[test]
    fn a_sold_out_sale_is_reported_before_the_run() {
        let lines = warnings(&sale(10, Some(0)), None);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("already sold out"), "{lines:?}");
        let lines = warnings(&sale(10, None), Some("sale_sold_out"));
        assert!(lines[0].contains("already sold out"), "{lines:?}");
    }

    #[test]
    fn a_partly_sold_or_full_sale_is_reported_and_a_fresh_one_is_not() {
        assert!(warnings(&sale(10, Some(10)), None).is_empty());
        assert!(warnings(&sale(10, None), None).is_empty());
        let lines = warnings(&sale(10, Some(4)), None);
        assert!(lines[0].contains("6 of 10 items sold"), "{lines:?}");
        let lines = warnings(&sale(10, Some(10)), Some("sale_full"));
        assert!(lines[0].contains("admits no more users"), "{lines:?}");
    }
}
