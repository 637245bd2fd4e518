//! The operational routes: liveness, readiness, metrics, the effective
//! rules (and their view, [`RulesView`], which the admin API shows too),
//! and the OpenAPI document.
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

use serde::Serialize;

use super::HttpState;
use crate::limiter::rules::RuleSet;
use crate::limiter::FailureMode;
use crate::settings::format_duration;

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

pub(super) async fn rules(State(state): State<Arc<HttpState>>) -> Json<RulesView> {
    Json(RulesView::new(&state.ctx.limiter.snapshot().rules))
}

pub(super) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// `GET /rules`: the effective rule table.
#[derive(Debug, Serialize)]
pub struct RulesView {
    pub service: &'static str,
    pub version: &'static str,
    pub default_rule: &'static str,
    pub default_tier: String,
    pub tiers: Vec<String>,
    pub rules: Vec<RuleView>,
}

#[derive(Debug, Serialize)]
pub struct RuleView {
    pub rule: String,
    /// The endpoint the rule matches; `null` for the default rule.
    pub endpoint: Option<String>,
    /// Evaluated, not enforced (as configured).
    pub shadow: bool,
    /// Per tier; for a rule with several limits, its first limit's.
    pub limits: Vec<LimitView>,
    /// A rule with several limits: each of them, per tier.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub named_limits: Vec<NamedLimitView>,
    /// A rule with several limits: what its counters share a slot by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct NamedLimitView {
    pub name: String,
    pub by: String,
    pub tiers: Vec<LimitView>,
}

#[derive(Debug, Serialize)]
pub struct LimitView {
    pub tier: String,
    pub algorithm: &'static str,
    pub limit: u64,
    pub window: String,
    pub window_ms: u64,
}

impl LimitView {
    fn new(tier: &str, policy: &crate::core::Policy) -> LimitView {
        LimitView {
            tier: tier.to_owned(),
            algorithm: policy.algorithm().as_str(),
            limit: policy.limit(),
            window: format_duration(policy.quota().window()),
            window_ms: policy.quota().window_ms(),
        }
    }
}

impl RulesView {
    pub fn new(rules: &RuleSet) -> RulesView {
        RulesView {
            service: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
            default_rule: crate::limiter::rules::DEFAULT_RULE,
            default_tier: rules.default_tier().to_string(),
            tiers: rules.tiers().iter().map(ToString::to_string).collect(),
            rules: rules
                .rules()
                .map(|rule| RuleView {
                    rule: rule.name().to_string(),
                    endpoint: (rule.name().as_ref() != crate::limiter::rules::DEFAULT_RULE)
                        .then(|| rule.name().to_string()),
                    shadow: rule.shadow(),
                    limits: rule
                        .policies()
                        .map(|(tier, policy)| LimitView::new(tier, policy))
                        .collect(),
                    named_limits: rule
                        .limits()
                        .iter()
                        .map(|limit| NamedLimitView {
                            name: limit.name().to_string(),
                            by: limit.by().as_str().to_owned(),
                            tiers: rules
                                .tiers()
                                .iter()
                                .enumerate()
                                .map(|(i, tier)| LimitView::new(tier, limit.policy(i)))
                                .collect(),
                        })
                        .collect(),
                    partition: (!rule.limits().is_empty()).then(|| rule.partition().as_str().to_owned()),
                })
                .collect(),
        }
    }
}
