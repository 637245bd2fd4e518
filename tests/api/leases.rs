//! Concurrency limits through the API: leases taken by allowed checks,
//! released and renewed by token, reclaimed at expiry; all or nothing
//! beside a rate limit; bad input is a 400 naming the field.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{app, TestApp};

const RULES: &str = r#"
    [defaults]
    limit = 100
    window = "1h"
    [[rules]]
    endpoint = "POST /jobs"
    algorithm = "concurrency"
    limit = 2
    lease_ttl = "10s"
    [[rules]]
    endpoint = "POST /default-ttl"
    algorithm = "concurrency"
    limit = 1
    [[rules]]
    endpoint = "POST /chat"
    limits = [
      { name = "rate", algorithm = "fixed_window", limit = 3, window = "1h" },
      { name = "inflight", algorithm = "concurrency", limit = 1, lease_ttl = "20s" },
    ]
"#;

fn jobs(key: &str) -> Value {
    json!({"key": key, "endpoint": "POST /jobs"})
}

async fn lease(app: &TestApp, body: Value) -> String {
    let reply = app.check(body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["lease"].as_str().expect("a lease").to_owned()
}

#[tokio::test]
async fn at_most_the_limit_in_flight_until_a_lease_is_released() {
    let app = app(RULES);
    let first = app.check(jobs("u")).await;
    assert_eq!(first.body["lease_expires_ms"], 10_000);
    assert_eq!(first.body["remaining"], 1);
    assert_eq!(
        first.header("ratelimit-policy"),
        Some(r#""POST /jobs";q=2;qu="concurrent-requests""#)
    );
    let first = first.body["lease"].as_str().unwrap().to_owned();
    let _second = lease(&app, jobs("u")).await;
    app.advance(Duration::from_secs(3));
    let full = app.check(jobs("u")).await;
    assert_eq!(full.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(full.body.get("lease").is_none());
    // An upper bound: the first lease's expiry.
    assert_eq!(full.body["retry_after_ms"], 7_000);
    // Another key has its own limit.
    lease(&app, jobs("v")).await;
    let released = app.post("/release", json!({"lease": first})).await;
    assert_eq!(
        (released.status, &released.body),
        (StatusCode::OK, &json!({"released": true}))
    );
    let again = app.post("/release", json!({"lease": first})).await;
    assert_eq!(again.body, json!({"released": false}), "a release is idempotent");
    lease(&app, jobs("u")).await;
}

#[tokio::test]
async fn a_lease_not_released_is_reclaimed_at_its_expiry_and_can_be_renewed_before() {
    let app = app(RULES);
    let held = lease(&app, jobs("u")).await;
    let other = lease(&app, jobs("u")).await;
    app.advance(Duration::from_secs(8));
    let renewed = app.post("/renew", json!({"lease": held})).await;
    assert_eq!(renewed.status, StatusCode::OK);
    assert_eq!(renewed.body, json!({"renewed": true, "lease_expires_ms": 10_000}));
    // The other lease expires at 10 s: its capacity comes back, without a release.
    app.advance(Duration::from_millis(1_999));
    assert_eq!(app.check(jobs("u")).await.status, StatusCode::TOO_MANY_REQUESTS);
    app.advance(Duration::from_millis(1));
    lease(&app, jobs("u")).await;
    let expired = app.post("/renew", json!({"lease": other})).await;
    expired.assert_error(StatusCode::NOT_FOUND, Some("lease"));
    assert_eq!(
        app.post("/release", json!({"lease": other})).await.body["released"],
        false
    );
    // The renewed lease lasts 10 s from its renewal.
    app.advance(Duration::from_millis(7_999));
    assert_eq!(app.post("/renew", json!({"lease": held})).await.status, StatusCode::OK);
}

#[tokio::test]
async fn lease_ttl_defaults_to_thirty_seconds() {
    let app = app(RULES);
    let reply = app.check(json!({"key": "u", "endpoint": "POST /default-ttl"})).await;
    assert_eq!(reply.body["lease_expires_ms"], 30_000);
}

#[tokio::test]
async fn a_concurrency_limit_beside_a_rate_limit_is_all_or_nothing() {
    let app = app(RULES);
    let chat = json!({"key": "u", "endpoint": "POST /chat"});
    let token = lease(&app, chat.clone()).await;
    let denied = app.check(chat.clone()).await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(denied.body["limit_name"], "inflight");
    // The rate limit consumed nothing for the denied check.
    let rate = &denied.body["limits"][0];
    assert_eq!(
        (rate["name"].as_str(), rate["remaining"].as_u64()),
        (Some("rate"), Some(2))
    );
    assert!(denied
        .header("ratelimit-policy")
        .unwrap()
        .contains(r#""POST /chat/inflight";q=1;qu="concurrent-requests""#));
    app.post("/release", json!({"lease": token})).await;
    lease(&app, chat.clone()).await;
    // A peek takes no lease.
    let peek = app
        .check(json!({"key": "u", "endpoint": "POST /chat", "cost": 0}))
        .await;
    assert!(peek.body.get("lease").is_none());
    assert_eq!(peek.body["reason"], "peek");
}

#[tokio::test]
async fn bad_leases_and_bodies_are_refused_naming_the_field() {
    let app = app(RULES);
    for (path, body, field) in [
        ("/release", json!({}), "lease"),
        ("/release", json!({"lease": 7}), "lease"),
        ("/release", json!({"lease": ""}), "lease"),
        ("/release", json!({"lease": "not-a-token"}), "lease"),
        ("/release", json!({"lease": "x".repeat(5000)}), "lease"),
        ("/release", json!({"lease": "MTox", "colour": 1}), "colour"),
        ("/renew", json!(["lease"]), "body"),
        ("/renew", json!({"lease": null}), "lease"),
        ("/renew", json!({"lease": "AAAA"}), "lease"),
    ] {
        app.post(path, body)
            .await
            .assert_error(StatusCode::BAD_REQUEST, Some(field));
    }
    // A concurrency limit takes no reports.
    let report = app
        .report(json!({"key": "u", "endpoint": "POST /jobs", "cost": 3}))
        .await;
    report.assert_error(StatusCode::BAD_REQUEST, Some("cost"));
}
