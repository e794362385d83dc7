//! The sales the engine holds: the active one (found from the clock) and
//! past ones kept for `past_sales_retained_hours`, each with its inventory
//! and users (whose slots hold their carts and purchase results).
//!
//! A sale's state is created lazily, the first time something needs it; a
//! sale that was never touched reads as all-unsold. The active sale is
//! cached behind a read-mostly lock, so the hot path takes a shared lock and
//! clones an `Arc`; only the first request of a new hour takes the write
//! lock, creates the new sale and drops the sales that left retention
//! (with their users, carts and codes). Nobody holds this lock while
//! taking a user lock: callers clone the `Arc` and let go.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::RwLock;

use crate::domain::SaleId;

use super::inventory::Inventory;
use super::users::UserTable;

/// How far ahead of the active sale an item id still names a known sale.
pub const FUTURE_SALES_KNOWN_HOURS: u32 = 24;

/// Everything the engine knows about one sale.
#[derive(Debug)]
pub struct SaleState {
    pub id: SaleId,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub inventory: Inventory,
    pub users: UserTable,
}

impl SaleState {
    pub fn new(id: SaleId, items_per_sale: u32, users_max: u32) -> SaleState {
        SaleState {
            id,
            starts_at: id.starts_at(),
            ends_at: id.ends_at(),
            inventory: Inventory::new(items_per_sale),
            users: UserTable::new(users_max),
        }
    }

    pub fn contains(&self, now: DateTime<Utc>) -> bool {
        self.starts_at <= now && now < self.ends_at
    }
}

#[derive(Debug)]
struct Sales {
    active: Arc<SaleState>,
    by_id: BTreeMap<SaleId, Arc<SaleState>>,
}

/// The held sales and which one is active.
#[derive(Debug)]
pub struct SaleTable {
    sales: RwLock<Sales>,
    items_per_sale: u32,
    users_per_sale_max: u32,
    retained_hours: u32,
}

impl SaleTable {
    pub fn new(
        now: DateTime<Utc>,
        items_per_sale: u32,
        users_per_sale_max: u32,
        retained_hours: u32,
    ) -> SaleTable {
        let id = SaleId::containing(now);
        let active = Arc::new(SaleState::new(id, items_per_sale, users_per_sale_max));
        let by_id = BTreeMap::from([(id, Arc::clone(&active))]);
        SaleTable {
            sales: RwLock::new(Sales { active, by_id }),
            items_per_sale,
            users_per_sale_max,
            retained_hours,
        }
    }

    /// The sale containing `now`, switching (and pruning) on a new hour.
    pub fn active(&self, now: DateTime<Utc>) -> Arc<SaleState> {
        {
            let sales = self.sales.read();
            if sales.active.contains(now) {
                return Arc::clone(&sales.active);
            }
        }
        let mut sales = self.sales.write();
        if !sales.active.contains(now) {
            let id = SaleId::containing(now);
            let active = self.get_or_create(&mut sales, id);
            sales.active = active;
            let oldest_kept = id.hours_before(self.retained_hours);
            sales.by_id.retain(|&sale, _| sale >= oldest_kept);
            assert!(sales.by_id.contains_key(&id));
        }
        Arc::clone(&sales.active)
    }

    fn get_or_create(&self, sales: &mut Sales, id: SaleId) -> Arc<SaleState> {
        let state = sales.by_id.entry(id).or_insert_with(|| {
            Arc::new(SaleState::new(
                id,
                self.items_per_sale,
                self.users_per_sale_max,
            ))
        });
        Arc::clone(state)
    }

    /// The state of `id` if it exists (it may not have been touched yet).
    pub fn get(&self, id: SaleId) -> Option<Arc<SaleState>> {
        self.sales.read().by_id.get(&id).cloned()
    }

    /// The state of `id`, created if needed (replay).
    pub fn get_or_insert(&self, id: SaleId) -> Arc<SaleState> {
        if let Some(state) = self.get(id) {
            return state;
        }
        let mut sales = self.sales.write();
        self.get_or_create(&mut sales, id)
    }

    /// The held sales other than `active`, newest first: where a code
    /// that `active` does not know is looked for next (a code does not
    /// name its sale; at most `retained_hours` sales are asked).
    pub fn others_newest_first(&self, active: &Arc<SaleState>) -> Vec<Arc<SaleState>> {
        let sales = self.sales.read();
        let others = sales.by_id.values().rev();
        others
            .filter(|s| !Arc::ptr_eq(s, active))
            .cloned()
            .collect()
    }

    /// Every held sale, oldest first.
    pub fn all(&self) -> Vec<Arc<SaleState>> {
        self.sales.read().by_id.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at_hour(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, hour, 30, 0).unwrap()
    }

    #[test]
    fn active_sale_follows_the_clock_and_old_sales_are_dropped() {
        let table = SaleTable::new(at_hour(0), 10, 100, 3);
        let first = table.active(at_hour(0));
        assert_eq!(first.id.to_string(), "2026112100");
        assert!(Arc::ptr_eq(&first, &table.active(at_hour(0))));
        for hour in 1..=3 {
            table.active(at_hour(hour));
        }
        assert!(table.get(first.id).is_some(), "3 hours old: retained");
        table.active(at_hour(4));
        assert!(table.get(first.id).is_none(), "4 hours old: dropped");
        assert_eq!(table.all().len(), 4);
    }

    #[test]
    fn other_sales_are_listed_newest_first() {
        let table = SaleTable::new(at_hour(5), 10, 100, 24);
        let older = table.get_or_insert(SaleId::containing(at_hour(1)));
        let newer = table.get_or_insert(SaleId::containing(at_hour(3)));
        let active = table.active(at_hour(5));
        let ids: Vec<SaleId> = table
            .others_newest_first(&active)
            .iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, vec![newer.id, older.id]);
    }
}
