//! Request bodies, whatever their transfer encoding. Handlers ignore
//! bodies, and actix only checks a declared `Content-Length`: a chunked
//! body was never read, so actix drained it after the answer for as long as
//! the client kept sending (50 MB got a 200; a trickle of one byte a second
//! held the connection forever). Here every body is read before the
//! handler runs, within `REQUEST_BODY_BYTES_MAX` bytes and the body
//! timeout; beyond either the answer is 413 or 408 and the connection is
//! closed.
//!
//! Closing relies on actix's rule for unread bodies: a connection whose
//! request payload is unfinished and still held when the answer goes out
//! gets `Connection: close`. So the refusal's body holds the payload until
//! the answer is written (`HoldPayload`); dropped earlier, actix would keep
//! draining a chunked body instead.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, ResponseError};
use bytes::Bytes;
use futures_util::StreamExt;

use super::ApiError;
use crate::config::REQUEST_BODY_BYTES_MAX;

/// The body timeout in force, given to the middleware as app data.
#[derive(Debug, Clone, Copy)]
pub struct BodyReadTimeout(pub Duration);

/// Reads and discards the request body within the limits, then calls the
/// handler; refuses the request otherwise.
pub async fn read_whole_body(
    mut request: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let timeout = request
        .app_data::<web::Data<BodyReadTimeout>>()
        .map_or(crate::config::REQUEST_BODY_READ_TIMEOUT, |t| t.0);
    let mut payload = request.take_payload();
    if matches!(payload, Payload::None) {
        // No body at all (most requests): no timer to arm, nothing to read.
        return next.call(request).await;
    }
    let refusal = match tokio::time::timeout(timeout, discard(&mut payload)).await {
        Ok(Ok(())) => return next.call(request).await,
        Ok(Err(refusal)) => refusal,
        Err(_elapsed) => ApiError::RequestTimeout(format!(
            "the request body did not arrive within {} ms",
            timeout.as_millis()
        )),
    };
    let mut response = refusal.error_response();
    // Closed even when the whole body did arrive: a client that sends too
    // much or too slowly gets no second request on this connection.
    response
        .head_mut()
        .set_connection_type(ConnectionType::Close);
    let response = response.map_body(|_, body| {
        BoxBody::new(HoldPayload {
            body,
            _payload: payload,
        })
    });
    Ok(request.into_response(response))
}

async fn discard(payload: &mut Payload) -> Result<(), ApiError> {
    let mut received_bytes = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ApiError::InvalidRequest("malformed request body".into()))?;
        received_bytes = received_bytes.saturating_add(chunk.len());
        if received_bytes > REQUEST_BODY_BYTES_MAX {
            return Err(ApiError::PayloadTooLarge(REQUEST_BODY_BYTES_MAX));
        }
    }
    Ok(())
}

/// A response body that keeps the unfinished request payload alive until
/// the response is written, so that actix closes the connection.
struct HoldPayload {
    body: BoxBody,
    _payload: Payload,
}

impl MessageBody for HoldPayload {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}
