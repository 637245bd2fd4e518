//! `POST /release` and `POST /renew`: the end of a lease an allowed check
//! of a `concurrency` limit took, or its extension.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{read_json_body, wire, ApiError, HttpState};

/// Always 200 for a well-formed token: `released` says whether the lease
/// was still held (a second release, or one after expiry, is `false`).
pub(super) async fn release(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = read_json_body(&headers, body, state.limits.max_body_bytes)?;
    let lease = wire::parse_lease(&body)?;
    let released = state.ctx.limiter.release(&lease).await?;
    Ok(Json(json!({ "released": released })).into_response())
}

/// 200 with the new `lease_expires_ms`, or 404 when the lease is no longer
/// held (released, or expired: its capacity may be someone else's now).
pub(super) async fn renew(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = read_json_body(&headers, body, state.limits.max_body_bytes)?;
    let lease = wire::parse_lease(&body)?;
    match state.ctx.limiter.renew(&lease).await? {
        Some(expires_in_us) => Ok(Json(json!({
            "renewed": true,
            "lease_expires_ms": expires_in_us.div_ceil(1_000),
        }))
        .into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "the lease has expired or was released; acquire a new one with a check",
        )
        .with_field("lease")),
    }
}
