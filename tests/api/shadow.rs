//! Shadow mode: a rule evaluated exactly as if enforced, whose checks over
//! the limit are allowed (`reason: "shadow_limited"`) and consume nothing;
//! set in the configuration, and set or cleared at run time by overrides.

use axum::http::StatusCode;
use serde_json::json;

use crate::admin::TOKEN;
use crate::helpers::app;

fn rules() -> String {
    format!(
        r#"
        [admin]
        token = "{TOKEN}"
        [defaults]
        limit = 100
        window = "1h"
        [[rules]]
        endpoint = "POST /new"
        algorithm = "fixed_window"
        limit = 2
        window = "1h"
        shadow = true
        [[rules]]
        endpoint = "POST /old"
        algorithm = "token_bucket"
        limit = 2
        window = "1h"
        "#
    )
}

#[tokio::test]
async fn a_shadow_rule_allows_what_it_would_deny_and_consumes_nothing_for_it() {
    let app = app(&rules());
    let check = |cost: u64| json!({"key": "k", "endpoint": "POST /new", "cost": cost});
    let first = app.check(check(1)).await;
    assert_eq!(
        (first.status, &first.body["reason"]),
        (StatusCode::OK, &json!("allowed"))
    );
    // Two more do not fit: allowed in shadow, and consume nothing...
    let over = app.check(check(2)).await;
    assert_eq!(over.status, StatusCode::OK, "{}", over.body);
    assert_eq!(
        (&over.body["allowed"], &over.body["reason"]),
        (&json!(true), &json!("shadow_limited"))
    );
    // ...with the real numbers, and nothing to retry.
    assert_eq!(over.header("x-ratelimit-remaining"), Some("1"));
    assert!(over.body["retry_after_ms"].as_u64().unwrap() > 0);
    assert_eq!(over.header("retry-after"), None);
    // The one unit left is still there.
    let last = app.check(check(1)).await;
    assert_eq!(
        (&last.body["reason"], &last.body["remaining"]),
        (&json!("allowed"), &json!(0))
    );
    for _ in 0..2 {
        assert_eq!(app.check(check(1)).await.body["reason"], "shadow_limited");
    }
    let scrape = crate::observability::scrape(&app).await;
    assert!(
        scrape.contains(
            r#"rate_limit_requests_total{decision="shadow_limited",protocol="http",rule="POST /new",tier="default"} 3"#
        ),
        "{scrape}"
    );
    assert!(
        !scrape.contains(r#"rate_limit_exceeded_total{rule="POST /new""#),
        "not denied: {scrape}"
    );
    let stats = app.admin("GET", "/admin/stats", None).await;
    assert_eq!(stats.body["totals"]["shadow_limited"], 3, "{}", stats.body);
    assert_eq!(stats.body["totals"]["limited"], 0);
    assert_eq!(stats.body["top_limited"][0]["key"], "k", "the keys it would limit");
}

#[tokio::test]
async fn overrides_set_and_clear_shadow_mode_at_run_time() {
    let app = app(&rules());
    let old = json!({"key": "k", "endpoint": "POST /old"});
    let new = json!({"key": "k", "endpoint": "POST /new"});
    // Enforced: the third is denied.
    for _ in 0..2 {
        assert_eq!(app.check(old.clone()).await.status, StatusCode::OK);
    }
    assert_eq!(app.check(old.clone()).await.status, StatusCode::TOO_MANY_REQUESTS);
    // Shadow set on the enforced rule: allowed, as shadow_limited.
    let set = app
        .admin(
            "PUT",
            "/admin/overrides",
            Some(json!({"endpoint": "POST /old", "shadow": true})),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(set.body["override"]["shadow"], true);
    let r = app.check(old.clone()).await;
    assert_eq!(
        (r.status, &r.body["reason"]),
        (StatusCode::OK, &json!("shadow_limited"))
    );
    // The limit itself is the configured one: a shadow-only override keeps it.
    assert_eq!(r.body["limit"], 2);

    // Cleared for one key of the shadow rule: enforced for it alone.
    for _ in 0..2 {
        assert_eq!(app.check(new.clone()).await.status, StatusCode::OK);
    }
    let clear = app
        .admin(
            "PUT",
            "/admin/overrides",
            Some(json!({"endpoint": "POST /new", "key": "k", "shadow": false})),
        )
        .await;
    assert_eq!(clear.status, StatusCode::OK, "{}", clear.body);
    assert_eq!(app.check(new.clone()).await.status, StatusCode::TOO_MANY_REQUESTS);
    let other = app.check(json!({"key": "j", "endpoint": "POST /new"})).await;
    assert_eq!(other.body["reason"], "allowed");

    // A more specific limit override and a rule-wide shadow override both hold.
    let limit = app
        .admin(
            "PUT",
            "/admin/overrides",
            Some(json!({"endpoint": "POST /old", "key": "k2", "limit": 1})),
        )
        .await;
    assert_eq!(limit.status, StatusCode::OK, "{}", limit.body);
    let k2 = json!({"key": "k2", "endpoint": "POST /old"});
    assert_eq!(app.check(k2.clone()).await.body["limit"], 1);
    assert_eq!(app.check(k2.clone()).await.body["reason"], "shadow_limited");

    // Deleting the shadow override enforces the rule again.
    let deleted = app.admin("DELETE", "/admin/overrides?endpoint=POST%20/old", None).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert_eq!(app.check(old).await.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn shadow_must_be_a_boolean() {
    let app = app(&rules());
    let r = app
        .admin(
            "PUT",
            "/admin/overrides",
            Some(json!({"endpoint": "POST /old", "shadow": "yes"})),
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, Some("shadow"));
    let r = app
        .admin("PUT", "/admin/overrides", Some(json!({"endpoint": "POST /old"})))
        .await;
    let message = r.assert_error(StatusCode::BAD_REQUEST, Some("limit"));
    assert!(message.contains("shadow"), "{message}");
}
