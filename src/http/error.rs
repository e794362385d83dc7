//! The one place where failures become the contract's JSON errors.
//!
//! Every error a client can see is an `ApiError`; its `error` code and HTTP
//! status come from `ApiError::code` and `ResponseError::status_code` below,
//! nowhere else. Framework errors (bad query, unknown route, wrong method,
//! oversized body) are turned into `ApiError`s by the handlers in `mod.rs`.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::config::RETRY_AFTER_SECONDS;
use crate::domain::ParseError;
use crate::engine::Rejection;
use crate::identity::TokenError;
use crate::limits::Throttled;
use crate::replication::gate::GateError;
use crate::service::ServiceError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("no route for {0}")]
    NotFound(String),
    #[error("{0}")]
    SaleNotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("too many requests in flight; retry shortly")]
    RateLimited,
    /// Over a per-user or per-client rate (`crate::limits`).
    #[error(transparent)]
    Throttled(#[from] Throttled),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    RequestTimeout(String),
    /// Identity on, and no valid bearer token.
    #[error("{0}")]
    Unauthorized(#[from] TokenError),
    /// Identity on, and `user_id` names another user than the token.
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    Rejected {
        rejection: Rejection,
        message: String,
    },
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
}

impl ApiError {
    /// The contract's stable, machine-readable `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::SaleNotFound(_) => "sale_not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::RateLimited | ApiError::Throttled(_) => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Rejected { rejection, .. } => rejection.code(),
        }
    }

    pub fn rejected(rejection: Rejection, message: impl Into<String>) -> ApiError {
        ApiError::Rejected {
            rejection,
            message: message.into(),
        }
    }
}

impl From<ParseError> for ApiError {
    fn from(error: ParseError) -> ApiError {
        match error {
            // A well-formed id of a sale nobody holds: 404, as the contract
            // says for every well-formed id that names nothing known.
            ParseError::Unknown { name: "id" } => {
                ApiError::rejected(Rejection::ItemNotFound, error.to_string())
            }
            ParseError::Unknown { .. } => ApiError::SaleNotFound(error.to_string()),
            other => ApiError::InvalidRequest(other.to_string()),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> ApiError {
        match error {
            ServiceError::RateLimited => ApiError::RateLimited,
            // A standby refuses every write: expected, not worth a log line.
            other @ ServiceError::Replication(GateError::NotOwner { .. }) => {
                ApiError::Unavailable(public_reason(&other).1.to_string())
            }
            other => {
                // Paths and system error text stay in the server log.
                tracing::warn!(error = with_causes(&other), "write refused");
                ApiError::Unavailable(public_reason(&other).1.to_string())
            }
        }
    }
}

/// Why writes are refused, as a short kind and a sentence safe to show:
/// no file paths, no operating-system or PostgreSQL text.
pub(super) fn public_reason(error: &ServiceError) -> (&'static str, &'static str) {
    match error {
        ServiceError::RateLimited => ("rate_limited", "too many requests in flight"),
        ServiceError::ShuttingDown => ("shutting_down", "the server is shutting down"),
        ServiceError::LogFailed { .. } | ServiceError::NotDurable(_) => (
            "log_failed",
            "the log cannot make writes durable; writes are refused until a restart",
        ),
        ServiceError::Engine(_) => ("engine_failed", "the server cannot accept writes now"),
        ServiceError::Replication(GateError::NotOwner { .. }) => (
            "not_owner",
            "this node is a standby; writes go to the node that owns them (GET /health/primary)",
        ),
        ServiceError::Replication(GateError::Fenced) => (
            "fenced",
            "another node took over the writes; this node refuses writes until a restart",
        ),
        ServiceError::Replication(_) => (
            "replication_unavailable",
            "the replicated stream did not confirm the write; nothing was promised",
        ),
    }
}

/// `error` and its causes, outermost first, joined by ": ".
pub(super) fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    crate::error_chain(error)
}

fn rejection_status(rejection: Rejection) -> StatusCode {
    match rejection {
        Rejection::ItemNotFound | Rejection::CheckoutNotFound => StatusCode::NOT_FOUND,
        Rejection::SaleNotActive
        | Rejection::ItemSoldOut
        | Rejection::SaleSoldOut
        | Rejection::UserLimitReached
        | Rejection::SaleFull => StatusCode::CONFLICT,
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) | ApiError::SaleNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited | ApiError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Rejected { rejection, .. } => rejection_status(*rejection),
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::RateLimited | ApiError::Unavailable(_)) {
            response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECONDS.to_string()));
        }
        if let ApiError::Throttled(throttled) = self {
            let seconds = throttled.retry_after_seconds();
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if matches!(self, ApiError::Unauthorized(_)) {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(ErrorBody {
            error: self.code(),
            message: self.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rejection_maps_to_the_contract_status() {
        let cases = [
            (Rejection::ItemNotFound, 404),
            (Rejection::CheckoutNotFound, 404),
            (Rejection::SaleNotActive, 409),
            (Rejection::ItemSoldOut, 409),
            (Rejection::SaleSoldOut, 409),
            (Rejection::UserLimitReached, 409),
            (Rejection::SaleFull, 409),
        ];
        for (rejection, status) in cases {
            let error = ApiError::rejected(rejection, "x");
            assert_eq!(error.status_code().as_u16(), status);
            assert_eq!(error.code(), rejection.code());
        }
    }

    #[test]
    fn throttling_answers_carry_retry_after() {
        for error in [
            ApiError::RateLimited,
            ApiError::Unavailable("log failed".into()),
            ApiError::Throttled(Throttled::KeysFull {
                what: "users",
                keys_max: 1,
            }),
        ] {
            let response = error.error_response();
            assert!(response.headers().contains_key(header::RETRY_AFTER));
        }
        let response = ApiError::InvalidRequest("x".into()).error_response();
        assert!(!response.headers().contains_key(header::RETRY_AFTER));
    }

    #[test]
    fn a_refused_token_answers_401_with_www_authenticate() {
        let response = ApiError::Unauthorized(TokenError::Expired).error_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response.headers().get(header::WWW_AUTHENTICATE).unwrap();
        assert_eq!(challenge, "Bearer");
        let forbidden = ApiError::Forbidden("x".into());
        assert_eq!(forbidden.status_code(), StatusCode::FORBIDDEN);
        assert_eq!(forbidden.code(), "forbidden");
    }
}
