//! `POST /check/batch`: several checks decided in one request, their store
//! calls in flight together.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::check::status_of;
use super::log::note_denial;
use super::{read_json_body, wire, ApiError, HttpState};
use crate::limiter::Verdict;

pub(super) async fn check_batch(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = read_json_body(&headers, body, state.limits.max_body_bytes)?;
    let requests = wire::parse_batch(&body, state.limits.max_key_bytes)?;
    let results = state
        .ctx
        .limiter
        .check_batch(&requests)
        .await
        .map_err(|(i, e)| ApiError::from(e).within(&format!("checks[{i}]")))?;
    let outcomes: Vec<Result<(StatusCode, Verdict), ApiError>> = results
        .into_iter()
        .zip(&requests)
        .enumerate()
        .map(|(i, (result, request))| match result {
            Ok(verdict) => {
                note_denial(&state.check_log, request, &verdict);
                Ok((status_of(verdict.reason, StatusCode::TOO_MANY_REQUESTS), verdict))
            }
            Err(e) => Err(ApiError::from(e).within(&format!("checks[{i}]"))),
        })
        .collect();
    // The batch answers like its first refused check, or like its tightest
    // allowed one, so a caller can copy status and headers as they are.
    let refused = outcomes.iter().find_map(|outcome| match outcome {
        Ok((status, verdict)) if *status != StatusCode::OK => Some((*status, Some(verdict))),
        Ok(_) => None,
        Err(e) => Some((e.status, None)),
    });
    let (status, shown) = match refused {
        Some(refused) => refused,
        None => (
            StatusCode::OK,
            outcomes
                .iter()
                .filter_map(|outcome| outcome.as_ref().ok().map(|(_, verdict)| verdict))
                .min_by_key(|verdict| verdict.decision.remaining),
        ),
    };
    let headers = shown.map(wire::rate_limit_headers).unwrap_or_default();
    Ok((status, headers, Json(wire::BatchResponse::new(&outcomes))).into_response())
}
