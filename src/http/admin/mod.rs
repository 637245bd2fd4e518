//! The operators' API under `/admin`, behind a bearer token.
//!
//! | route | what |
//! |---|---|
//! | `GET /admin/rules` | effective rules and the overrides in force |
//! | `GET/PUT/DELETE /admin/overrides` | run-time limits for a rule × tier, a rule, or a key |
//! | `GET/PUT/DELETE /admin/lists/{allow,block}` | allow and block lists (keys, IPs, CIDR ranges) |
//! | `GET/DELETE /admin/keys` | inspect a key's state without consuming; reset it |
//! | `GET /admin/stats` | decisions per rule and tier, most-limited keys |
//! | `POST /admin/reload` | re-read the rules file now |
//!
//! Handlers validate exactly as the configuration is validated, write to the
//! [`Control`](crate::store::control::Control) store (shared with every replica when
//! it is Redis), then rebuild this replica's snapshot at once; other replicas
//! follow on the change notification.

pub mod auth;
pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, Query as QueryParams, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value};

use self::wire::{Body, Query};
use crate::core::Cost;
use crate::http::ops::RulesView;
use crate::http::{read_json_body, ApiError, HttpState};
use crate::limiter::access::ListEntry;
use crate::limiter::hashing::credential_key;
use crate::limiter::rules::By;
use crate::limiter::{CheckRequest, Key};
use crate::settings::{format_duration, Secret};
use crate::store::records::{ListKind, ListRecord, OverrideRecord};

type Shared = State<Arc<HttpState>>;
type Reply = Result<Json<Value>, ApiError>;

/// The admin router, every route behind `token`.
pub fn router(state: Arc<HttpState>, token: Secret) -> Router {
    let max_body = state.limits.max_body_bytes;
    let router = Router::new()
        .route("/admin/rules", get(rules))
        .route(
            "/admin/overrides",
            get(list_overrides).put(put_override).delete(delete_override),
        )
        .route(
            "/admin/lists/{list}",
            get(list_entries).put(put_entry).delete(delete_entry),
        )
        .route("/admin/keys", get(inspect_key).delete(reset_key))
        .route("/admin/stats", get(stats))
        .route("/admin/reload", post(reload))
        .method_not_allowed_fallback(crate::http::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(from_fn_with_state(Arc::new(token), auth::require_token))
        .with_state(state);
    crate::http::with_request_ids(router)
}

/// The admin router on a listener of its own, where unknown paths answer a
/// JSON 404 as well (merged into the public router, its fallback does).
pub fn standalone_router(state: Arc<HttpState>, token: Secret) -> Router {
    router(state, token).fallback(|uri: Uri| async move {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no admin route {}; the admin API is under /admin", uri.path()),
        )
    })
}

/// Counts an admin change in the metrics.
fn changed(state: &HttpState, action: &str) {
    state.ctx.metrics().admin_changes.with_label_values(&[action]).inc();
}

/// Milliseconds since the epoch on the limiter's clock (the one expiries
/// are checked against).
fn now_ms(state: &HttpState) -> u64 {
    state.ctx.limiter.now().as_micros() / 1000
}

fn expiry(state: &HttpState, expires_in: Option<Duration>) -> Option<u64> {
    expires_in.map(|d| now_ms(state).saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
}

/// Re-reads the control store into this replica's snapshot.
async fn refresh(state: &HttpState) -> Result<(), ApiError> {
    for dangling in state.ctx.reload_control().await.map_err(store_unavailable)? {
        tracing::warn!(?dangling, "an admin entry no longer fits the rules and is ignored");
    }
    Ok(())
}

fn store_unavailable(e: crate::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "admin store failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the admin store is unavailable; nothing was changed",
    )
}

async fn rules(State(state): Shared) -> Reply {
    let snapshot = state.ctx.limiter.snapshot();
    let control = state.ctx.control.load().await.map_err(store_unavailable)?;
    let now = state.ctx.limiter.now();
    let overrides: Vec<Value> = control.overrides.values().map(|r| override_json(r, now)).collect();
    Ok(Json(json!({
        "rules": RulesView::new(&snapshot.rules),
        "overrides": overrides,
    })))
}

