//! `GET /check/forward`: the decision API for gateways' forward-auth
//! (nginx `auth_request`, Traefik `ForwardAuth`, Envoy `ext_authz` over
//! HTTP), which can only pass the original request's headers.
//!
//! The caller's key comes from the first configured identity header present
//! (`forward.key_headers`: an API key, the `sub` claim of a bearer JWT, an
//! org id, the client address from `X-Forwarded-For`), prefixed with the
//! header's name so different kinds of identity never share a counter. The
//! endpoint is `"<METHOD> <path>"` from the original method and URI
//! headers, matching rules written as `endpoint = "GET /api/data"`. The
//! answer is the `/check` answer: 2xx to let the request through, 429/403/503
//! otherwise, with the rate-limit headers for the gateway to copy. nginx's
//! `auth_request` only understands 2xx, 401 and 403, so a `denied_status`
//! query parameter (401 or 403) changes the status of a limited answer.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use base64::Engine;

use super::check::answer;
use super::{ApiError, HttpState};
use crate::core::Cost;
use crate::limiter::hashing::credential_key;
use crate::limiter::{CheckRequest, Key, Protocol};
use crate::settings::ForwardSettings;

pub(super) async fn check_forwarded(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let denied = denied_status(uri.query())?;
    let request = parse_forwarded(&headers, &state.forward, state.limits.max_key_bytes)?;
    answer(&state, &request, denied).await
}

/// The scopes `forward.scope_headers` reads: each header present and not
/// empty gives its scope, a value like a key (errors name `scopes.<name>`).
fn forwarded_scopes(
    headers: &HeaderMap,
    settings: &ForwardSettings,
    max_key_bytes: usize,
) -> Result<Vec<(String, Key)>, ApiError> {
    let mut scopes = Vec::new();
    for (scope, header) in &settings.scope_headers {
        let Some(value) = headers
            .get(header.as_str())
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
        else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        let key = Key::parse(value.to_owned(), max_key_bytes)
            .map_err(|e| ApiError::field(format!("scopes.{scope}"), format!("{header}: {e}")))?;
        scopes.push((scope.clone(), key));
    }
    Ok(scopes)
}

/// The check a forwarded request stands for.
pub fn parse_forwarded(
    headers: &HeaderMap,
    settings: &ForwardSettings,
    max_key_bytes: usize,
) -> Result<CheckRequest, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let client_ip = header("x-forwarded-for").and_then(first_address);
    let key = settings
        .key_headers
        .iter()
        .find_map(|name| identity(name, header(name)?))
        .map(|key| credential_key(&key, &settings.hash_headers))
        .ok_or_else(|| {
            ApiError::field(
                "key",
                format!(
                    "no identity header present; expected one of {}",
                    settings.key_headers.join(", ")
                ),
            )
        })?;
    let key = Key::parse(key, max_key_bytes).map_err(|e| ApiError::field("key", e.to_string()))?;
    let method = settings.method_headers.iter().find_map(|h| header(h));
    let uri = settings.uri_headers.iter().find_map(|h| header(h));
    let endpoint = match (method, uri) {
        (Some(method), Some(uri)) => {
            let path = uri.split(['?', '#']).next().unwrap_or(uri);
            Some(format!("{} {path}", method.to_ascii_uppercase()))
        }
        _ => None,
    };
    Ok(CheckRequest {
        key,
        endpoint,
        tier: header(&settings.tier_header)
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
        cost: Cost::ONE,
        peek: false,
        id: None,
        protocol: Protocol::Http,
        client_ip,
        scopes: forwarded_scopes(headers, settings, max_key_bytes)?,
    })
}

/// The key an identity header gives, prefixed with what it is.
fn identity(name: &str, value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    match name {
        "authorization" => jwt_subject(value).map(|sub| format!("sub:{sub}")),
        "x-forwarded-for" => first_address(value).map(|ip| format!("ip:{ip}")),
        other => Some(format!("{other}:{value}")),
    }
}

/// The first (client) address of an `X-Forwarded-For` list.
fn first_address(value: &str) -> Option<IpAddr> {
    value.split(',').next()?.trim().parse().ok()
}

