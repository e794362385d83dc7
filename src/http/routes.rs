//! How a resource answers methods: its own method, `HEAD` wherever it
//! answers `GET` (actix sends the headers without the body), and 405 with
//! an `Allow` header naming the methods for anything else.

use actix_web::{guard, web, FromRequest, Handler, HttpRequest, Resource, Responder};

use super::handlers;

/// A `GET` (and `HEAD`) resource named after its pattern; the name is the
/// `route` label of the request metrics.
pub(super) fn get<F, Args>(pattern: &'static str, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    let get_or_head = guard::Any(guard::Get()).or(guard::Head());
    web::resource(pattern)
        .name(pattern)
        .route(web::route().guard(get_or_head).to(handler))
        .default_service(web::to(|request: HttpRequest| {
            handlers::method_not_allowed(request, "GET, HEAD")
        }))
}

/// A `POST` resource named after its pattern.
pub(super) fn post<F, Args>(pattern: &'static str, handler: F) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(pattern)
        .name(pattern)
        .route(web::post().to(handler))
        .default_service(web::to(|request: HttpRequest| {
            handlers::method_not_allowed(request, "POST")
        }))
}