fn override_json(record: &OverrideRecord, now: crate::core::Timestamp) -> Value {
    let mut value = serde_json::to_value(record).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("id".into(), Value::String(record.target().id()));
        map.insert("active".into(), Value::Bool(record.is_live(now)));
    }
    value
}

async fn list_overrides(State(state): Shared) -> Reply {
    let control = state.ctx.control.load().await.map_err(store_unavailable)?;
    let now = state.ctx.limiter.now();
    let overrides: Vec<Value> = control.overrides.values().map(|r| override_json(r, now)).collect();
    Ok(Json(
        json!({ "overrides": overrides, "shared": state.ctx.control.is_shared() }),
    ))
}

const OVERRIDE_FIELDS: &str = "endpoint, tier, key, algorithm, limit, window, shadow, expires_in";

async fn put_override(State(state): Shared, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Reply {
    let bytes = read_json_body(&headers, body, state.limits.max_body_bytes)?;
    let mut body = Body::parse(&bytes)?;
    let record = OverrideRecord {
        endpoint: body.string("endpoint")?,
        tier: body.string("tier")?,
        key: kept(&state, body.string("key")?),
        algorithm: body.string("algorithm")?,
        limit: body.integer("limit")?,
        window: body.string("window")?,
        shadow: body.boolean("shadow")?,
        expires_at_ms: expiry(&state, body.duration("expires_in")?),
        created_at_ms: now_ms(&state),
    };
    body.finish(OVERRIDE_FIELDS)?;
    let snapshot = state.ctx.limiter.snapshot();
    record
        .resolve(&snapshot.rules, state.ctx.limiter.max_key_bytes())
        .map_err(|e| ApiError::field(e.field, e.message))?;
    let id = record.target().id();
    let existed = state
        .ctx
        .control
        .load()
        .await
        .map_err(store_unavailable)?
        .overrides
        .contains_key(&id);
    state
        .ctx
        .control
        .put_override(&id, &record)
        .await
        .map_err(store_unavailable)?;
    refresh(&state).await?;
    changed(&state, "override_set");
    tracing::info!(id, ?record, replaced = existed, "admin: override set");
    Ok(Json(
        json!({ "override": override_json(&record, state.ctx.limiter.now()), "replaced": existed }),
    ))
}

/// An operator's key as the limiter keeps keys (a credential header's
/// value as its SHA-256, then hashed when `[keys] hash` is on), so that
/// overrides and list entries match the requests' keys.
fn kept_key(state: &HttpState, key: &str) -> String {
    let key = credential_key(key, &state.forward.hash_headers);
    state.ctx.limiter.kept_key(&key)
}

fn kept(state: &HttpState, key: Option<String>) -> Option<String> {
    key.map(|key| kept_key(state, &key))
}

/// A list entry as kept: a key hashed like the requests' keys; an address
/// or range as it is (`client_ip` is never hashed).
fn kept_entry(state: &HttpState, entry: ListEntry) -> String {
    match entry {
        ListEntry::Key(key) => kept_key(state, &key),
        net => net.to_string(),
    }
}

async fn delete_override(State(state): Shared, QueryParams(params): QueryParams<HashMap<String, String>>) -> Reply {
    let mut query = Query::new(params);
    let probe = OverrideRecord {
        endpoint: query.optional("endpoint"),
        tier: query.optional("tier"),
        key: kept(&state, query.optional("key")),
        algorithm: None,
        limit: None,
        window: None,
        shadow: None,
        expires_at_ms: None,
        created_at_ms: 0,
    };
    query.finish("endpoint, tier, key")?;
    let id = probe.target().id();
    if !state
        .ctx
        .control
        .delete_override(&id)
        .await
        .map_err(store_unavailable)?
    {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no override {id}")));
    }
    refresh(&state).await?;
    changed(&state, "override_deleted");
    tracing::info!(id, "admin: override deleted");
    Ok(Json(json!({ "deleted": id })))
}

/// The list named in the path; one that is not valid UTF-8 is no list either.
fn list_kind(name: Result<Path<String>, PathRejection>) -> Result<ListKind, ApiError> {
    let name = name.map_or_else(|_| String::from("\u{fffd}"), |Path(name)| name);
    match name.as_str() {
        "allow" => Ok(ListKind::Allow),
        "block" => Ok(ListKind::Block),
        other => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no list {other:?}; the lists are allow and block"),
        )),
    }
}

