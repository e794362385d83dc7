//! Thin handlers: parse parameters into domain types, call the service or
//! the engine, render the contract's JSON.

use actix_web::http::header::ContentType;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::client_errors::echo;
use super::{ApiError, AppState};
use crate::config::RETRY_AFTER_SECONDS;
use crate::domain::{ItemId, PurchaseCode, SaleId};
use crate::engine::{CartView, ItemsPage, PurchaseView, Rejection, SaleView, ITEMS_PAGE_LIMIT_MAX};

/// Items of a listing page when the client names no `limit`.
const ITEMS_PAGE_LIMIT_DEFAULT: u32 = 100;
/// Largest `offset` of a listing page, as the contract says.
const ITEMS_PAGE_OFFSET_MAX: u32 = 1_000_000;

type Answer = Result<HttpResponse, ApiError>;

pub(super) fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error, _| {
        ApiError::InvalidRequest(format!("bad query string: {}", echo(&error.to_string()))).into()
    })
}

pub(super) fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|error, _| {
        ApiError::InvalidRequest(format!("bad path: {}", echo(&error.to_string()))).into()
    })
}

pub(super) async fn not_found(request: HttpRequest) -> Answer {
    Err(ApiError::NotFound(format!(
        "{} {}",
        echo(request.method().as_str()),
        echo(request.path())
    )))
}

