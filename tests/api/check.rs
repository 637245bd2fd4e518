//! `POST /check`: decisions, bodies and headers.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::{app, START_US};

const RULES: &str = r#"
    [defaults]
    algorithm = "token_bucket"
    tier = "free"
    limit = 100
    window = "10s"

    [tiers]
    free = { limit = 100, window = "10s" }
    pro = { limit = 1000, window = "10s" }

    [[rules]]
    endpoint = "POST /login"
    algorithm = "fixed_window"
    limit = 3
    window = "60s"
    tiers.pro = { limit = 30 }

    [[rules]]
    endpoint = "GET /log"
    algorithm = "sliding_window_log"
    limit = 2
    window = "10s"

    [[rules]]
    endpoint = "GET /counter"
    algorithm = "sliding_window_counter"
    limit = 2
    window = "10s"

    [[rules]]
    endpoint = "GET /gcra"
    algorithm = "gcra"
    limit = 2
    window = "10s"

    [[rules]]
    endpoint = "GET /bucket"
    algorithm = "token_bucket"
    limit = 2
    window = "10s"

    [[rules]]
    endpoint = "GET /fixed"
    algorithm = "fixed_window"
    limit = 2
    window = "10s"
"#;

#[tokio::test]
async fn allow_then_deny_then_retry() {
    let app = app(RULES);
    let login = json!({"key": "user:1", "endpoint": "POST /login"});
    for remaining in [2, 1, 0] {
        let r = app.check(login.clone()).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["allowed"], true);
        assert_eq!(r.body["remaining"], remaining);
        assert_eq!(r.body["retry_after_ms"], 0);
        assert_eq!(r.header("retry-after"), None);
    }
    let denied = app.check(login.clone()).await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(denied.body["allowed"], false);
    assert_eq!(denied.body["remaining"], 0);
    // Fixed 60 s windows aligned to the epoch; START_US is 20 s into one.
    assert_eq!(denied.body["retry_after_ms"], 40_000);
    assert_eq!(denied.header("retry-after"), Some("40"));

    app.advance(Duration::from_millis(39_999));
    assert_eq!(app.check(login.clone()).await.status, StatusCode::TOO_MANY_REQUESTS);
    app.advance(Duration::from_millis(1));
    let again = app.check(login).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["remaining"], 2);
}

#[tokio::test]
async fn body_names_rule_tier_and_algorithm() {
    let app = app(RULES);
    let r = app
        .check(json!({"key": "k", "endpoint": "POST /login", "tier": "pro", "cost": 1}))
        .await;
    assert_eq!(
        r.body,
        json!({
            "allowed": true, "limit": 30, "remaining": 29, "reset_after_ms": 40_000,
            "retry_after_ms": 0, "rule": "POST /login", "tier": "pro", "algorithm": "fixed_window",
            "reason": "allowed"
        })
    );
}

