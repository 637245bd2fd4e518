//! Bearer-token authentication of `/admin`.
//!
//! `Authorization: Bearer <token>` is compared with the configured token in
//! constant time (only the length can be learnt from timing). No header →
//! 401 with `WWW-Authenticate`; a wrong token → 403. The token is never
//! logged: [`crate::settings::Secret`] prints as `***`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::http::ApiError;
use crate::settings::Secret;

pub async fn require_token(State(token): State<Arc<Secret>>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    match presented {
        None => {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the admin API needs an Authorization: Bearer <token> header",
            )
            .with_field("authorization")
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ratelimiter-admin\""),
            );
            response
        }
        Some(presented) if bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes())) => next.run(request).await,
        Some(_) => {
            tracing::warn!("admin request with a wrong token");
            ApiError::new(StatusCode::FORBIDDEN, "the admin token is not valid")
                .with_field("authorization")
                .into_response()
        }
    }
}
