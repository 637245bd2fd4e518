//! `POST /check/batch`: several checks in one request, each decided as
//! `/check` would decide it.

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::app;

const RULES: &str = r#"
    [defaults]
    algorithm = "fixed_window"
    limit = 2
    window = "60s"

    [tiers]
    free = { limit = 2 }
    pro = { limit = 5 }

    [[rules]]
    endpoint = "POST /login"
    limit = 1
    window = "60s"
"#;

#[tokio::test]
async fn each_check_is_decided_and_reported_in_order() {
    let app = app(RULES);
    let reply = app
        .batch(json!({"checks": [
            {"key": "a"},
            {"key": "b", "endpoint": "POST /login"},
            {"key": "c", "tier": "pro", "cost": 3},
        ]}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["allowed"], true);
    let results = reply.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["status"], 200);
    assert_eq!(results[0]["remaining"], 1);
    assert_eq!(results[1]["rule"], "POST /login");
    assert_eq!(results[1]["remaining"], 0);
    assert_eq!(results[2]["tier"], "pro");
    assert_eq!(results[2]["remaining"], 2);
    // The headers are the tightest allowed check's.
    assert_eq!(reply.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(reply.header("x-ratelimit-limit"), Some("1"));

    // The same key twice in one batch: both count.
    let reply = app
        .batch(json!({"checks": [{"key": "d"}, {"key": "d"}, {"key": "d"}]}))
        .await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{}", reply.body);
    assert_eq!(reply.body["allowed"], false);
    let allowed = reply.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["allowed"] == true)
        .count();
    assert_eq!(allowed, 2, "exactly the limit");
    assert!(reply.header("retry-after").is_some(), "the refused check's headers");

    // The batch consumed what single checks see.
    let single = app.check(json!({"key": "a"})).await;
    assert_eq!(single.body["remaining"], 0);
}

#[tokio::test]
async fn an_invalid_check_refuses_the_whole_batch_and_consumes_nothing() {
    let app = app(RULES);
    let cases = [
        (json!({"checks": [{"key": "a"}, {"key": ""}]}), "checks[1].key"),
        (
            json!({"checks": [{"key": "a"}, {"key": "b", "cost": -1}]}),
            "checks[1].cost",
        ),
        (
            json!({"checks": [{"key": "a"}, {"key": "b", "cost": 3}]}),
            "checks[1].cost",
        ),
        (json!({"checks": [{"key": "a", "tier": "gold"}]}), "checks[0].tier"),
        (json!({"checks": [{"key": "a"}, 7]}), "checks[1]"),
        (json!({"checks": [{"key": "a", "colour": "red"}]}), "checks[0].colour"),
        (json!({"checks": []}), "checks"),
        (json!({"checks": {"key": "a"}}), "checks"),
        (json!({"check": [{"key": "a"}]}), "check"),
        (json!({}), "checks"),
        (json!([{"key": "a"}]), "body"),
    ];
    for (body, field) in cases {
        let reply = app.batch(body.clone()).await;
        reply.assert_error(StatusCode::BAD_REQUEST, Some(field));
    }
    let too_many: Vec<_> = (0..101).map(|i| json!({"key": format!("k{i}")})).collect();
    app.batch(json!({ "checks": too_many }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("checks"));
    let reply = app.check(json!({"key": "a"})).await;
    assert_eq!(reply.body["remaining"], 1, "nothing was consumed by refused batches");
}

#[tokio::test]
async fn a_blocked_key_answers_403_in_its_place() {
    let app = app(&format!("{RULES}\n[admin]\ntoken = \"batch-admin-token-0123456789\"\n"));
    let request = axum::http::Request::put("/admin/lists/block")
        .header("content-type", "application/json")
        .header("authorization", "Bearer batch-admin-token-0123456789")
        .body(axum::body::Body::from(json!({"entry": "mallory"}).to_string()))
        .unwrap();
    let reply = app.send(request).await;
    assert!(reply.status.is_success(), "{}", reply.body);
    let reply = app
        .batch(json!({"checks": [{"key": "alice"}, {"key": "mallory"}]}))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.body["results"][0]["status"], 200);
    assert_eq!(reply.body["results"][1]["status"], 403);
    assert_eq!(reply.body["results"][1]["reason"], "blocked");
}
