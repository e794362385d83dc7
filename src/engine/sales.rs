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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};

use crate::domain::SaleId;

use super::config::SaleSettings;
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
    /// Fixed for the sale's life: from its `SaleOpened` record, or the
    /// flags of this start for a sale the log holds nothing of yet.
    pub settings: SaleSettings,
    pub inventory: Inventory,
    pub users: UserTable,
    /// Sequence number of the sale's `SaleOpened` record (0: none yet).
    opened_seq: AtomicU64,
    /// Serialises the first writes of a sale so exactly one records it.
    opening: Mutex<()>,
}

impl SaleState {
    pub fn new(id: SaleId, settings: SaleSettings, users_max: u32) -> SaleState {
        SaleState {
            id,
            starts_at: id.starts_at(),
            ends_at: id.ends_at(),
            settings,
            inventory: Inventory::new(settings.items_per_sale),
            users: UserTable::new(users_max),
            opened_seq: AtomicU64::new(0),
            opening: Mutex::new(()),
        }
    }

    pub fn contains(&self, now: DateTime<Utc>) -> bool {
        self.starts_at <= now && now < self.ends_at
    }

    /// Whether the log holds the sale's settings.
    pub fn is_opened(&self) -> bool {
        self.opened_seq.load(Ordering::Acquire) != 0
    }

    /// Runs `record` (which appends the `SaleOpened` record and returns
    /// its sequence number) unless the sale is recorded already; one
    /// caller at a time, so the record is written once.
    pub fn open_once<E>(&self, record: impl FnOnce() -> Result<u64, E>) -> Result<(), E> {
        if self.is_opened() {
            return Ok(());
        }
        let _opening = self.opening.lock();
        if self.is_opened() {
            return Ok(());
        }
        let seq = record()?;
        self.mark_opened(seq);
        Ok(())
    }

    /// Sequence number of the sale's `SaleOpened` record (0: none yet);
    /// snapshots keep it.
    pub fn opened_seq(&self) -> u64 {
        self.opened_seq.load(Ordering::Acquire)
    }

    pub fn mark_opened(&self, seq: u64) {
        assert!(seq > 0, "sequence numbers start at 1");
        let before = self.opened_seq.swap(seq, Ordering::AcqRel);
        assert_eq!(before, 0, "sale {} opened twice", self.id);
    }

    /// Nothing happened in the sale yet (no user, no claim).
    pub fn is_untouched(&self) -> bool {
        self.users.users_count() == 0 && self.inventory.bits_set() == 0
    }
}

#[derive(Debug)]
struct Sales {
    /// Created by the first request that needs it (not at start: the
    /// engine's time is known only after replay).
    active: Option<Arc<SaleState>>,
    by_id: BTreeMap<SaleId, Arc<SaleState>>,
}

/// The held sales and which one is active.
#[derive(Debug)]
pub struct SaleTable {
    sales: RwLock<Sales>,
    /// What a sale that opens from now on is given (the flags).
    settings: SaleSettings,
    users_per_sale_max: u32,
    retained_hours: u32,
}

impl SaleTable {
    pub fn new(settings: SaleSettings, users_per_sale_max: u32, retained_hours: u32) -> SaleTable {
        SaleTable {
            sales: RwLock::new(Sales {
                active: None,
                by_id: BTreeMap::new(),
            }),
            settings,
            users_per_sale_max,
            retained_hours,
        }
    }

    /// What a sale not held yet would be given.
    pub fn settings_for_new(&self) -> SaleSettings {
        self.settings
    }

    /// The sale containing `now`, switching (and pruning) on a new hour.
    /// The engine's time never goes back, so neither does the active sale.
    pub fn active(&self, now: DateTime<Utc>) -> Arc<SaleState> {
        {
            let sales = self.sales.read();
            if let Some(active) = sales.active.as_ref().filter(|a| a.contains(now)) {
                return Arc::clone(active);
            }
        }
        let mut sales = self.sales.write();
        if let Some(active) = sales.active.as_ref().filter(|a| a.contains(now)) {
            return Arc::clone(active);
        }
        let id = SaleId::containing(now);
        if let Some(previous) = &sales.active {
            assert!(previous.id < id, "the active sale never goes back");
        }
        let active = self.get_or_create(&mut sales, id);
        sales.active = Some(Arc::clone(&active));
        let oldest_kept = id.hours_before(self.retained_hours);
        sales.by_id.retain(|&sale, _| sale >= oldest_kept);
        assert!(sales.by_id.contains_key(&id));
        active
    }

    fn get_or_create(&self, sales: &mut Sales, id: SaleId) -> Arc<SaleState> {
        let state = sales.by_id.entry(id).or_insert_with(|| {
            Arc::new(SaleState::new(id, self.settings, self.users_per_sale_max))
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

    /// Replay of a `SaleOpened` record: the sale with the recorded
    /// settings. A sale held already must be untouched (then it is
    /// replaced) or have the same settings.
    pub fn open_from_log(
        &self,
        id: SaleId,
        settings: SaleSettings,
        seq: u64,
    ) -> Result<Arc<SaleState>, String> {
        let mut sales = self.sales.write();
        let held = sales.by_id.get(&id).cloned();
        let state = match held {
            Some(held) if held.is_opened() => {
                return Err(format!("sale {id} is opened a second time"));
            }
            Some(held) if held.settings == settings => held,
            Some(held) if !held.is_untouched() => {
                return Err(format!(
                    "sale {id} opens with {settings:?}, but records before it used {:?}",
                    held.settings
                ));
            }
            _ => {
                let fresh = Arc::new(SaleState::new(id, settings, self.users_per_sale_max));
                sales.by_id.insert(id, Arc::clone(&fresh));
                if sales.active.as_ref().is_some_and(|a| a.id == id) {
                    sales.active = Some(Arc::clone(&fresh));
                }
                fresh
            }
        };
        state.mark_opened(seq);
        Ok(state)
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

    const SETTINGS: SaleSettings = SaleSettings {
        items_per_sale: 10,
        user_limit: 2,
    };

    fn at_hour(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, hour, 30, 0).unwrap()
    }

    #[test]
    fn active_sale_follows_the_clock_and_old_sales_are_dropped() {
        let table = SaleTable::new(SETTINGS, 100, 3);
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
        let table = SaleTable::new(SETTINGS, 100, 24);
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