/// 405 with `Allow: allow` (the resource's methods).
pub(super) async fn method_not_allowed(request: HttpRequest, allow: &'static str) -> HttpResponse {
    let error = ApiError::MethodNotAllowed(format!(
        "{} is not allowed on {}",
        echo(request.method().as_str()),
        echo(request.path())
    ));
    let mut response = actix_web::ResponseError::error_response(&error);
    response.headers_mut().insert(
        actix_web::http::header::ALLOW,
        actix_web::http::header::HeaderValue::from_static(allow),
    );
    response
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[derive(Deserialize)]
pub(super) struct CheckoutQuery {
    user_id: Option<String>,
    id: Option<String>,
}

#[derive(Serialize)]
struct CartBody {
    code: String,
    sale_id: String,
    user_id: String,
    items: Vec<String>,
    items_count: usize,
    sale_ends_at: String,
}

impl From<&CartView> for CartBody {
    fn from(cart: &CartView) -> CartBody {
        CartBody {
            code: cart.code.to_string(),
            sale_id: cart.sale.to_string(),
            user_id: cart.user.to_string(),
            items: cart.items.iter().map(ItemId::to_string).collect(),
            items_count: cart.items.len(),
            sale_ends_at: rfc3339(cart.sale_ends_at),
        }
    }
}

pub(super) async fn checkout(
    state: web::Data<AppState>,
    query: web::Query<CheckoutQuery>,
    request: HttpRequest,
) -> Answer {
    let user = super::auth::acting_user(&state, &request, query.user_id.as_deref())?;
    let item = ItemId::parse(query.id.as_deref().unwrap_or(""))?;
    state.limits.check_user(&user)?;
    let cart = state
        .service
        .checkout(&user, item)
        .await?
        .map_err(|rejection| {
            let limit = state.service.user_limit();
            let message = match rejection {
                Rejection::ItemNotFound => format!("item {item} does not exist"),
                Rejection::SaleNotActive => format!("the sale of item {item} is not active"),
                Rejection::ItemSoldOut => format!("item {item} is already sold"),
                Rejection::SaleSoldOut => format!("every item of sale {} is sold", item.sale),
                Rejection::UserLimitReached => {
                    format!("user {user} already has {limit} items purchased or in the cart")
                }
                Rejection::CheckoutNotFound => format!("no cart for item {item}"),
                Rejection::SaleFull => {
                    format!(
                        "sale {} admits no more users; users in it keep buying",
                        item.sale
                    )
                }
            };
            ApiError::rejected(rejection, message)
        })?;
    Ok(HttpResponse::Ok().json(CartBody::from(&cart)))
}

#[derive(Deserialize)]
pub(super) struct PurchaseQuery {
    code: Option<String>,
    user_id: Option<String>,
}

#[derive(Serialize)]
struct PurchasedItem {
    id: String,
    name: String,
}

#[derive(Serialize)]
struct FailedItem {
    id: String,
    reason: &'static str,
}

#[derive(Serialize)]
struct PurchaseBody {
    code: String,
    sale_id: String,
    user_id: String,
    success: bool,
    purchased_items: Vec<PurchasedItem>,
    failed_items: Vec<FailedItem>,
    total_purchased: usize,
    failed_count: usize,
}

impl From<&PurchaseView> for PurchaseBody {
    fn from(view: &PurchaseView) -> PurchaseBody {
        let purchased_items: Vec<PurchasedItem> = view
            .bought()
            .map(|item| PurchasedItem {
                id: item.to_string(),
                name: item.name(),
            })
            .collect();
        let failed_items: Vec<FailedItem> = view
            .failed()
            .map(|(item, outcome)| FailedItem {
                id: item.to_string(),
                reason: outcome.as_str(),
            })
            .collect();
        PurchaseBody {
            code: view.code.to_string(),
            sale_id: view.sale.to_string(),
            user_id: view.user.to_string(),
            success: view.success(),
            total_purchased: purchased_items.len(),
            failed_count: failed_items.len(),
            purchased_items,
            failed_items,
        }
    }
}

pub(super) async fn purchase(
    state: web::Data<AppState>,
    query: web::Query<PurchaseQuery>,
    request: HttpRequest,
) -> Answer {
    let acting = super::auth::token_user(&state, &request)?;
    if let Some(user) = &acting {
        super::auth::check_named(user, query.user_id.as_deref())?;
    }
    let code = PurchaseCode::parse(query.code.as_deref().unwrap_or(""))?;
    // The acting user's budget: the token's user, else the cart's owner.
    match &acting {
        Some(user) => state.limits.check_user(user)?,
        None => super::limits::check_purchase_owner(&state, &code)?,
    }
    let answer = state.service.purchase_as(&code, acting.as_ref()).await?;
    let view = answer.map_err(|rejection| {
        let message = match rejection {
            Rejection::CheckoutNotFound => format!("no cart has code {code}"),
            Rejection::SaleNotActive => format!("the sale of cart {code} is over"),
            other => format!("cart {code} cannot be bought: {}", other.code()),
        };
        ApiError::rejected(rejection, message)
    })?;
    Ok(HttpResponse::Ok().json(PurchaseBody::from(&view)))
}

#[derive(Serialize)]
struct SaleBody {
    id: String,
    status: &'static str,
    starts_at: String,
    ends_at: String,
    total_items: u32,
    items_sold: u32,
    items_available: u32,
    user_limit: u32,
}

impl From<&SaleView> for SaleBody {
    fn from(sale: &SaleView) -> SaleBody {
        SaleBody {
            id: sale.id.to_string(),
            status: sale.status.as_str(),
            starts_at: rfc3339(sale.starts_at),
            ends_at: rfc3339(sale.ends_at),
            total_items: sale.total_items,
            items_sold: sale.items_sold,
            items_available: sale.items_available,
            user_limit: sale.user_limit,
        }
    }
}

pub(super) async fn active_sale(state: web::Data<AppState>) -> Answer {
    Ok(HttpResponse::Ok().json(SaleBody::from(&state.service.active_sale())))
}

#[derive(Serialize)]
struct ItemBody {
    id: String,
    name: String,
    image_url: String,
    sold: bool,
}

#[derive(Serialize)]
struct ItemsBody {
    sale_id: String,
    total: u32,
    offset: u32,
    limit: u32,
    items: Vec<ItemBody>,
}

impl From<&ItemsPage> for ItemsBody {
    fn from(page: &ItemsPage) -> ItemsBody {
        let items = page
            .items
            .iter()
            .map(|item| ItemBody {
                id: item.id.to_string(),
                name: item.id.name(),
                image_url: item.id.image_url(),
                sold: item.sold,
            })
            .collect();
        ItemsBody {
            sale_id: page.sale.to_string(),
            total: page.total,
            offset: page.offset,
            limit: page.limit,
            items,
        }
    }
}

fn sale_view(state: &AppState, text: &str) -> Result<SaleView, ApiError> {
    let id = SaleId::parse(text)?;
    state
        .service
        .sale(id)
        .ok_or_else(|| ApiError::SaleNotFound(format!("sale {id} is not known")))
}

pub(super) async fn sale(state: web::Data<AppState>, id: web::Path<String>) -> Answer {
    Ok(HttpResponse::Ok().json(SaleBody::from(&sale_view(&state, &id)?)))
}

#[derive(Deserialize)]
pub(super) struct ItemsQuery {
    offset: Option<String>,
    limit: Option<String>,
    available: Option<String>,
}

fn number_parameter(
    name: &str,
    text: Option<&str>,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, ApiError> {
    let Some(text) = text else { return Ok(default) };
    match text.parse::<u32>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(ApiError::InvalidRequest(format!(
            "parameter `{name}` must be a whole number from {} to {}",
            range.start(),
            range.end()
        ))),
    }
}

pub(super) async fn sale_items(
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<ItemsQuery>,
) -> Answer {
    let offset = number_parameter(
        "offset",
        query.offset.as_deref(),
        0,
        0..=ITEMS_PAGE_OFFSET_MAX,
    )?;
    let limit = number_parameter(
        "limit",
        query.limit.as_deref(),
        ITEMS_PAGE_LIMIT_DEFAULT,
        1..=ITEMS_PAGE_LIMIT_MAX,
    )?;
    let available_only = match query.available.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::InvalidRequest(
                "parameter `available` must be true or false".into(),
            ))
        }
    };
    let sale = sale_view(&state, &id)?;
    let page = state
        .service
        .items(sale.id, offset, limit, available_only)
        .ok_or_else(|| ApiError::SaleNotFound(format!("sale {} is not known", sale.id)))?;
    Ok(HttpResponse::Ok().json(ItemsBody::from(&page)))
}

