//! Where the HTTP layer applies `crate::limits`: a middleware counts every
//! request against its client address, and the write handlers count
//! checkouts and purchases against their user.
//!
//! A purchase's user is the owner of the cart its code names in the active
//! sale (one lock of the owner's stripe, no record); a code that names no
//! cart there (a past sale's, or a forged one) has no user to count, and
//! such purchases are limited per client address only. Because the code's
//! 96 secret bits must match, nobody can spend another user's budget with
//! purchases (with checkouts they can, as long as `user_id` is a bare
//! parameter: signed tokens close that).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};

use super::{ApiError, AppState};
use crate::domain::PurchaseCode;

/// Counts the request against its client address; over the rate, answers
/// 429 without calling the route.
pub(super) async fn limit_clients(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let refused = request
        .app_data::<web::Data<AppState>>()
        .filter(|state| state.limits.limits_clients())
        .and_then(|state| {
            let peer = request.peer_addr()?.ip();
            let address = state.limits.client_address(peer, request.headers());
            state.limits.check_client(address).err()
        });
    match refused {
        Some(throttled) => {
            let response = ApiError::from(throttled).error_response();
            Ok(request.into_response(response).map_into_boxed_body())
        }
        None => Ok(next.call(request).await?.map_into_boxed_body()),
    }
}

/// Counts a purchase against the owner of the cart `code` names, if the
/// active sale has one.
pub(super) fn check_purchase_owner(state: &AppState, code: &PurchaseCode) -> Result<(), ApiError> {
    if !state.limits.limits_users() {
        return Ok(());
    }
    match state.service.purchase_owner(code) {
        Some(owner) => Ok(state.limits.check_user(&owner)?),
        None => Ok(()),
    }
}
