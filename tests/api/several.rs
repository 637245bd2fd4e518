//! Rules with several limits: all or nothing, scopes, the binding limit,
//! every limit in the body and the headers, peeks and shadow mode.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::admin::TOKEN;
use crate::helpers::app;

/// A user's own 3 per hour, and the organisation's 5 per hour shared by
/// its users.
fn rules() -> String {
    format!(
        r#"
        [admin]
        token = "{TOKEN}"
        [forward]
        key_headers = ["x-api-key"]
        scope_headers = {{ org = "x-org-id" }}
        [defaults]
        limit = 100
        window = "1h"
        [[rules]]
        endpoint = "POST /chat"
        limits = [
          {{ name = "user", algorithm = "fixed_window", limit = 3, window = "1h" }},
          {{ name = "org", by = "org", algorithm = "token_bucket", limit = 5, window = "1h" }},
        ]
        [[rules]]
        endpoint = "POST /shadow"
        shadow = true
        limits = [
          {{ name = "user", algorithm = "fixed_window", limit = 1, window = "1h" }},
          {{ name = "org", by = "org", algorithm = "fixed_window", limit = 10, window = "1h" }},
        ]
        "#
    )
}

fn chat(user: &str, org: &str) -> Value {
    json!({"key": user, "endpoint": "POST /chat", "scopes": {"org": org}})
}

fn limit<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["limits"]
        .as_array()
        .and_then(|limits| limits.iter().find(|l| l["name"] == name))
        .unwrap_or_else(|| panic!("no limit {name} in {body}"))
}

#[tokio::test]
async fn a_check_counts_against_every_limit_or_none() {
    let app = app(&rules());
    // User a: three allowed; the fourth is denied by the user's own limit.
    for _ in 0..3 {
        assert_eq!(app.check(chat("a", "acme")).await.status, StatusCode::OK);
    }
    let denied = app.check(chat("a", "acme")).await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS, "{}", denied.body);
    assert_eq!(denied.body["limit_name"], "user");
    assert_eq!(limit(&denied.body, "user")["allowed"], false);
    assert_eq!(limit(&denied.body, "org")["allowed"], true);
    assert_eq!(
        limit(&denied.body, "org")["remaining"],
        2,
        "the denied check took nothing from the org"
    );
    // User b: two allowed; the third is denied by the org, and consumes
    // nothing of b's own limit.
    for _ in 0..2 {
        assert_eq!(app.check(chat("b", "acme")).await.status, StatusCode::OK);
    }
    let denied = app.check(chat("b", "acme")).await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(denied.body["limit_name"], "org");
    assert_eq!(limit(&denied.body, "user")["remaining"], 1, "{}", denied.body);
    assert!(denied.body["retry_after_ms"].as_u64().unwrap() > 0);
    // Another organisation is not affected.
    let other = app.check(chat("a", "globex")).await;
    assert_eq!(other.status, StatusCode::TOO_MANY_REQUESTS, "user a is still out");
    let fresh = app.check(chat("c", "globex")).await;
    assert_eq!(fresh.status, StatusCode::OK);
    assert_eq!(limit(&fresh.body, "org")["remaining"], 4);
}