#[derive(Serialize)]
struct EntryView<'a> {
    #[serde(flatten)]
    record: &'a ListRecord,
    active: bool,
}

async fn list_entries(State(state): Shared, list: Result<Path<String>, PathRejection>) -> Reply {
    let kind = list_kind(list)?;
    let control = state.ctx.control.load().await.map_err(store_unavailable)?;
    let now_ms = now_ms(&state);
    let entries: Vec<EntryView<'_>> = control
        .list(kind)
        .values()
        .map(|record| EntryView {
            record,
            active: record.expires_at_ms.is_none_or(|at| at > now_ms),
        })
        .collect();
    Ok(Json(
        json!({ "list": kind.as_str(), "entries": entries, "shared": state.ctx.control.is_shared() }),
    ))
}

async fn put_entry(
    State(state): Shared,
    list: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let kind = list_kind(list)?;
    let bytes = read_json_body(&headers, body, state.limits.max_body_bytes)?;
    let mut body = Body::parse(&bytes)?;
    let entry = body
        .string("entry")?
        .ok_or_else(|| ApiError::field("entry", "entry is required: a key, an IP address or a CIDR range"))?;
    let expires_at_ms = expiry(&state, body.duration("expires_in")?);
    let comment = body.string("comment")?;
    body.finish("entry, expires_in, comment")?;
    if comment.as_ref().is_some_and(|c| c.len() > 1024) {
        return Err(ApiError::field("comment", "comment must be at most 1024 bytes"));
    }
    let parsed = ListEntry::parse(&entry, state.ctx.limiter.max_key_bytes())
        .map_err(|e| ApiError::field("entry", e.to_string()))?;
    let record = ListRecord {
        entry: kept_entry(&state, parsed),
        expires_at_ms,
        comment,
        created_at_ms: now_ms(&state),
    };
    state
        .ctx
        .control
        .put_list(kind, &record)
        .await
        .map_err(store_unavailable)?;
    refresh(&state).await?;
    changed(&state, "list_entry_set");
    tracing::info!(list = kind.as_str(), entry = %record.entry, expires_at_ms, "admin: list entry set");
    Ok(Json(json!({ "list": kind.as_str(), "entry": record })))
}

async fn delete_entry(
    State(state): Shared,
    list: Result<Path<String>, PathRejection>,
    QueryParams(params): QueryParams<HashMap<String, String>>,
) -> Reply {
    let kind = list_kind(list)?;
    let mut query = Query::new(params);
    let entry = query.required("entry")?;
    query.finish("entry")?;
    // Accept any spelling of the entry (e.g. an uncompressed IPv6 address).
    let canonical = ListEntry::parse(&entry, state.ctx.limiter.max_key_bytes())
        .map(|e| kept_entry(&state, e))
        .unwrap_or(entry);
    if !state
        .ctx
        .control
        .delete_list(kind, &canonical)
        .await
        .map_err(store_unavailable)?
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{canonical:?} is not on the {} list", kind.as_str()),
        ));
    }
    refresh(&state).await?;
    changed(&state, "list_entry_removed");
    tracing::info!(list = kind.as_str(), entry = %canonical, "admin: list entry removed");
    Ok(Json(json!({ "list": kind.as_str(), "deleted": canonical })))
}

fn key_param(query: &mut Query, max_key_bytes: usize) -> Result<Key, ApiError> {
    let key = query.required("key")?;
    Key::parse(key, max_key_bytes).map_err(|e| ApiError::field("key", e.to_string()))
}