#[tokio::test]
async fn headers_follow_the_conventions() {
    let app = app(RULES);
    let r = app.check(json!({"key": "k", "endpoint": "POST /login"})).await;
    assert_eq!(r.header("x-ratelimit-limit"), Some("3"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("2"));
    // Fully restored at the end of the current minute: START + 40 s.
    let reset = (START_US / 1_000_000 + 40).to_string();
    assert_eq!(r.header("x-ratelimit-reset"), Some(reset.as_str()));
    assert_eq!(r.header("ratelimit-policy"), Some("\"POST /login\";q=3;w=60"));
    assert_eq!(r.header("ratelimit"), Some("\"POST /login\";r=2;t=40"));
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn retry_after_rounds_up_to_whole_seconds() {
    let app = app(RULES);
    // Token bucket of 100 per 10 s: one token every 100 ms.
    for _ in 0..100 {
        assert_eq!(app.check(json!({"key": "k"})).await.status, StatusCode::OK);
    }
    let denied = app.check(json!({"key": "k", "cost": 1})).await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(denied.body["retry_after_ms"], 100);
    assert_eq!(denied.header("retry-after"), Some("1"));
    assert_eq!(denied.body["reset_after_ms"], 10_000);
}

#[tokio::test]
async fn unknown_or_absent_endpoint_uses_the_default_rule() {
    let app = app(RULES);
    for body in [
        json!({"key": "k"}),
        json!({"key": "k", "endpoint": "DELETE /nothing"}),
        json!({"key": "k", "endpoint": null}),
    ] {
        let r = app.check(body).await;
        assert_eq!(r.body["rule"], "default");
        assert_eq!(r.body["tier"], "free");
        assert_eq!(r.body["algorithm"], "token_bucket");
        assert_eq!(r.body["limit"], 100);
    }
}

#[tokio::test]
async fn tiers_select_their_limit() {
    let app = app(RULES);
    let r = app.check(json!({"key": "k", "tier": "pro"})).await;
    assert_eq!(
        (r.body["limit"].as_u64(), r.body["tier"].as_str()),
        (Some(1000), Some("pro"))
    );
}

#[tokio::test]
async fn cost_consumes_several_units_and_a_denial_consumes_nothing() {
    let app = app(RULES);
    let login = |cost: u64| json!({"key": "k", "endpoint": "POST /login", "cost": cost});
    assert_eq!(app.check(login(2)).await.body["remaining"], 1);
    let denied = app.check(login(2)).await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(denied.body["remaining"], 1);
    let last = app.check(login(1)).await;
    assert_eq!(
        (last.status, last.body["remaining"].as_u64()),
        (StatusCode::OK, Some(0))
    );
}

#[tokio::test]
async fn keys_are_isolated() {
    let app = app(RULES);
    let login = |key: &str| json!({"key": key, "endpoint": "POST /login", "cost": 3});
    assert_eq!(app.check(login("org:a")).await.status, StatusCode::OK);
    assert_eq!(app.check(login("org:a")).await.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(app.check(login("org:b")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn every_algorithm_allows_then_denies_then_recovers() {
    let app = app(RULES);
    for (endpoint, algorithm) in [
        ("GET /log", "sliding_window_log"),
        ("GET /counter", "sliding_window_counter"),
        ("GET /gcra", "gcra"),
        ("GET /bucket", "token_bucket"),
        ("GET /fixed", "fixed_window"),
    ] {
        let body = json!({"key": "k", "endpoint": endpoint});
        for remaining in [1, 0] {
            let r = app.check(body.clone()).await;
            assert_eq!(r.status, StatusCode::OK, "{algorithm}: {}", r.body);
            assert_eq!(r.body["remaining"], remaining, "{algorithm}");
            assert_eq!(r.body["algorithm"], algorithm);
        }
        let denied = app.check(body.clone()).await;
        assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS, "{algorithm}");
        let retry_ms = denied.body["retry_after_ms"].as_u64().unwrap();
        assert!(retry_ms > 0, "{algorithm}");
        let retry_s: u64 = denied.header("retry-after").unwrap().parse().unwrap();
        assert_eq!(retry_s, retry_ms.div_ceil(1000), "{algorithm}");
        assert!(
            denied.body["reset_after_ms"].as_u64().unwrap() >= retry_ms,
            "{algorithm}"
        );

        app.advance(Duration::from_millis(retry_ms));
        let r = app.check(body).await;
        assert_eq!(r.status, StatusCode::OK, "{algorithm} after retry_after: {}", r.body);
        app.advance(Duration::from_secs(60));
    }
}

#[tokio::test]
async fn rules_are_listed() {
    let app = app(RULES);
    for path in ["/rules", "/"] {
        let r = app.get(path).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["service"], "ratelimiter");
        assert_eq!(r.body["default_tier"], "free");
        assert_eq!(r.body["tiers"], json!(["free", "pro"]));
        let rules = r.body["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 7);
        assert_eq!(rules[0]["rule"], "default");
        assert_eq!(rules[0]["endpoint"], serde_json::Value::Null);
        assert_eq!(
            rules[1],
            json!({"rule": "POST /login", "endpoint": "POST /login", "shadow": false, "limits": [
                {"tier": "free", "algorithm": "fixed_window", "limit": 3, "window": "1m", "window_ms": 60_000},
                {"tier": "pro", "algorithm": "fixed_window", "limit": 30, "window": "1m", "window_ms": 60_000},
            ]})
        );
    }
}

#[tokio::test]
async fn health_is_ok() {
    let r = app("").get("/health").await;
    assert_eq!((r.status, r.body["status"].as_str()), (StatusCode::OK, Some("ok")));
}

#[tokio::test]
async fn json_content_types_with_parameters_are_accepted() {
    let app = app("");
    for content_type in [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/merge-patch+json",
    ] {
        let request = axum::http::Request::post("/check")
            .header("content-type", content_type)
            .body(axum::body::Body::from(r#"{"key":"k"}"#))
            .unwrap();
        assert_eq!(app.send(request).await.status, StatusCode::OK, "{content_type}");
    }
}

#[tokio::test]
async fn forwarded_headers_are_checked_like_a_body() {
    use axum::body::Body;
    use axum::http::Request;
    let app = app(RULES);
    let forwarded = |denied: &str| {
        Request::get(format!("/check/forward{denied}"))
            .header("x-org-id", "acme")
            .header("x-original-method", "POST")
            .header("x-original-uri", "/login?next=/")
            .body(Body::empty())
            .unwrap()
    };
    for remaining in ["2", "1", "0"] {
        let r = app.send(forwarded("")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("x-ratelimit-remaining"), Some(remaining));
        assert_eq!(r.body["rule"], "POST /login");
    }
    let r = app.send(forwarded("")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.header("retry-after").is_some());
    // nginx's auth_request only understands 401/403 as a denial.
    let r = app.send(forwarded("?denied_status=401")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("x-ratelimit-limit"), Some("3"));
    // The same identity through /check shares the counter.
    let r = app
        .check(json!({"key": "x-org-id:acme", "endpoint": "POST /login"}))
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // No identity at all: a 400 naming the key.
    let r = app
        .send(Request::get("/check/forward").body(Body::empty()).unwrap())
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, Some("key"));
}

/// `"cost": 0` peeks: 200 whatever it finds, `reason: "peek"`, `allowed`
/// whether a cost-1 check would pass, the numbers as they stand, nothing
/// consumed, and no `Retry-After`.
#[tokio::test]
async fn a_peek_answers_200_and_consumes_nothing() {
    let app = app(RULES);
    let peek = json!({"key": "p", "endpoint": "POST /login", "cost": 0});
    let fresh = app.check(peek.clone()).await;
    assert_eq!(fresh.status, StatusCode::OK);
    assert_eq!(fresh.body["reason"], "peek");
    assert_eq!(
        (fresh.body["allowed"].as_bool(), fresh.body["remaining"].as_u64()),
        (Some(true), Some(3))
    );
    for _ in 0..5 {
        assert_eq!(
            app.check(peek.clone()).await.body["remaining"],
            3,
            "peeks consume nothing"
        );
    }
    for _ in 0..3 {
        let spent = app.check(json!({"key": "p", "endpoint": "POST /login"})).await;
        assert_eq!(spent.status, StatusCode::OK);
    }
    let empty = app.check(peek.clone()).await;
    assert_eq!(
        empty.status,
        StatusCode::OK,
        "a peek is 200 even when a check would be denied"
    );
    assert_eq!(
        (empty.body["allowed"].as_bool(), empty.body["remaining"].as_u64()),
        (Some(false), Some(0))
    );
    assert!(empty.body["retry_after_ms"].as_u64().unwrap() > 0, "{}", empty.body);
    assert_eq!(empty.header("retry-after"), None);
    assert_eq!(empty.header("x-ratelimit-remaining"), Some("0"));
    // A fractional zero is a peek too; the peek's cost may exceed nothing.
    assert_eq!(app.check(json!({"key": "q", "cost": 0.0})).await.body["reason"], "peek");
}
