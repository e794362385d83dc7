//! Who a write acts as: with identity on, the `sub` of the request's bearer
//! token (`Authorization: Bearer TOKEN`); with it off, whoever the query
//! names.
//!
//! Promises (identity on): no write runs without a verified token (401
//! `unauthorized`, `WWW-Authenticate: Bearer`); a `user_id` in the query
//! that names another user than the token answers 403 `forbidden`; reads
//! stay public.

use actix_web::http::header;
use actix_web::HttpRequest;
use chrono::SecondsFormat;
use serde_json::{json, Map, Value};

use super::{ApiError, AppState};
use crate::domain::UserId;
use crate::identity::TokenError;

/// The token's user (identity on), or `None` (identity off).
pub(super) fn token_user(
    state: &AppState,
    request: &HttpRequest,
) -> Result<Option<UserId>, ApiError> {
    let Some(identity) = &state.identity else {
        return Ok(None);
    };
    let token = bearer_token(request)?;
    Ok(Some(identity.verify(token)?))
}

/// The user a write acts as: the token's (when `named`, it must be the
/// same), or with identity off the one `named`.
pub(super) fn acting_user(
    state: &AppState,
    request: &HttpRequest,
    named: Option<&str>,
) -> Result<UserId, ApiError> {
    match token_user(state, request)? {
        None => Ok(UserId::parse(named.unwrap_or(""))?),
        Some(user) => {
            check_named(&user, named)?;
            Ok(user)
        }
    }
}

/// With identity on, a `user_id` that is given must be the token's.
pub(super) fn check_named(user: &UserId, named: Option<&str>) -> Result<(), ApiError> {
    match named {
        Some(named) if named != user.as_str() => Err(ApiError::Forbidden(
            "user_id names another user than the bearer token".into(),
        )),
        _ => Ok(()),
    }
}

fn bearer_token(request: &HttpRequest) -> Result<&str, TokenError> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Err(TokenError::Missing);
    };
    let text = value.to_str().map_err(|_| TokenError::Malformed)?;
    let (scheme, token) = text.trim().split_once(' ').ok_or(TokenError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::Missing);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    Ok(token)
}

/// Adds `identity` ("on" or "off") to the `/health` body, and with it on
/// `identity_keys` and `identity_loaded_at`.
pub(super) fn add_health(state: &AppState, body: &mut Value) {
    let Some(fields) = body.as_object_mut() else {
        return;
    };
    let Some(identity) = &state.identity else {
        fields.insert("identity".into(), json!("off"));
        return;
    };
    let status = identity.status();
    let mut added = Map::new();
    added.insert("identity".into(), json!("on"));
    added.insert("identity_keys".into(), json!(status.keys));
    added.insert(
        "identity_loaded_at".into(),
        json!(status.loaded_at.to_rfc3339_opts(SecondsFormat::Secs, true)),
    );
    fields.extend(added);
}