/// The key, rule and scopes of `/admin/keys`, as a check names them.
fn key_request(
    query: &mut Query,
    max_key_bytes: usize,
    tier: bool,
    credentials: &[String],
) -> Result<CheckRequest, ApiError> {
    let key = key_param(query, max_key_bytes)?;
    let key = Key::parse(credential_key(key.as_str(), credentials), usize::MAX).unwrap_or(key);
    let mut request = CheckRequest::new(key, Cost::ONE);
    request.endpoint = query.optional("endpoint");
    if tier {
        request.tier = query.optional("tier");
    }
    request.scopes = query.scopes(max_key_bytes)?;
    Ok(request)
}

async fn inspect_key(State(state): Shared, QueryParams(params): QueryParams<HashMap<String, String>>) -> Reply {
    let mut query = Query::new(params);
    let request = key_request(
        &mut query,
        state.ctx.limiter.max_key_bytes(),
        true,
        &state.forward.hash_headers,
    )?;
    query.finish("key, endpoint, tier, scopes.<name>")?;
    let v = state.ctx.limiter.inspect(&request).await?;
    let mut body = json!({
        "key": request.key.as_str(),
        "rule": v.rule.as_ref(),
        "tier": v.tier.as_ref(),
        "algorithm": v.policy.algorithm().as_str(),
        "limit": v.decision.limit,
        "window": format_duration(v.policy.quota().window()),
        "remaining": v.decision.remaining,
        "reset_after_ms": v.decision.reset_after_us.div_ceil(1000),
        "overridden": !matches!(v.source, crate::limiter::overrides::PolicySource::Config),
    });
    if let Some(name) = &v.limit_name {
        body["limit_name"] = json!(name.as_ref());
        body["retry_after_ms"] = json!(v.decision.retry_after_us.div_ceil(1000));
        let limits: Vec<Value> = v
            .limits
            .iter()
            .map(|limit| {
                json!({
                    "name": limit.name.as_ref(),
                    "by": limit.by.as_str(),
                    "value": match &limit.by {
                        By::Key => request.key.as_str(),
                        By::Scope(scope) => request.scope(scope).unwrap_or_default(),
                    },
                    "algorithm": limit.policy.algorithm().as_str(),
                    "limit": limit.decision.limit,
                    "window": format_duration(limit.policy.quota().window()),
                    "remaining": limit.decision.remaining,
                    "reset_after_ms": limit.decision.reset_after_us.div_ceil(1000),
                    "retry_after_ms": limit.decision.retry_after_us.div_ceil(1000),
                })
            })
            .collect();
        body["limits"] = Value::Array(limits);
    }
    Ok(Json(body))
}

async fn reset_key(State(state): Shared, QueryParams(params): QueryParams<HashMap<String, String>>) -> Reply {
    let mut query = Query::new(params);
    let request = key_request(
        &mut query,
        state.ctx.limiter.max_key_bytes(),
        false,
        &state.forward.hash_headers,
    )?;
    let name = query.optional("name");
    query.finish("key, endpoint, name, scopes.<name>")?;
    let (rule, limits) = state.ctx.limiter.reset(&request, name.as_deref()).await?;
    state.ctx.control.announce_reset().await;
    changed(&state, "key_reset");
    let names: Vec<&str> = limits.iter().map(|name| name.as_ref()).collect();
    tracing::info!(rule = %rule, limits = ?names, "admin: key reset");
    Ok(Json(
        json!({ "reset": request.key.as_str(), "rule": rule.as_ref(), "limits": names }),
    ))
}

async fn stats(State(state): Shared, QueryParams(params): QueryParams<HashMap<String, String>>) -> Reply {
    let mut query = Query::new(params);
    let limit = match query.optional("limit") {
        None => 20,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| ApiError::field("limit", "limit must be a whole number from 1 to 10000"))?,
    };
    query.finish("limit")?;
    let view = state.ctx.limiter.stats().view(limit);
    Ok(Json(serde_json::to_value(view).unwrap_or(Value::Null)))
}

async fn reload(State(state): Shared) -> Reply {
    match crate::reload::reload_rules(&state.ctx) {
        Ok(report) => Ok(Json(serde_json::to_value(report).unwrap_or(Value::Null))),
        Err(e) => Err(ApiError::new(e.status(), e.to_string()).with_field("rules")),
    }
}
