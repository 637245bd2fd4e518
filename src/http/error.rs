//! [`ApiError`]: every failure of the HTTP API as a status and a JSON body
//! `{"error": "...", "field": "..."}`.
//!
//! Client errors say what to fix and name the field at fault (`field` is
//! `null` when no single field is). Server-side causes are logged here and
//! never sent to the caller.

use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::limiter::LimiterError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub field: Option<String>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    field: Option<&'a str>,
}

impl ApiError {
    /// A 400 about one field of the request.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: None,
        }
    }

    /// A 503: the store could not decide (the cause is logged, not sent).
    pub fn store_unavailable() -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the rate-limit store is unavailable")
    }

    /// The same error about a field of the part `prefix` of the request
    /// (`key` → `checks[2].key`).
    pub fn within(mut self, prefix: &str) -> ApiError {
        self.field = Some(match self.field.take() {
            Some(field) => format!("{prefix}.{field}"),
            None => prefix.to_owned(),
        });
        self
    }

    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: &self.message,
            field: self.field.as_deref(),
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<LimiterError> for ApiError {
    fn from(err: LimiterError) -> ApiError {
        match err {
            LimiterError::UnknownTier(e) => ApiError::field("tier", e.to_string()),
            e @ LimiterError::CostAboveLimit { .. } => ApiError::field("cost", e.to_string()),
            LimiterError::MissingScope { scope, rule } => ApiError::field(
                format!("scopes.{scope}"),
                LimiterError::MissingScope { scope, rule }.to_string(),
            ),
            e @ LimiterError::UnknownLimit { .. } => ApiError::field("name", e.to_string()),
            e @ LimiterError::ReportUnsupported { .. } => ApiError::field("cost", e.to_string()),
            e @ LimiterError::BadLease => ApiError::field("lease", e.to_string()),
            LimiterError::Store(e) => {
                tracing::error!(error = %e, transient = e.transient, "store failed");
                ApiError::store_unavailable()
            }
        }
    }
}

/// The fallback of every router: a JSON 404 naming where to look.
pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no route for {method} {}; see GET /rules, POST /check, GET /health",
            uri.path()
        ),
    )
}

/// A route asked with a method it does not serve.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}
