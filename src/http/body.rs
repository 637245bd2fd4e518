//! Reading a JSON request body: the content type is checked, and a body
//! that could not be read (too large, broken) is an error naming `body`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, StatusCode};

use super::ApiError;

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