#[tokio::test]
async fn the_answer_is_the_binding_limit_and_lists_every_limit() {
    let app = app(&rules());
    let r = app.check(chat("a", "acme")).await;
    assert_eq!(r.status, StatusCode::OK);
    // Allowed: the limit with the fewest remaining (user: 2, org: 4).
    assert_eq!(r.body["limit_name"], "user");
    assert_eq!((&r.body["limit"], &r.body["remaining"]), (&json!(3), &json!(2)));
    assert_eq!(r.body["algorithm"], "fixed_window");
    let names: Vec<&str> = r.body["limits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["user", "org"], "configuration order");
    assert_eq!(
        limit(&r.body, "org"),
        &json!({"name": "org", "by": "org", "algorithm": "token_bucket", "limit": 5, "remaining": 4,
                "reset_after_ms": 720_000, "retry_after_ms": 0, "allowed": true})
    );
    assert_eq!(r.header("x-ratelimit-remaining"), Some("2"));
    assert_eq!(
        r.header("ratelimit-policy"),
        Some(r#""POST /chat/user";q=3;w=3600, "POST /chat/org";q=5;w=3600"#)
    );
    let state = r.header("ratelimit").unwrap();
    assert!(
        state.starts_with(r#""POST /chat/user";r=2;t="#),
        "binding first: {state}"
    );
    assert!(state.contains(r#", "POST /chat/org";r=4;t=720"#), "{state}");
}

#[tokio::test]
async fn scopes_are_required_where_counted_and_checked_like_keys() {
    let app = app(&rules());
    let missing = app.check(json!({"key": "a", "endpoint": "POST /chat"})).await;
    let message = missing.assert_error(StatusCode::BAD_REQUEST, Some("scopes.org"));
    assert!(message.contains("org"), "{message}");
    let cases = [
        (json!("acme"), "scopes"),
        (json!({"org": 7}), "scopes.org"),
        (json!({"org": ""}), "scopes.org"),
        (json!({"org": "x".repeat(300)}), "scopes.org"),
        (
            json!((0..9)
                .map(|i| (format!("s{i}"), json!("v")))
                .collect::<serde_json::Map<_, _>>()),
            "scopes",
        ),
    ];
    for (scopes, field) in cases {
        let r = app
            .check(json!({"key": "a", "endpoint": "POST /chat", "scopes": scopes}))
            .await;
        r.assert_error(StatusCode::BAD_REQUEST, Some(field));
    }
    // Unknown scopes are ignored; rules of one limit need none.
    let r = app.check(json!({"key": "a", "scopes": {"team": "t"}})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.get("limits").is_none(), "a rule of one limit answers as before");
}

#[tokio::test]
async fn a_peek_reads_every_limit_and_a_shadow_rule_never_refuses() {
    let app = app(&rules());
    app.check(chat("a", "acme")).await;
    let mut peek = chat("a", "acme");
    peek["cost"] = json!(0);
    for _ in 0..3 {
        let r = app.check(peek.clone()).await;
        assert_eq!((r.status, &r.body["reason"]), (StatusCode::OK, &json!("peek")));
        assert_eq!(limit(&r.body, "user")["remaining"], 2);
        assert_eq!(limit(&r.body, "org")["remaining"], 4);
    }
    let shadow = |user: &str| json!({"key": user, "endpoint": "POST /shadow", "scopes": {"org": "acme"}});
    assert_eq!(app.check(shadow("a")).await.body["reason"], "allowed");
    let over = app.check(shadow("a")).await;
    assert_eq!(over.status, StatusCode::OK);
    assert_eq!(
        (&over.body["allowed"], &over.body["reason"]),
        (&json!(true), &json!("shadow_limited"))
    );
    assert_eq!(over.body["limit_name"], "user");
    // The shadow-limited check took nothing from the org.
    let next = app.check(shadow("b")).await;
    assert_eq!(limit(&next.body, "org")["remaining"], 8, "{}", next.body);
}

#[tokio::test]
async fn a_cost_must_fit_the_smallest_limit() {
    let app = app(&rules());
    let mut big = chat("a", "acme");
    big["cost"] = json!(4);
    let message = app.check(big).await.assert_error(StatusCode::BAD_REQUEST, Some("cost"));
    assert!(message.contains("limit 3"), "{message}");
}

#[tokio::test]
async fn the_rules_list_every_limit_and_the_partition() {
    let app = app(&rules());
    let rules = app.get("/rules").await;
    let chat = rules.body["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "POST /chat")
        .unwrap();
    assert_eq!(chat["partition"], "org");
    assert_eq!(chat["named_limits"][1]["name"], "org");
    assert_eq!(chat["named_limits"][1]["by"], "org");
    assert_eq!(chat["named_limits"][1]["tiers"][0]["limit"], 5);
}

#[tokio::test]
async fn an_operator_reads_and_resets_every_limit_or_one() {
    let app = app(&rules());
    for _ in 0..3 {
        assert_eq!(app.check(chat("a", "acme")).await.status, StatusCode::OK);
    }
    assert_eq!(app.check(chat("b", "acme")).await.status, StatusCode::OK);
    let keys = "/admin/keys?key=a&endpoint=POST%20/chat&scopes.org=acme";
    let read = app.admin("GET", keys, None).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.body["limit_name"], "user", "{}", read.body);
    assert_eq!(
        (read.body["remaining"].as_u64(), read.body["limit"].as_u64()),
        (Some(0), Some(3))
    );
    assert_eq!(limit(&read.body, "user")["remaining"], 0);
    assert_eq!(limit(&read.body, "user")["value"], "a");
    assert_eq!(limit(&read.body, "org")["remaining"], 1, "a's three and b's one");
    assert_eq!(limit(&read.body, "org")["value"], "acme");
    assert_eq!(limit(&read.body, "org")["window"], "1h");
    assert_eq!(
        app.admin("GET", keys, None).await.body,
        read.body,
        "reading consumes nothing"
    );

    // A read or reset needs every scope the rule counts by.
    let bare = app.admin("GET", "/admin/keys?key=a&endpoint=POST%20/chat", None).await;
    bare.assert_error(StatusCode::BAD_REQUEST, Some("scopes.org"));
    let bare = app
        .admin("DELETE", "/admin/keys?key=a&endpoint=POST%20/chat", None)
        .await;
    bare.assert_error(StatusCode::BAD_REQUEST, Some("scopes.org"));
    let unknown = app.admin("DELETE", &format!("{keys}&name=daily"), None).await;
    assert!(unknown
        .assert_error(StatusCode::BAD_REQUEST, Some("name"))
        .contains("\"user\", \"org\""));

    // One limit: the user's own counter starts afresh, the org's keeps its count.
    let reset = app.admin("DELETE", &format!("{keys}&name=user"), None).await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.body);
    assert_eq!(reset.body["limits"], json!(["user"]));
    let read = app.admin("GET", keys, None).await;
    assert_eq!(limit(&read.body, "user")["remaining"], 3);
    assert_eq!(limit(&read.body, "org")["remaining"], 1);

    // Every limit.
    let reset = app.admin("DELETE", keys, None).await;
    assert_eq!(reset.body["limits"], json!(["user", "org"]));
    let read = app.admin("GET", keys, None).await;
    assert_eq!(limit(&read.body, "org")["remaining"], 5);
    assert_eq!(read.body["remaining"], 3, "binding: the fewest remaining");

    // A rule of one limit is reset by its own name, or by no name.
    let single = app.admin("DELETE", "/admin/keys?key=a&name=default", None).await;
    assert_eq!(single.body["limits"], json!(["default"]), "{}", single.body);
    let single = app.admin("DELETE", "/admin/keys?key=a&name=user", None).await;
    single.assert_error(StatusCode::BAD_REQUEST, Some("name"));
}

#[tokio::test]
async fn a_gateway_names_scopes_in_headers() {
    use axum::body::Body;
    use axum::http::Request;
    let app = app(&rules());
    let forwarded = |user: &str, org: Option<&str>| {
        let mut request = Request::get("/check/forward")
            .header("x-api-key", user)
            .header("x-original-method", "POST")
            .header("x-original-uri", "/chat");
        if let Some(org) = org {
            request = request.header("x-org-id", org);
        }
        request.body(Body::empty()).unwrap()
    };
    let r = app.send(forwarded("u1", Some("acme"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(limit(&r.body, "org")["remaining"], 4);
    // The same org through /check draws from the same counter.
    let r = app
        .check(json!({"key": "x-api-key:u2", "endpoint": "POST /chat", "scopes": {"org": "acme"}}))
        .await;
    assert_eq!(limit(&r.body, "org")["remaining"], 3);
    let missing = app.send(forwarded("u1", None)).await;
    missing.assert_error(StatusCode::BAD_REQUEST, Some("scopes.org"));
}

#[tokio::test]
async fn a_batch_decides_checks_of_several_limits_each_all_or_nothing() {
    let app = app(&rules());
    let r = app
        .batch(json!({"checks": [chat("a", "acme"), chat("b", "acme"), {"key": "c", "endpoint": "POST /chat"}]}))
        .await;
    // The third lacks its scope: the whole batch is refused, nothing consumed.
    r.assert_error(StatusCode::BAD_REQUEST, Some("checks[2].scopes.org"));
    let r = app
        .batch(json!({"checks": [chat("a", "acme"), chat("b", "acme")]}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let results = r.body["results"].as_array().unwrap();
    assert_eq!(limit(&results[0], "org")["allowed"], true);
    assert_eq!(limit(&results[1], "user")["remaining"], 2);
    // Two of the org's five are spent, and nothing by the refused batch.
    let next = app.check(chat("c", "acme")).await;
    assert_eq!(limit(&next.body, "org")["remaining"], 2);
}
