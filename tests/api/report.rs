//! `POST /report` and ids: a debt denies until time has paid it back,
//! exactly; a refund never goes beyond full; an id applies once; bad input
//! is a 400 naming the field.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::app;

/// 10 per 10 s by default (a token back every second); an LLM route that
/// counts tokens per minute and per day; a log that takes no reports.
const RULES: &str = r#"
    [defaults]
    algorithm = "token_bucket"
    limit = 10
    window = "10s"
    [[rules]]
    endpoint = "POST /llm"
    limits = [
      { name = "minute", algorithm = "gcra", limit = 1000, window = "60s" },
      { name = "day", algorithm = "fixed_window", limit = 20000, window = "1d" },
    ]
    [[rules]]
    endpoint = "GET /log"
    algorithm = "sliding_window_log"
    limit = 10
    window = "10s"
"#;

#[tokio::test]
async fn a_debt_denies_checks_until_time_has_paid_it_back() {
    let app = app(RULES);
    let reported = app.report(json!({"key": "u", "cost": 50})).await;
    assert_eq!(reported.status, StatusCode::OK, "{}", reported.body);
    assert_eq!(reported.body["allowed"], true);
    assert_eq!(reported.body["reason"], "reported");
    assert_eq!(reported.body["remaining"], 0);
    // 40 past the limit: one unit fits again after 41 s.
    assert_eq!(reported.body["retry_after_ms"], 41_000);
    assert_eq!(reported.body["reset_after_ms"], 50_000);
    assert!(reported.header("ratelimit-policy").is_some());
    let denied = app.check(json!({"key": "u"})).await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(denied.body["retry_after_ms"], 41_000);
    app.advance(Duration::from_micros(40_999_999));
    assert_eq!(
        app.check(json!({"key": "u"})).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    app.advance(Duration::from_micros(1));
    assert_eq!(app.check(json!({"key": "u"})).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_refund_never_goes_beyond_full() {
    let app = app(RULES);
    for _ in 0..4 {
        assert_eq!(app.check(json!({"key": "u"})).await.status, StatusCode::OK);
    }
    let refunded = app.report(json!({"key": "u", "cost": -1000})).await;
    assert_eq!(refunded.status, StatusCode::OK);
    assert_eq!(refunded.body["reason"], "refunded");
    assert_eq!(refunded.body["remaining"], 10);
    assert_eq!(refunded.body["reset_after_ms"], 0);
    let admitted = {
        let mut n = 0;
        for _ in 0..20 {
            n += usize::from(app.check(json!({"key": "u"})).await.status == StatusCode::OK);
        }
        n
    };
    assert_eq!(admitted, 10);
}

#[tokio::test]
async fn reserve_then_settle_charges_every_limit_of_the_rule() {
    let app = app(RULES);
    let llm = |cost: i64| json!({"key": "team", "endpoint": "POST /llm", "cost": cost});
    // Reserve an estimate of 500 tokens, then settle: 800 were used.
    let reserved = app.check(llm(500)).await;
    assert_eq!(reserved.status, StatusCode::OK, "{}", reserved.body);
    let settled = app.report(llm(300)).await;
    assert_eq!(settled.status, StatusCode::OK);
    let limits = settled.body["limits"].as_array().unwrap();
    assert_eq!(limits[0]["remaining"], 200);
    assert_eq!(limits[1]["remaining"], 19_200);
    // Only 200 used after all: give 600 back.
    let refunded = app.report(llm(-600)).await;
    assert_eq!(refunded.body["limits"][0]["remaining"], 800);
    assert_eq!(refunded.body["limits"][1]["remaining"], 19_800);
}

#[tokio::test]
async fn an_id_applies_once() {
    let app = app(RULES);
    let body = json!({"key": "u", "cost": 4, "id": "job-17"});
    let first = app.report(body.clone()).await;
    assert_eq!(first.body["remaining"], 6);
    assert!(first.body.get("duplicate").is_none());
    let again = app.report(body.clone()).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["duplicate"], true);
    assert_eq!(again.body["remaining"], 6);
    // A check with an id consumes once; a retry is allowed, consuming nothing.
    let check = json!({"key": "u", "cost": 6, "id": "req-1"});
    assert_eq!(app.check(check.clone()).await.body["remaining"], 0);
    let retried = app.check(check.clone()).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
    assert_eq!(retried.body["duplicate"], true);
    assert_eq!(retried.body["allowed"], true);
    assert_eq!(
        app.check(json!({"key": "u"})).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A denied check keeps no id: its retry is decided afresh.
    let denied = json!({"key": "u", "id": "req-2"});
    assert_eq!(app.check(denied.clone()).await.status, StatusCode::TOO_MANY_REQUESTS);
    app.advance(Duration::from_secs(1));
    let later = app.check(denied).await;
    assert_eq!(later.status, StatusCode::OK);
    assert!(later.body.get("duplicate").is_none());
    // The id is forgotten after the rule's window: applied again.
    app.advance(Duration::from_secs(11));
    let after = app.report(body).await;
    assert!(after.body.get("duplicate").is_none(), "{}", after.body);
}

#[tokio::test]
async fn bad_reports_are_refused_naming_the_field() {
    let app = app(RULES);
    for (body, field) in [
        (json!({"key": "u"}), "cost"),
        (json!({"key": "u", "cost": 0}), "cost"),
        (json!({"key": "u", "cost": 1.5}), "cost"),
        (json!({"key": "u", "cost": "7"}), "cost"),
        (json!({"key": "u", "cost": 2_147_483_649_i64}), "cost"),
        (json!({"key": "u", "cost": -2_147_483_649_i64}), "cost"),
        (json!({"key": "u", "cost": 5, "endpoint": "GET /log"}), "cost"),
        (json!({"cost": 5}), "key"),
        (json!({"key": "u", "cost": 5, "id": ""}), "id"),
        (json!({"key": "u", "cost": 5, "id": "x".repeat(129)}), "id"),
        (json!({"key": "u", "cost": 5, "id": 7}), "id"),
        (json!({"key": "u", "cost": 5, "tier": "gold"}), "tier"),
        (json!({"key": "u", "cost": 5, "colour": "red"}), "colour"),
        (json!(["u", 5]), "body"),
    ] {
        let reply = app.report(body.clone()).await;
        reply.assert_error(StatusCode::BAD_REQUEST, Some(field));
    }
    let reply = app.report(json!({"key": "u", "cost": 2_147_483_648_i64})).await;
    assert_eq!(reply.status, StatusCode::OK, "2^31 is accepted");
    let reply = app.check(json!({"key": "u", "id": "y".repeat(129)})).await;
    reply.assert_error(StatusCode::BAD_REQUEST, Some("id"));
}