/// The `sub` claim of a `Bearer` JWT. The signature is not verified: the
/// gateway authenticates; this only names the caller for limiting.
fn jwt_subject(value: &str) -> Option<String> {
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    match &claims["sub"] {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The status of a limited answer: 429 unless the gateway asked for 401/403.
pub fn denied_status(query: Option<&str>) -> Result<StatusCode, ApiError> {
    let Some(query) = query else {
        return Ok(StatusCode::TOO_MANY_REQUESTS);
    };
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("denied_status", "401")) => return Ok(StatusCode::UNAUTHORIZED),
            Some(("denied_status", "403")) => return Ok(StatusCode::FORBIDDEN),
            Some(("denied_status", "429")) => return Ok(StatusCode::TOO_MANY_REQUESTS),
            Some(("denied_status", other)) => {
                return Err(ApiError::field(
                    "denied_status",
                    format!("denied_status must be 401, 403 or 429; got {other:?}"),
                ))
            }
            _ => {}
        }
    }
    Ok(StatusCode::TOO_MANY_REQUESTS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn parse(pairs: &[(&'static str, &str)]) -> Result<CheckRequest, ApiError> {
        parse_forwarded(&headers(pairs), &ForwardSettings::default(), 256)
    }

    #[test]
    fn the_first_identity_header_names_the_key() {
        let r = parse(&[("x-forwarded-for", "203.0.113.9, 10.0.0.1"), ("x-api-key", "k-123")]).unwrap();
        // A credential: kept as its SHA-256 (forward.hash_headers).
        let hashed = crate::limiter::hashing::KeyHasher::Sha256.hash("k-123");
        assert_eq!(r.key.as_str(), format!("x-api-key:sha256:{hashed}"));
        assert_eq!(r.client_ip, Some("203.0.113.9".parse().unwrap()));
        let raw = ForwardSettings {
            hash_headers: Vec::new(),
            ..ForwardSettings::default()
        };
        let r = parse_forwarded(&headers(&[("x-api-key", "k-123")]), &raw, 256).unwrap();
        assert_eq!(r.key.as_str(), "x-api-key:k-123");
        let r = parse(&[("x-forwarded-for", "2001:db8::7")]).unwrap();
        assert_eq!(r.key.as_str(), "ip:2001:db8::7");
    }

    #[test]
    fn a_bearer_jwt_gives_its_subject() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"user-42","exp":1}"#);
        let auth = format!("Bearer eyJhbGciOiJIUzI1NiJ9.{payload}.sig");
        assert_eq!(parse(&[("authorization", &auth)]).unwrap().key.as_str(), "sub:user-42");
        // Not a JWT: the next header is used.
        let r = parse(&[("authorization", "Basic abc"), ("x-org-id", "acme")]).unwrap();
        assert_eq!(r.key.as_str(), "x-org-id:acme");
    }

    #[test]
    fn method_and_uri_make_the_endpoint() {
        let r = parse(&[
            ("x-org-id", "acme"),
            ("x-original-method", "get"),
            ("x-original-uri", "/api/data?page=2"),
            ("x-ratelimit-tier", "pro"),
        ])
        .unwrap();
        assert_eq!(r.endpoint.as_deref(), Some("GET /api/data"));
        assert_eq!(r.tier.as_deref(), Some("pro"));
        assert_eq!(parse(&[("x-org-id", "acme")]).unwrap().endpoint, None);
    }

    #[test]
    fn no_identity_is_a_400_naming_the_key() {
        let err = parse(&[("x-original-uri", "/")]).unwrap_err();
        assert_eq!(
            (err.status, err.field.as_deref()),
            (StatusCode::BAD_REQUEST, Some("key"))
        );
    }

    #[test]
    fn denied_status_is_429_unless_asked() {
        assert_eq!(denied_status(None).unwrap(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            denied_status(Some("denied_status=401")).unwrap(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            denied_status(Some("x=1&denied_status=403")).unwrap(),
            StatusCode::FORBIDDEN
        );
        assert!(denied_status(Some("denied_status=500")).is_err());
    }
}
