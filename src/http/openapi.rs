//! `GET /openapi.json`: the API described as OpenAPI 3.0.3.
//!
//! The document is `openapi.json` beside this file, embedded at build time
//! and served as written. `tests/api/openapi.rs` checks that it lists
//! exactly the routes the routers serve, and `tests/api/schemathesis.rs`
//! runs schemathesis against the real binary from it.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The OpenAPI document.
pub const DOCUMENT: &str = include_str!("openapi.json");

pub async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT).into_response()
}
