//! The ceiling: an actix-web server with the flashsale routes that only parses
//! the query and answers a plausible JSON body of the same shape, with no
//! state, no log and no locks. Whatever our server does beyond this costs the
//! difference between the two throughputs. `GET /health` says
//! `"baseline":true` so that the load generator knows not to audit it.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;

use actix_web::error::InternalError;
use actix_web::{web, App, HttpResponse, HttpServer};
use chrono::{Duration, Timelike, Utc};
use serde::{Deserialize, Serialize};

/// Items per sale and per-user limit: the SPEC's defaults.
const ITEMS_PER_SALE: u64 = 10_000;
const USER_LIMIT: u64 = 10;
const USER_ID_LENGTH_MAX: usize = 64;
const CODE_LENGTH_MAX: usize = 64;
const PAGE_ITEMS_MAX: u64 = 1000;

/// Serves until the process is stopped (SIGINT / SIGTERM).
pub async fn serve(listen: SocketAddr, workers: usize) -> std::io::Result<()> {
    HttpServer::new(|| {
        let query_errors = web::QueryConfig::default().error_handler(|error, _request| {
            let response = error_response(400, "invalid_request", &error.to_string());
            InternalError::from_response(error, response).into()
        });
        App::new()
            .app_data(query_errors)
            .route("/checkout", web::post().to(checkout))
            .route("/purchase", web::post().to(purchase))
            .route("/sales/active", web::get().to(active_sale))
            .route("/sales/{id}/items", web::get().to(items))
            .route("/health", web::get().to(health))
            .default_service(web::to(|| async {
                error_response(404, "not_found", "unknown route")
            }))
    })
    .workers(workers)
    .bind(listen)?
    .run()
    .await
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

fn error_response(status: u16, error: &str, message: &str) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    HttpResponse::build(status).json(ErrorBody { error, message })
}

/// The active sale's id, start and end, from the clock.
fn active_sale_hour() -> (String, String, String) {
    let now = Utc::now();
    let start = now
        .with_minute(0)
        .and_then(|time| time.with_second(0))
        .and_then(|time| time.with_nanosecond(0))
        .unwrap_or(now);
    let end = start + Duration::hours(1);
    let format = "%Y-%m-%dT%H:%M:%SZ";
    (
        start.format("%Y%m%d%H").to_string(),
        start.format(format).to_string(),
        end.format(format).to_string(),
    )
}

fn valid_user_id(user_id: &str) -> bool {
    (1..=USER_ID_LENGTH_MAX).contains(&user_id.len())
        && user_id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
}

/// The sale part of `SALE-n`, if `n` is decimal without leading zeros and in range.
fn item_sale(item: &str) -> Option<&str> {
    let (sale, number_text) = item.split_once('-')?;
    let digits_only =
        !number_text.is_empty() && number_text.bytes().all(|byte| byte.is_ascii_digit());
    let leading_zero = number_text.len() > 1 && number_text.starts_with('0');
    if !digits_only || leading_zero {
        return None;
    }
    let number: u64 = number_text.parse().ok()?;
    (number < ITEMS_PER_SALE).then_some(sale)
}

#[derive(Deserialize)]
struct CheckoutQuery {
    user_id: String,
    id: String,
}

#[derive(Serialize)]
struct CheckoutBody<'a> {
    code: String,
    sale_id: &'a str,
    user_id: &'a str,
    items: [&'a str; 1],
    items_count: u64,
    sale_ends_at: &'a str,
}

async fn checkout(query: web::Query<CheckoutQuery>) -> HttpResponse {
    if !valid_user_id(&query.user_id) {
        return error_response(
            400,
            "invalid_request",
            "user_id must be 1 to 64 of [A-Za-z0-9._-]",
        );
    }
    let Some(sale) = item_sale(&query.id) else {
        return error_response(404, "item_not_found", "no such item");
    };
    let (active, _, ends_at) = active_sale_hour();
    if sale != active {
        return error_response(
            409,
            "sale_not_active",
            "the item's sale is not the active one",
        );
    }
    let mut hasher = DefaultHasher::new();
    query.user_id.hash(&mut hasher);
    HttpResponse::Ok().json(CheckoutBody {
        code: format!("bl{:016x}{:08x}", hasher.finish(), query.user_id.len()),
        sale_id: &active,
        user_id: &query.user_id,
        items: [&query.id],
        items_count: 1,
        sale_ends_at: &ends_at,
    })
}

