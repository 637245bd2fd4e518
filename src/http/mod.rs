//! The HTTP API: routes, handlers and their wire format.
//!
//! Handlers are thin: parse the request into domain types ([`wire`]), call
//! the [`Limiter`], shape the answer. Every failure becomes an [`ApiError`]
//! with a JSON body; no input makes a handler panic or answer 500.
//!
//! | route | what |
//! |---|---|
//! | `POST /check` | decide a request: 200 allowed, 429 denied |
//! | `GET /health` | liveness |
//! | `GET /`, `GET /rules` | the effective rules |

pub mod error;
pub mod wire;

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

pub use error::ApiError;

use crate::control::Control;
use crate::limiter::Limiter;
use crate::stats::Outcome;
use crate::store::Store;

/// Limits the HTTP layer enforces on requests.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_key_bytes: usize,
    pub max_body_bytes: usize,
}

/// What every handler can reach.
pub struct AppState<S> {
    pub limiter: Limiter<S>,
    pub limits: HttpLimits,
    /// Where operators' overrides and lists are kept.
    pub control: Control,
    /// The rules file, for reloads; `None` when running on built-in defaults.
    pub rules_file: Option<PathBuf>,
}

/// The public API's router.
pub fn router<S: Store>(state: Arc<AppState<S>>) -> Router {
    let max_body = state.limits.max_body_bytes;
    Router::new()
        .route("/check", post(check::<S>))
        .route("/health", get(health))
        .route("/", get(rules::<S>))
        .route("/rules", get(rules::<S>))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn check<S: Store>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = read_json_body(&headers, body, state.limits.max_body_bytes)?;
    let request = wire::parse_check(&body, state.limits.max_key_bytes)?;
    let verdict = state.limiter.check(&request).await?;
    let status = match verdict.reason {
        Outcome::Allowed | Outcome::Allowlisted => StatusCode::OK,
        Outcome::Limited => {
            tracing::debug!(rule = %verdict.rule, tier = %verdict.tier, "limited");
            StatusCode::TOO_MANY_REQUESTS
        }
        Outcome::Blocked => StatusCode::FORBIDDEN,
    };
    let headers = wire::rate_limit_headers(&verdict);
    Ok((status, headers, Json(wire::CheckResponse::from(&verdict))).into_response())
}

/// The body of a JSON request: checks the content type and maps a body
/// that could not be read (too large, broken) to an error naming `body`.
pub fn read_json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    max_body_bytes: usize,
) -> Result<Bytes, ApiError> {
    require_json(headers)?;
    body.map_err(|rejection| {
        let status = rejection.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("body is larger than {max_body_bytes} bytes")
        } else {
            format!("could not read the body: {}", rejection.body_text())
        };
        ApiError::new(status, message).with_field("body")
    })
}

/// Accepts `application/json` and `application/<anything>+json`, with
/// parameters such as `charset`.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let is_json = mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        let got = if content_type.is_empty() {
            "none".to_owned()
        } else {
            format!("{content_type:?}")
        };
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type must be application/json (got {got})"),
        )
        .with_field("content-type"))
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn rules<S: Store>(State(state): State<Arc<AppState<S>>>) -> Json<wire::RulesView> {
    Json(wire::RulesView::new(&state.limiter.snapshot().rules))
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route for {method} {}; see GET /rules, POST /check, GET /health",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}
