//! The operational routes: liveness, readiness, metrics, the effective
//! rules, and the OpenAPI document.
//!
//! The OpenAPI document is `openapi.json` beside this file, embedded at
//! build time and served as written. `tests/api/openapi.rs` checks that it
//! lists exactly the routes the routers serve, and
//! `tests/api/schemathesis.rs` runs schemathesis against the real binary
//! from it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{wire, HttpState};
use crate::limiter::FailureMode;

/// The OpenAPI document.
pub const OPENAPI: &str = include_str!("openapi.json");

pub(super) async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// 200 when the replica should receive traffic, 503 with the reason when
/// not: draining for shutdown, or the store not answering.
pub(super) async fn ready(State(state): State<Arc<HttpState>>) -> Response {
    let limiter = &state.ctx.limiter;
    let breaker = limiter.breaker_state().as_str();
    let mode = limiter.failure_mode();
    let (ready, body) = if state.ctx.is_draining() {
        (
            false,
            serde_json::json!({ "ready": false, "reason": "draining: the replica is shutting down" }),
        )
    } else {
        match limiter.ping_store().await {
            Ok(()) => (
                true,
                serde_json::json!({ "ready": true, "store": "ok", "breaker": breaker }),
            ),
            // The failure mode still decides checks: keep serving.
            Err(e) if mode != FailureMode::Closed => (
                true,
                serde_json::json!({
                    "ready": true, "store": format!("unreachable: {}", e.message),
                    "failure_mode": mode.as_str(), "breaker": breaker,
                }),
            ),
            Err(e) => (
                false,
                serde_json::json!({
                    "ready": false, "reason": format!("the store is unreachable: {}", e.message),
                    "failure_mode": mode.as_str(), "breaker": breaker,
                }),
            ),
        }
    };
    state.ctx.metrics().ready.set(i64::from(ready));
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub(super) async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    state.ctx.limiter.refresh_gauges();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.ctx.metrics().render(),
    )
        .into_response()
}

pub(super) async fn rules(State(state): State<Arc<HttpState>>) -> Json<wire::RulesView> {
    Json(wire::RulesView::new(&state.ctx.limiter.snapshot().rules))
}

pub(super) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
