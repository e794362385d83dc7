//! The generator's own record of what the server acknowledged: for each user,
//! the items of every 200 purchase answer. The audit holds the server to it.

use std::collections::HashMap;

/// Acknowledged purchases: user id → purchased item ids, in answer order.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    pub purchases_by_user: HashMap<String, Vec<String>>,
    /// 200 purchase answers recorded (including ones that bought nothing).
    pub acknowledged_purchases_count: u64,
    /// 200 purchase answers whose items could not be decoded: the ledger is
    /// incomplete by that many, which the audit reports as a failure.
    pub undecodable_purchases_count: u64,
}

impl Ledger {
    /// Records one 200 purchase answer.
    pub fn record_purchase(&mut self, user: String, items: impl IntoIterator<Item = String>) {
        self.acknowledged_purchases_count += 1;
        self.purchases_by_user
            .entry(user)
            .or_default()
            .extend(items);
    }

    /// Adds another worker's ledger. Workers have disjoint users, but a merge
    /// must not hide a server bug either way, so items are appended, not deduplicated.
    pub fn merge(&mut self, other: Ledger) {
        self.acknowledged_purchases_count += other.acknowledged_purchases_count;
        self.undecodable_purchases_count += other.undecodable_purchases_count;
        for (user, items) in other.purchases_by_user {
            self.purchases_by_user
                .entry(user)
                .or_default()
                .extend(items);
        }
    }

    pub fn purchased_items_count(&self) -> usize {
        self.purchases_by_user.values().map(Vec::len).sum()
    }
}
