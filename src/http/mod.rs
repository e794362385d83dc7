//! The HTTP face of the service: the route table, the middleware every
//! request passes (request id, size limit, metrics), and the server's
//! connection limits and timeouts.
//!
//! Handlers (`handlers.rs`) are thin: parse parameters into domain types,
//! call the service or the engine, render JSON. Every error a client can see
//! goes through `error::ApiError`.

mod assemble;
mod auth;
mod body;
pub mod client_errors;
mod connections;
mod error;
mod handlers;
mod limits;
mod open_files;
mod openapi;
mod routes;
mod stream;

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Condition, Next};
use actix_web::{web, App, ResponseError};

pub use error::ApiError;

use crate::config::{QUERY_BYTES_MAX, REQUEST_BODY_BYTES_MAX};
use crate::identity::Identity;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::service::Service;

/// Reports the exporter's state for `/health` (the HTTP layer knows nothing
/// of PostgreSQL).
pub type ExportStatusFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// What every handler can reach.
pub struct AppState {
    pub service: Arc<Service>,
    pub metrics: Arc<Metrics>,
    pub export_status: Option<ExportStatusFn>,
    /// Identity (signed user tokens); `None`: off.
    pub identity: Option<Arc<Identity>>,
    request_ids: RequestIds,
    /// Per-user and per-client rate limits (`crate::limits`); off unless
    /// `with_limits` sets them.
    pub limits: Arc<Limits>,
}

impl AppState {
    pub fn new(
        service: Arc<Service>,
        metrics: Arc<Metrics>,
        export_status: Option<ExportStatusFn>,
    ) -> AppState {
        AppState {
            service,
            metrics,
            export_status,
            identity: None,
            request_ids: RequestIds::new(),
            limits: Arc::new(Limits::off()),
        }
    }

    pub fn with_limits(mut self, limits: Arc<Limits>) -> AppState {
        self.limits = limits;
        self
    }

    /// The same state with identity `identity` (`None`: off).
    pub fn with_identity(self, identity: Option<Arc<Identity>>) -> AppState {
        AppState { identity, ..self }
    }
}

/// The whole route table. Each resource is named after its pattern: the
/// name is the `route` label of the request metrics (no allocation per
/// request, and unmatched paths share one label).
fn routes(config: &mut web::ServiceConfig) {
    use handlers::*;
    use routes::{get, post};
    config
        .service(post("/checkout", checkout))
        .service(post("/purchase", purchase))
        .service(get("/sales/active", active_sale))
        .service(get("/sales/{id}", sale))
        .service(get("/sales/{id}/items", sale_items))
        .service(get("/health", health))
        .service(get("/health/primary", health_primary))
        .service(get("/metrics", metrics))
        .service(get("/openapi.json", openapi::document));
}

/// Binds `listener` and returns the server, not yet awaited. Signals are
/// the caller's job (see `server.rs`): it decides when to stop.
pub fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    workers: usize,
) -> std::io::Result<Server> {
    let slow = assemble::SlowClients::start(&state.metrics.registry, workers)?;
    let (tracker, timeouts) = (slow.tracker.clone(), slow.timeouts);
    let body_timeout = web::Data::new(body::BodyReadTimeout(timeouts.request_body));
    // With the per-client limit off, the middleware is not even in the
    // chain (it showed as 1% of a checkout's CPU in a profile).
    let limits_clients = state.limits.limits_clients();
    let state = web::Data::from(state);
    assemble::server(
        listener,
        workers,
        slow.tracker,
        timeouts,
        slow.per_worker,
        move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::Data::from(tracker.clone()))
                .app_data(body_timeout.clone())
                .app_data(handlers::query_config())
                .app_data(handlers::path_config())
                .configure(routes)
                .default_service(web::to(handlers::not_found))
                .wrap(from_fn(body::read_whole_body))
                .wrap(Condition::new(
                    limits_clients,
                    from_fn(limits::limit_clients),
                ))
                .wrap(from_fn(observe))
        },
    )
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest client-supplied request id we echo; longer ones are replaced.
const REQUEST_ID_LENGTH_MAX: usize = 128;

/// Request ids for requests that bring none: a random per-process prefix and
/// a counter, unique without a random number per request.
struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> RequestIds {
        let mut bytes = [0u8; 8];
        // Uniqueness across restarts is nice to have, not a promise: a
        // failed random source falls back to the clock.
        let prefix = match getrandom::fill(&mut bytes) {
            Ok(()) => u64::from_le_bytes(bytes),
            Err(_) => chrono::Utc::now().timestamp_micros() as u64,
        };
        RequestIds {
            prefix,
            next: AtomicU64::new(1),
        }
    }

    fn take(&self, request: &ServiceRequest) -> HeaderValue {
        let given = request.headers().get(&REQUEST_ID).filter(|value| {
            let bytes = value.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= REQUEST_ID_LENGTH_MAX
                && bytes.iter().all(|b| b.is_ascii_graphic())
        });
        if let Some(value) = given {
            return value.clone();
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let text = format!("{:016x}-{n}", self.prefix);
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("unknown"))
    }
}

/// Every request: size limits, a request id echoed in the response, a
/// metrics sample and a debug log line.
async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let Some(state) = request.app_data::<web::Data<AppState>>().cloned() else {
        return Err(actix_web::error::ErrorInternalServerError(
            "application state missing",
        ));
    };
    let request_id = state.request_ids.take(&request);

    let mut response = match refuse_oversized(&request) {
        Some(error) => request
            .into_response(error.error_response())
            .map_into_boxed_body(),
        None => next.call(request).await?.map_into_boxed_body(),
    };

    let status = response.status();
    let request = response.request();
    let route = request.match_name().unwrap_or("unmatched");
    observe_metrics(&state, route, status, started.elapsed());
    if status.is_server_error() {
        let id = request_id.to_str().unwrap_or("");
        let (method, path) = (request.method(), request.path());
        tracing::warn!(request_id = id, %method, path, status = status.as_u16(), "request failed");
    } else if tracing::enabled!(tracing::Level::DEBUG) {
        let id = request_id.to_str().unwrap_or("");
        let (method, path) = (request.method(), request.path());
        let latency_us = started.elapsed().as_micros() as u64;
        tracing::debug!(request_id = id, %method, path, status = status.as_u16(), latency_us, "request");
    }
    response
        .headers_mut()
        .insert(REQUEST_ID.clone(), request_id);
    Ok(response)
}

fn observe_metrics(state: &AppState, route: &str, status: StatusCode, elapsed: Duration) {
    let metrics = &state.metrics;
    metrics
        .http_request_duration_seconds
        .with_label_values(&[route])
        .observe(elapsed.as_secs_f64());
    metrics
        .http_requests_total
        .with_label_values(&[route, status.as_str()])
        .inc();
}

fn refuse_oversized(request: &ServiceRequest) -> Option<ApiError> {
    if request.query_string().len() > QUERY_BYTES_MAX {
        return Some(ApiError::InvalidRequest(format!(
            "query string is longer than {QUERY_BYTES_MAX} bytes"
        )));
    }
    let declared_length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    match declared_length {
        Some(length) if length > REQUEST_BODY_BYTES_MAX as u64 => {
            Some(ApiError::PayloadTooLarge(REQUEST_BODY_BYTES_MAX))
        }
        _ => None,
    }
}