/// `/health`. Reasons are short kinds; the details (paths, system and
/// PostgreSQL error text) are in the server log only.
pub(super) async fn health(
    state: web::Data<AppState>,
    connections: web::Data<super::connections::Tracker>,
) -> HttpResponse {
    let health = state.service.health();
    let exporter = match &state.export_status {
        Some(status) => public_export_status(status()),
        None => serde_json::json!({ "state": "disabled" }),
    };
    let reason = health
        .unavailable
        .as_ref()
        .map(|error| super::error::public_reason(error).0);
    let log = &health.log;
    let mut body = serde_json::json!({
        "status": if reason.is_some() { "unavailable" } else { "ok" },
        "reason": reason,
        "log": {
            "id": log.id,
            "state": if log.failure.is_some() { "failed" } else { "ok" },
            "failure": log.failure.as_ref().map(|_| "write or fsync failed (details in the server log)"),
            "durable_seq": log.durable_seq,
            "last_seq": log.last_seq,
            "sync_mode": log.sync_mode,
        },
        "exporter": exporter,
        "connections": connections.health(),
        "active_sale": SaleBody::from(&health.active_sale),
        "snapshot": health.snapshot,
        "replication": replication_health(&health),
    });
    super::auth::add_health(&state, &mut body);
    let status = if reason.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    HttpResponse::build(status).json(body)
}

/// `/health`'s replication part: off, or this node's role.
fn replication_health(health: &crate::service::Health) -> serde_json::Value {
    match &health.replication {
        None => serde_json::json!({ "state": "off", "role": "owner" }),
        Some(gate) => serde_json::json!({
            "state": "on",
            "role": gate.role,
            "node_id": gate.node_id,
            "stream": gate.stream,
            "epoch": gate.epoch,
            "replicated_seq": gate.replicated_seq,
            "problem": gate.problem.as_ref().map(|_| "see the server log"),
        }),
    }
}

/// `/health/primary`: 200 only on the node that owns the writes and can
/// take them now (with replication off: as `/health`), for a load
/// balancer that sends writes to the owner.
pub(super) async fn health_primary(state: web::Data<AppState>) -> HttpResponse {
    let health = state.service.health();
    let body = serde_json::json!({
        "primary": health.primary,
        "replication": replication_health(&health),
    });
    let status = if health.primary {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = HttpResponse::build(status);
    if !health.primary {
        response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECONDS.to_string()));
    }
    response.json(body)
}

pub(super) async fn metrics(state: web::Data<AppState>) -> Answer {
    let sale = state.service.active_sale();
    let metrics = &state.metrics;
    metrics
        .active_sale_items_sold
        .set(i64::from(sale.items_sold));
    metrics
        .active_sale_items_total
        .set(i64::from(sale.total_items));
    let (user_keys, client_keys) = state.limits.keys();
    for (limiter, keys) in [("user", user_keys), ("client", client_keys)] {
        let keys = i64::try_from(keys).unwrap_or(i64::MAX);
        metrics.limiter_keys.with_label_values(&[limiter]).set(keys);
    }
    let text = state
        .metrics
        .render()
        .map_err(|error| ApiError::Unavailable(format!("cannot render metrics: {error}")))?;
    Ok(HttpResponse::Ok()
        .content_type(ContentType::plaintext())
        .body(text))
}

/// The exporter's status without its error text (PostgreSQL messages can
/// name hosts, users and tables); the text is in the server log.
fn public_export_status(mut status: serde_json::Value) -> serde_json::Value {
    if let Some(error) = status.get_mut("last_error") {
        if !error.is_null() {
            *error = serde_json::Value::from("see the server log");
        }
    }
    status
}
