//! The engine's settings and their accepted ranges: the one definition of
//! each limit, used by the command line's ranges, the engine and the HTTP
//! handlers alike.

/// Items in every sale unless `--items-per-sale` says otherwise.
pub const ITEMS_PER_SALE_DEFAULT: u32 = 10_000;
/// Items one user may buy in one sale unless `--user-limit` says otherwise.
pub const USER_LIMIT_DEFAULT: u32 = 10;
/// Hours a past sale stays readable and answerable.
pub const PAST_SALES_RETAINED_HOURS_DEFAULT: u32 = PAST_SALES_RETAINED_HOURS_MIN;
/// Users one sale may hold unless configured otherwise.
pub const USERS_PER_SALE_MAX_DEFAULT: u32 = 2_000_000;
/// Largest accepted `users_per_sale_max`: a stripe's slot table (what a
/// code can address), so that a stripe can never fill before its sale.
pub const USERS_PER_SALE_MAX_LARGEST: u32 = super::codes::SLOTS_PER_STRIPE_MAX;
/// Largest accepted `items_per_sale`.
pub const ITEMS_PER_SALE_MAX: u32 = 1_000_000;
/// Largest accepted `user_limit`.
pub const USER_LIMIT_MAX: u32 = 1000;

/// Accepted `past_sales_retained_hours`: the contract keeps past sales for
/// at least a day; a week bounds the memory of retained sales.
pub const PAST_SALES_RETAINED_HOURS_MIN: u32 = 24;
pub const PAST_SALES_RETAINED_HOURS_MAX: u32 = 168;
/// Largest page of `items`.
pub const ITEMS_PAGE_LIMIT_MAX: u32 = 1000;

/// What a sale is fixed with when it opens (`SaleOpened` in the log):
/// later flags never change a sale the log holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaleSettings {
    pub items_per_sale: u32,
    pub user_limit: u32,
}

/// The engine's settings (`Engine::new` validates them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Items in every sale (1 to 1,000,000).
    pub items_per_sale: u32,
    /// Items one user may buy in one sale (1 to 1000).
    pub user_limit: u32,
    /// Hours a past sale stays readable and answerable (24 to 168).
    pub past_sales_retained_hours: u32,
    /// Users per sale the engine holds (1 to 2^24); a new user beyond it
    /// gets 409 `sale_full`, recorded.
    pub users_per_sale_max: u32,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            items_per_sale: ITEMS_PER_SALE_DEFAULT,
            user_limit: USER_LIMIT_DEFAULT,
            past_sales_retained_hours: PAST_SALES_RETAINED_HOURS_DEFAULT,
            users_per_sale_max: USERS_PER_SALE_MAX_DEFAULT,
        }
    }
}

/// A setting outside its accepted range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineConfigError {
    #[error("items_per_sale must be 1 to {ITEMS_PER_SALE_MAX}, got {0}")]
    ItemsPerSale(u32),
    #[error("user_limit must be 1 to {USER_LIMIT_MAX}, got {0}")]
    UserLimit(u32),
    #[error(
        "past_sales_retained_hours must be {PAST_SALES_RETAINED_HOURS_MIN} to \
         {PAST_SALES_RETAINED_HOURS_MAX}, got {0}"
    )]
    PastSalesRetainedHours(u32),
    #[error("users_per_sale_max must be 1 to {USERS_PER_SALE_MAX_LARGEST}, got {0}")]
    UsersPerSaleMax(u32),
}

impl EngineConfig {
    /// The settings the sales that open from now on get.
    pub fn sale_settings(&self) -> SaleSettings {
        SaleSettings {
            items_per_sale: self.items_per_sale,
            user_limit: self.user_limit,
        }
    }

    pub fn validate(&self) -> Result<(), EngineConfigError> {
        if !(1..=ITEMS_PER_SALE_MAX).contains(&self.items_per_sale) {
            return Err(EngineConfigError::ItemsPerSale(self.items_per_sale));
        }
        if !(1..=USER_LIMIT_MAX).contains(&self.user_limit) {
            return Err(EngineConfigError::UserLimit(self.user_limit));
        }
        let hours = PAST_SALES_RETAINED_HOURS_MIN..=PAST_SALES_RETAINED_HOURS_MAX;
        if !hours.contains(&self.past_sales_retained_hours) {
            return Err(EngineConfigError::PastSalesRetainedHours(
                self.past_sales_retained_hours,
            ));
        }
        if !(1..=USERS_PER_SALE_MAX_LARGEST).contains(&self.users_per_sale_max) {
            return Err(EngineConfigError::UsersPerSaleMax(self.users_per_sale_max));
        }
        Ok(())
    }
}
