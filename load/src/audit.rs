//! The end-of-run audit: the server's acknowledged answers (the ledger) and its
//! item listing must agree with the flash-sale invariants. Throughput means
//! nothing if the server sold an item twice to get it.

use std::collections::HashMap;

use serde::Serialize;

use crate::api::ListedItem;
use crate::ledger::Ledger;

/// Violations listed in full; beyond this only the count grows, so that a
/// badly broken server does not produce a gigabyte of report.
const VIOLATIONS_LISTED_MAX: usize = 20;

/// What the audit found.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub users_checked: usize,
    pub purchased_items_checked: usize,
    pub violations_count: u64,
    /// The first `VIOLATIONS_LISTED_MAX` violations, in words.
    pub violations: Vec<String>,
}

impl AuditReport {
    pub fn passed(&self) -> bool {
        self.violations_count == 0
    }

    fn violation(&mut self, text: String) {
        self.violations_count += 1;
        if self.violations.len() < VIOLATIONS_LISTED_MAX {
            self.violations.push(text);
        }
    }
}

/// Checks the three invariants of issue 5:
/// 1. no item is in the acknowledged purchases of two users (or twice in one user's),
/// 2. no user has more than `user_limit` acknowledged purchased items,
/// 3. every acknowledged purchased item is listed as sold.
pub fn audit(ledger: &Ledger, listing: &[ListedItem], user_limit: u64) -> AuditReport {
    let mut report = AuditReport {
        users_checked: ledger.purchases_by_user.len(),
        purchased_items_checked: ledger.purchased_items_count(),
        violations_count: 0,
        violations: Vec::new(),
    };
    if ledger.undecodable_purchases_count > 0 {
        report.violation(format!(
            "{} acknowledged purchase answers could not be decoded: the ledger is incomplete",
            ledger.undecodable_purchases_count
        ));
    }
    let sold_by_id: HashMap<&str, bool> = listing
        .iter()
        .map(|item| (item.id.as_str(), item.sold))
        .collect();
    let mut owner_by_item: HashMap<&str, &str> =
        HashMap::with_capacity(report.purchased_items_checked);
    // Sorted so that the report is the same for the same ledger.
    let mut users: Vec<(&String, &Vec<String>)> = ledger.purchases_by_user.iter().collect();
    users.sort();
    for (user, items) in users {
        if items.len() as u64 > user_limit {
            report.violation(format!(
                "user {user} has {} acknowledged purchased items, over the limit of {user_limit}",
                items.len()
            ));
        }
        for item in items {
            if let Some(owner) = owner_by_item.insert(item, user) {
                report.violation(format!(
                    "item {item} was acknowledged as bought by {owner} and by {user}"
                ));
            }
            match sold_by_id.get(item.as_str()) {
                Some(true) => {}
                Some(false) => report.violation(format!(
                    "item {item} bought by {user} is listed as not sold"
                )),
                None => report.violation(format!(
                    "item {item} bought by {user} is missing from the listing"
                )),
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(sold: &[(&str, bool)]) -> Vec<ListedItem> {
        sold.iter()
            .map(|&(id, sold)| ListedItem {
                id: id.to_string(),
                sold,
            })
            .collect()
    }

    fn ledger(purchases: &[(&str, &[&str])]) -> Ledger {
        let mut ledger = Ledger::default();
        for &(user, items) in purchases {
            ledger.record_purchase(user.to_string(), items.iter().map(|item| item.to_string()));
        }
        ledger
    }

    #[test]
    fn consistent_ledger_passes() {
        let ledger = ledger(&[("a", &["s-1", "s-2"]), ("b", &["s-3"]), ("c", &[])]);
        let listing = listing(&[("s-1", true), ("s-2", true), ("s-3", true), ("s-4", false)]);
        let report = audit(&ledger, &listing, 2);
        assert!(report.passed(), "{:?}", report.violations);
        assert_eq!(report.users_checked, 3);
        assert_eq!(report.purchased_items_checked, 3);
    }

    #[test]
    fn audit_catches_double_sale_over_limit_and_unsold_items() {
        let ledger = ledger(&[
            ("a", &["s-1", "s-2", "s-3"]),
            ("b", &["s-1"]),
            ("c", &["s-4", "s-9"]),
        ]);
        let listing = listing(&[("s-1", true), ("s-2", true), ("s-3", true), ("s-4", false)]);
        let report = audit(&ledger, &listing, 2);
        assert!(!report.passed());
        assert_eq!(report.violations_count, 4, "{:?}", report.violations);
        let all = report.violations.join("\n");
        assert!(all.contains("user a has 3 acknowledged purchased items"));
        assert!(all.contains("item s-1 was acknowledged as bought by a and by b"));
        assert!(all.contains("item s-4 bought by c is listed as not sold"));
        assert!(all.contains("item s-9 bought by c is missing from the listing"));
    }

    #[test]
    fn item_bought_twice_by_one_user_is_a_violation() {
        let ledger = ledger(&[("a", &["s-1"]), ("a", &["s-1"])]);
        let report = audit(&ledger, &listing(&[("s-1", true)]), 10);
        assert_eq!(report.violations_count, 1);
    }
}