#[derive(Deserialize)]
struct PurchaseQuery {
    code: String,
}

#[derive(Serialize)]
struct PurchaseBody<'a> {
    code: &'a str,
    sale_id: &'a str,
    user_id: &'a str,
    success: bool,
    purchased_items: [(); 0],
    failed_items: [(); 0],
    total_purchased: u64,
    failed_count: u64,
}

async fn purchase(query: web::Query<PurchaseQuery>) -> HttpResponse {
    if query.code.is_empty() || query.code.len() > CODE_LENGTH_MAX {
        return error_response(400, "invalid_request", "code must be 1 to 64 characters");
    }
    let (active, _, _) = active_sale_hour();
    HttpResponse::Ok().json(PurchaseBody {
        code: &query.code,
        sale_id: &active,
        user_id: "",
        success: false,
        purchased_items: [],
        failed_items: [],
        total_purchased: 0,
        failed_count: 0,
    })
}

#[derive(Serialize)]
struct SaleBody<'a> {
    id: &'a str,
    starts_at: &'a str,
    ends_at: &'a str,
    total_items: u64,
    items_sold: u64,
    items_available: u64,
    user_limit: u64,
}

async fn active_sale() -> HttpResponse {
    let (id, starts_at, ends_at) = active_sale_hour();
    HttpResponse::Ok().json(SaleBody {
        id: &id,
        starts_at: &starts_at,
        ends_at: &ends_at,
        total_items: ITEMS_PER_SALE,
        items_sold: 0,
        items_available: ITEMS_PER_SALE,
        user_limit: USER_LIMIT,
    })
}

#[derive(Deserialize)]
struct ItemsQuery {
    offset: Option<u64>,
    limit: Option<u64>,
    available: Option<bool>,
}

#[derive(Serialize)]
struct ItemBody {
    id: String,
    name: String,
    image_url: String,
    sold: bool,
}

#[derive(Serialize)]
struct ItemsBody<'a> {
    sale_id: &'a str,
    total: u64,
    offset: u64,
    limit: u64,
    items: Vec<ItemBody>,
}

async fn items(path: web::Path<String>, query: web::Query<ItemsQuery>) -> HttpResponse {
    let (active, _, _) = active_sale_hour();
    if *path != active {
        return error_response(404, "sale_not_found", "no such sale");
    }
    let offset = query.offset.unwrap_or(0);
    let limit = query.limit.unwrap_or(100);
    if !(1..=PAGE_ITEMS_MAX).contains(&limit) {
        return error_response(400, "invalid_request", "limit must be 1 to 1000");
    }
    let _available_only = query.available.unwrap_or(false);
    let end = offset.saturating_add(limit).min(ITEMS_PER_SALE);
    let items = (offset.min(end)..end)
        .map(|number| ItemBody {
            id: format!("{active}-{number}"),
            name: format!("Item {number}"),
            image_url: format!("https://images.example/{active}/{number}.png"),
            sold: false,
        })
        .collect();
    HttpResponse::Ok().json(ItemsBody {
        sale_id: &active,
        total: ITEMS_PER_SALE,
        offset,
        limit,
        items,
    })
}

async fn health() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"status":"ok","baseline":true}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_checked_like_the_spec_says() {
        assert!(valid_user_id("r0000abcd-12"));
        assert!(!valid_user_id(""));
        assert!(!valid_user_id("a b"));
        assert!(!valid_user_id(&"x".repeat(65)));
        assert_eq!(item_sale("2026112120-42"), Some("2026112120"));
        assert_eq!(item_sale("2026112120-10000"), None);
        assert_eq!(item_sale("2026112120"), None);
        assert_eq!(item_sale("2026112120-042"), None);
        assert_eq!(item_sale("2026112120-+4"), None);
        assert_eq!(active_sale_hour().0.len(), 10);
    }
}
