//! Reads: the active sale, a retained sale, a page of a sale's items. They
//! take no user lock and change nothing.

use std::sync::Arc;

use super::config::ITEMS_PAGE_LIMIT_MAX;
use super::sales::SaleState;
use super::views::{ItemView, ItemsPage, SaleView};
use super::Engine;
use crate::domain::{ItemId, SaleId};

impl Engine {
    /// The active sale.
    pub fn active_sale(&self) -> SaleView {
        let active = self.sales.active(self.clock.now());
        self.sale_view(active.id, Some(&active))
    }

    /// Items sold in the active sale (cheap: for metrics).
    pub fn active_items_sold(&self) -> u32 {
        self.sales.active(self.clock.now()).inventory.items_sold()
    }

    /// The active sale or a retained past one; `None` for any other.
    pub fn sale(&self, id: SaleId) -> Option<SaleView> {
        let sale = self.readable_sale(id)?;
        Some(self.sale_view(id, sale.as_deref()))
    }

    /// The state of `id` if it is readable (`Some(None)`: never touched).
    fn readable_sale(&self, id: SaleId) -> Option<Option<Arc<SaleState>>> {
        let active = self.sales.active(self.clock.now());
        let hours = id.hours_until(active.id);
        let retained = 0..=i64::from(self.config.past_sales_retained_hours);
        if !retained.contains(&hours) {
            return None;
        }
        Some(self.sales.get(id))
    }

    fn sale_view(&self, id: SaleId, state: Option<&SaleState>) -> SaleView {
        let total_items = self.config.items_per_sale;
        let items_sold = state.map_or(0, |s| s.inventory.items_sold());
        SaleView {
            id,
            starts_at: id.starts_at(),
            ends_at: id.ends_at(),
            total_items,
            items_sold,
            items_available: total_items - items_sold,
            user_limit: self.config.user_limit,
        }
    }

    /// A page of a readable sale's items; `limit` is capped at
    /// `ITEMS_PAGE_LIMIT_MAX`. An item counts as sold once its claim is
    /// recorded.
    pub fn items(
        &self,
        id: SaleId,
        offset: u32,
        limit: u32,
        available_only: bool,
    ) -> Option<ItemsPage> {
        let state = self.readable_sale(id)?;
        let is_sold = |index: u32| state.as_ref().is_some_and(|s| s.inventory.is_sold(index));
        let limit = limit.min(ITEMS_PAGE_LIMIT_MAX);
        let items_total = self.config.items_per_sale;
        let total = if available_only {
            items_total - state.as_ref().map_or(0, |s| s.inventory.items_sold())
        } else {
            items_total
        };
        let items = (0..items_total)
            .map(|index| ItemView {
                id: ItemId { sale: id, index },
                sold: is_sold(index),
            })
            .filter(|item| !(available_only && item.sold))
            .skip(offset as usize)
            .take(limit as usize)
            .collect();
        Some(ItemsPage {
            sale: id,
            total,
            offset,
            limit,
            items,
        })
    }
}
