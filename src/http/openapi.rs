//! `GET /openapi.json`: the contract as an OpenAPI 3.1 document.
//!
//! The document is `docs/openapi.json`, checked in and embedded at build
//! time: one file that API tools, client generators and reviewers read,
//! and that the server serves byte for byte. It is kept equal to what the
//! server does by `tests/e2e_openapi.rs`, which runs schemathesis against
//! the real binary with it.

use actix_web::http::header::ContentType;
use actix_web::HttpResponse;

/// The OpenAPI document, as checked in.
pub const DOCUMENT: &str = include_str!("../../docs/openapi.json");

pub(super) async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_of_this_version_and_names_every_route() {
        let document: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
        let mut paths: Vec<&str> = document["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        paths.sort_unstable();
        assert_eq!(
            paths,
            [
                "/checkout",
                "/health",
                "/health/primary",
                "/metrics",
                "/openapi.json",
                "/purchase",
                "/sales/active",
                "/sales/{id}",
                "/sales/{id}/items",
            ]
        );
    }
}
