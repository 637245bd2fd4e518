//! Bad input: every case is a 4xx with a JSON body naming the field.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

use crate::helpers::app;

const RULES: &str = r#"
    [defaults]
    limit = 10
    [tiers]
    pro = { limit = 20 }
"#;

#[tokio::test]
async fn malformed_bodies_name_the_body() {
    let app = app(RULES);
    for body in [
        &b"{\"key\": "[..],
        b"not json",
        b"",
        b"[\"key\"]",
        b"\"user:1\"",
        b"null",
        b"{\"key\": \"a\"} trailing",
        b"{\"key\": \"\xff\xfe\"}",
    ] {
        let r = app.check_raw(body.to_vec()).await;
        r.assert_error(StatusCode::BAD_REQUEST, Some("body"));
    }
}

#[tokio::test]
async fn deep_nesting_is_refused_not_overflowed() {
    let app = app(RULES);
    let deep = format!(
        "{{\"key\": \"k\", \"cost\": {}1{}}}",
        "[".repeat(3000),
        "]".repeat(3000)
    );
    let msg = app
        .check_raw(deep)
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("body"));
    assert!(msg.contains("recursion limit"), "{msg}");
    let deep = format!("{}1{}", "[".repeat(1000), "]".repeat(1000));
    app.check_raw(deep)
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("body"));
}

#[tokio::test]
async fn key_is_required_non_empty_bounded_and_a_string() {
    let app = app(RULES);
    let msg = app
        .check(json!({"cost": 1}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("key"));
    assert!(msg.contains("required"), "{msg}");
    for key in [json!(""), json!(42), json!(null), json!(["a"]), json!({"id": 1})] {
        app.check(json!({ "key": key }))
            .await
            .assert_error(StatusCode::BAD_REQUEST, Some("key"));
    }
    let long = "k".repeat(257);
    let msg = app
        .check(json!({ "key": long }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("key"));
    assert!(msg.contains("257") && msg.contains("256"), "{msg}");
    assert_eq!(
        app.check(json!({ "key": "k".repeat(256) })).await.status,
        StatusCode::OK
    );
    // Bytes, not characters: 128 two-byte characters are 256 bytes.
    assert_eq!(
        app.check(json!({ "key": "é".repeat(128) })).await.status,
        StatusCode::OK
    );
    app.check(json!({ "key": "é".repeat(129) }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("key"));
}

#[tokio::test]
async fn the_key_limit_is_configurable() {
    let app = app("[server]\nmax_key_bytes = 8\n");
    assert_eq!(app.check(json!({"key": "12345678"})).await.status, StatusCode::OK);
    app.check(json!({"key": "123456789"}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("key"));
}

#[tokio::test]
async fn cost_must_be_a_whole_number_within_the_limit() {
    let app = app(RULES);
    for cost in [json!(-1), json!(-1.0), json!(1.5), json!("2"), json!(1e30), json!(true)] {
        let msg = app
            .check(json!({"key": "k", "cost": cost}))
            .await
            .assert_error(StatusCode::BAD_REQUEST, Some("cost"));
        assert!(msg.contains("cost"), "{msg}");
    }
    let huge = app.check_raw(r#"{"key": "k", "cost": 18446744073709551616}"#).await;
    huge.assert_error(StatusCode::BAD_REQUEST, Some("cost"));
    let msg = app
        .check(json!({"key": "k", "cost": 11}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("cost"));
    assert!(msg.contains("exceeds the limit 10"), "{msg}");
    // A refused cost consumed nothing.
    assert_eq!(app.check(json!({"key": "k", "cost": 10})).await.status, StatusCode::OK);
    // The same cost fits the pro tier's limit.
    let pro = app.check(json!({"key": "other", "cost": 11, "tier": "pro"})).await;
    assert_eq!(pro.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_fields_are_named() {
    let app = app(RULES);
    let msg = app
        .check(json!({"key": "k", "cots": 2}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("cots"));
    assert!(msg.contains("key, endpoint, tier, cost"), "{msg}");
}

#[tokio::test]
async fn endpoint_and_tier_must_be_strings_and_tiers_known() {
    let app = app(RULES);
    app.check(json!({"key": "k", "endpoint": 3}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("endpoint"));
    app.check(json!({"key": "k", "tier": ["pro"]}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("tier"));
    let msg = app
        .check(json!({"key": "k", "tier": "gold"}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("tier"));
    assert!(msg.contains("\"gold\"") && msg.contains("pro"), "{msg}");
}

#[tokio::test]
async fn content_type_must_be_json() {
    let app = app(RULES);
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
        None,
    ] {
        let mut request = Request::post("/check");
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let r = app.send(request.body(Body::from(r#"{"key":"k"}"#)).unwrap()).await;
        r.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("content-type"));
    }
}

#[tokio::test]
async fn bodies_over_the_cap_are_refused() {
    let app = app(RULES);
    let big = json!({"key": "k", "endpoint": "x".repeat(9000)}).to_string();
    let msg = app
        .check_raw(big)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, Some("body"));
    assert!(msg.contains("8192"), "{msg}");
    let app = crate::helpers::app("[server]\nmax_body_bytes = 16384\n");
    let big = json!({"key": "k", "endpoint": "x".repeat(9000)}).to_string();
    assert_eq!(app.check_raw(big).await.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = app(RULES);
    app.get("/nope").await.assert_error(StatusCode::NOT_FOUND, None);
    app.get("/check")
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, None);
    let r = app.send(Request::delete("/rules").body(Body::empty()).unwrap()).await;
    r.assert_error(StatusCode::METHOD_NOT_ALLOWED, None);
}

#[tokio::test]
async fn nul_bytes_and_odd_keys_are_just_keys() {
    let app = app("[defaults]\nlimit = 1\n");
    for key in ["a\u{0}b", "{user}:1", "*", "line\nbreak", "🙂"] {
        let r = app.check(json!({ "key": key })).await;
        assert_eq!(r.status, StatusCode::OK, "{key:?}");
        assert_eq!(
            app.check(json!({ "key": key })).await.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{key:?}"
        );
    }
}
