//! `POST /check`: one check, read from a JSON body.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::log::note_denial;
use super::{read_json_body, wire, ApiError, HttpState};
use crate::limiter::{CheckRequest, Reason};

pub(super) async fn check(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = read_json_body(&headers, body, state.limits.max_body_bytes)?;
    let request = wire::parse_check(&body, state.limits.max_key_bytes)?;
    answer(&state, &request, StatusCode::TOO_MANY_REQUESTS).await
}

/// Decides `request` and shapes the answer; a limited check gets `denied`.
pub(super) async fn answer(
    state: &HttpState,
    request: &CheckRequest,
    denied: StatusCode,
) -> Result<Response, ApiError> {
    let verdict = state.ctx.limiter.check(request).await?;
    let status = status_of(verdict.reason, denied);
    note_denial(&state.check_log, request, &verdict);
    let headers = wire::rate_limit_headers(&verdict);
    Ok((status, headers, Json(wire::CheckResponse::from(&verdict))).into_response())
}

/// The status of a decided check; a limited one gets `denied`.
pub(super) fn status_of(reason: Reason, denied: StatusCode) -> StatusCode {
    match reason {
        Reason::Allowed
        | Reason::Allowlisted
        | Reason::FailOpen
        | Reason::LocalAllowed
        | Reason::Peek
        | Reason::ShadowLimited
        | Reason::Reported
        | Reason::Refunded => StatusCode::OK,
        Reason::Limited | Reason::LocalLimited => denied,
        Reason::Blocked => StatusCode::FORBIDDEN,
        Reason::FailClosed => StatusCode::SERVICE_UNAVAILABLE,
    }
}
