//! Reads: the active sale, a retained sale, a page of a sale's items. They
//! take no user lock and change nothing.

use std::sync::Arc;

use super::config::ITEMS_PAGE_LIMIT_MAX;
use super::sales::SaleState;
use super::sales::FUTURE_SALES_KNOWN_HOURS;
use super::views::{ItemView, ItemsPage, SaleStatus, SaleView};
use super::Engine;
use crate::domain::{ItemId, SaleId};

impl Engine {
    /// The active sale.
    pub fn active_sale(&self) -> SaleView {
        let active = self.sales.active(self.now());
        self.sale_view(active.id, SaleStatus::Active, Some(&active))
    }

    /// Items durably sold in the active sale (cheap: for metrics).
    pub fn active_items_sold(&self) -> u32 {
        let active = self.sales.active(self.now());
        self.settle(&active);
        active.inventory.items_sold_durable()
    }

    /// The active sale, a retained past one, or one of the next
    /// `FUTURE_SALES_KNOWN_HOURS` (upcoming, with the settings it will
    /// open with); `None` for any other.
    pub fn sale(&self, id: SaleId) -> Option<SaleView> {
        let (status, sale) = self.readable_sale(id)?;
        Some(self.sale_view(id, status, sale.as_deref()))
    }

    /// The state of `id` if it is readable (`None` inside: never touched).
    fn readable_sale(&self, id: SaleId) -> Option<(SaleStatus, Option<Arc<SaleState>>)> {
        let active = self.sales.active(self.now());
        let hours_ago = id.hours_until(active.id);
        let status = match hours_ago {
            0 => SaleStatus::Active,
            1.. if hours_ago <= i64::from(self.config.past_sales_retained_hours) => {
                SaleStatus::Ended
            }
            ..0 if -hours_ago <= i64::from(FUTURE_SALES_KNOWN_HOURS) => SaleStatus::Upcoming,
            _ => return None,
        };
        Some((status, self.sales.get(id)))
    }

    fn sale_view(&self, id: SaleId, status: SaleStatus, state: Option<&SaleState>) -> SaleView {
        let settings = state.map_or(self.sales.settings_for_new(), |s| s.settings);
        let items_sold = state.map_or(0, |s| {
            self.settle(s);
            s.inventory.items_sold_durable()
        });
        SaleView {
            id,
            status,
            starts_at: id.starts_at(),
            ends_at: id.ends_at(),
            total_items: settings.items_per_sale,
            items_sold,
            items_available: settings.items_per_sale - items_sold,
            user_limit: settings.user_limit,
        }
    }

    /// A page of a readable sale's items; `limit` is capped at
    /// `ITEMS_PAGE_LIMIT_MAX`. An item shows as sold once the record that
    /// sold it is durable; the page's start is found by popcounts over the
    /// sold bitset, never by walking items.
    pub fn items(
        &self,
        id: SaleId,
        offset: u32,
        limit: u32,
        available_only: bool,
    ) -> Option<ItemsPage> {
        let (status, state) = self.readable_sale(id)?;
        let view = self.sale_view(id, status, state.as_deref());
        let limit = limit.min(ITEMS_PAGE_LIMIT_MAX);
        let item = |index| ItemId { sale: id, index };
        let items = match &state {
            Some(sale) => sale
                .inventory
                .page(offset, limit, available_only)
                .into_iter()
                .map(|index| ItemView {
                    id: item(index),
                    sold: sale.inventory.is_sold_durable(index),
                })
                .collect(),
            None => {
                let end = offset.saturating_add(limit).min(view.total_items);
                (offset.min(end)..end)
                    .map(|index| ItemView {
                        id: item(index),
                        sold: false,
                    })
                    .collect()
            }
        };
        let total = if available_only {
            view.items_available
        } else {
            view.total_items
        };
        Some(ItemsPage {
            sale: id,
            total,
            offset,
            limit,
            items,
        })
    }
}
