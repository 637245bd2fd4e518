//! Metrics, request ids and health through the real router.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

use crate::helpers::app;

pub(crate) async fn scrape(app: &crate::helpers::TestApp) -> String {
    let response = app
        .router
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn decisions_are_counted_by_rule_tier_and_decision() {
    let app =
        app("[defaults]\ntier = \"free\"\nlimit = 2\nwindow = \"1h\"\n[[rules]]\nendpoint = \"GET /a\"\nlimit = 1\n");
    for _ in 0..3 {
        app.check(json!({"key": "k"})).await;
    }
    app.check(json!({"key": "k", "endpoint": "GET /a"})).await;
    app.check(json!({"key": ""})).await; // a 400 is not a decision
    let text = scrape(&app).await;
    let allowed = r#"rate_limit_requests_total{decision="allowed",protocol="http",rule="default",tier="free"}"#;
    let limited = r#"rate_limit_requests_total{decision="limited",protocol="http",rule="default",tier="free"}"#;
    assert_eq!(value(&text, allowed), Some(2.0), "{text}");
    assert_eq!(value(&text, limited), Some(1.0), "{text}");
    assert_eq!(
        value(&text, r#"rate_limit_exceeded_total{rule="default",tier="free"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            r#"rate_limit_requests_total{decision="allowed",protocol="http",rule="GET /a",tier="free"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "rate_limit_check_duration_seconds_count"),
        Some(5.0),
        "every /check is timed"
    );
    assert_eq!(
        value(&text, r#"rate_limit_store_duration_seconds_count{op="check"}"#),
        Some(4.0)
    );
    assert!(!text.contains("\"k\""), "keys are never labels");
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = app("");
    let request = Request::post("/check")
        .header("content-type", "application/json")
        .header("x-request-id", "abc-123")
        .body(Body::from(r#"{"key":"k"}"#))
        .unwrap();
    let r = app.send(request).await;
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    let r = app.check(json!({"key": "k"})).await;
    let generated = r.header("x-request-id").expect("a generated id").to_owned();
    assert_eq!(generated.len(), 32, "32 hex digits: {generated}");
    assert!(generated.bytes().all(|b| b.is_ascii_hexdigit()), "{generated}");
    // Errors carry one too, and no two are alike.
    let r = app.check(json!({})).await;
    let next = r.header("x-request-id").expect("a generated id");
    assert_ne!(next, generated);
    assert_eq!(next[..16], generated[..16], "one replica's prefix");
}

#[tokio::test]
async fn liveness_and_readiness() {
    let app = app("");
    for path in ["/health", "/health/live"] {
        let r = app.get(path).await;
        assert_eq!((r.status, r.body["status"].as_str()), (StatusCode::OK, Some("ok")));
    }
    let r = app.get("/health/ready").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"ready": true, "store": "ok", "breaker": "closed"}));
}
