//! `POST /report`: a charge after the work, or a refund, on every limit of
//! the rule (see `crate::limiter` `Limiter::report`). Always 200 once
//! applied, with the body and headers of `/check`: `allowed: true`,
//! `reason` `reported` or `refunded`, and the numbers of a cost-1 peek
//! afterwards (`retry_after_ms` says when a debt is paid back enough).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{read_json_body, wire, ApiError, HttpState};
use crate::limiter::Reason;

pub(super) async fn report(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = read_json_body(&headers, body, state.limits.max_body_bytes)?;
    let (request, units) = wire::parse_report(&body, state.limits.max_key_bytes)?;
    let verdict = state.ctx.limiter.report(&request, units).await?;
    // A refund frees capacity before any cached denial's retry: every
    // replica forgets its cached denials (this one forgot its own).
    if verdict.reason == Reason::Refunded && !verdict.duplicate {
        state.ctx.control.announce_reset().await;
    }
    let headers = wire::rate_limit_headers(&verdict);
    Ok((StatusCode::OK, headers, Json(wire::CheckResponse::from(&verdict))).into_response())
}
