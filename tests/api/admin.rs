//! `/admin` through the real router: authentication, overrides, lists, key
//! inspection and reset, stats, and every kind of bad request.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{app, Reply, TestApp};

pub(crate) const TOKEN: &str = "test-admin-token-0123456789";

fn rules() -> String {
    format!(
        r#"
        [admin]
        token = "{TOKEN}"
        [defaults]
        tier = "free"
        limit = 2
        window = "1h"
        [tiers]
        pro = {{ limit = 20 }}
        [[rules]]
        endpoint = "GET /data"
        algorithm = "fixed_window"
        limit = 3
        window = "1h"
        "#
    )
}

impl TestApp {
    pub(crate) async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {TOKEN}"));
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let body = body.map_or(Body::empty(), |b| Body::from(b.to_string()));
        self.send(request.body(body).unwrap()).await
    }

    async fn allowed_in_a_row(&self, body: Value) -> usize {
        let mut n = 0;
        while n < 100 && self.check(body.clone()).await.status == StatusCode::OK {
            n += 1;
        }
        n
    }
}

#[tokio::test]
async fn without_a_token_the_admin_api_does_not_exist() {
    let app = app("");
    let r = app.admin("GET", "/admin/rules", None).await;
    r.assert_error(StatusCode::NOT_FOUND, None);
}

#[tokio::test]
async fn a_missing_token_is_401_and_a_wrong_one_403() {
    let app = app(&rules());
    let r = app.get("/admin/rules").await;
    r.assert_error(StatusCode::UNAUTHORIZED, Some("authorization"));
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"ratelimiter-admin\""));
    for value in [
        "Bearer wrong-token-0123456789",
        "Basic abc",
        &format!("Bearer {TOKEN}x"),
        "Bearer ",
    ] {
        let request = Request::get("/admin/rules")
            .header("authorization", value)
            .body(Body::empty())
            .unwrap();
        let r = app.send(request).await;
        assert!(
            r.status == StatusCode::FORBIDDEN || r.status == StatusCode::UNAUTHORIZED,
            "{value}: {}",
            r.status
        );
        assert!(!r.body.to_string().contains(TOKEN), "the token is never echoed");
    }
    assert_eq!(app.admin("GET", "/admin/rules", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_key_override_raises_one_key_until_deleted() {
    let app = app(&rules());
    let acme = json!({"key": "org:acme", "endpoint": "GET /data"});
    assert_eq!(app.allowed_in_a_row(acme.clone()).await, 3);

    let r = app
        .admin(
            "PUT",
            "/admin/overrides",
            Some(json!({"endpoint": "GET /data", "key": "org:acme", "limit": 10})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["replaced"], false);
    assert_eq!(r.body["override"]["active"], true);
    // The override applies from the next check; the counter carries on.
    assert_eq!(app.allowed_in_a_row(acme.clone()).await, 7);
    // Other keys keep the configured limit.
    assert_eq!(
        app.allowed_in_a_row(json!({"key": "org:other", "endpoint": "GET /data"}))
            .await,
        3
    );

    let listed = app.admin("GET", "/admin/overrides", None).await;
    assert_eq!(listed.body["overrides"].as_array().unwrap().len(), 1);
    assert_eq!(listed.body["shared"], false);

    let r = app
        .admin("DELETE", "/admin/overrides?endpoint=GET%20/data&key=org:acme", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .admin("DELETE", "/admin/overrides?endpoint=GET%20/data&key=org:acme", None)
        .await;
    r.assert_error(StatusCode::NOT_FOUND, None);
}

#[tokio::test]
async fn a_tier_override_and_its_expiry() {
    let app = app(&rules());
    let r = app
        .admin(
            "PUT",
            "/admin/overrides",
            Some(json!({"tier": "pro", "limit": 1, "expires_in": "10m"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(app.allowed_in_a_row(json!({"key": "a", "tier": "pro"})).await, 1);
    assert_eq!(
        app.allowed_in_a_row(json!({"key": "b"})).await,
        2,
        "the free tier is untouched"
    );
    // Replacing keeps one override per target.
    let r = app
        .admin(
            "PUT",
            "/admin/overrides",
            Some(json!({"tier": "pro", "limit": 2, "expires_in": "10m"})),
        )
        .await;
    assert_eq!(r.body["replaced"], true);
    assert_eq!(app.allowed_in_a_row(json!({"key": "c", "tier": "pro"})).await, 2);
    // After ten minutes the configured 20 applies again.
    app.advance(Duration::from_secs(600));
    let listed = app.admin("GET", "/admin/overrides", None).await;
    assert_eq!(listed.body["overrides"][0]["active"], false);
    assert_eq!(app.allowed_in_a_row(json!({"key": "d", "tier": "pro"})).await, 20);
}

#[tokio::test]
async fn bad_override_bodies_name_the_field() {
    let app = app(&rules());
    let cases = [
        (json!({"limit": 0}), "limit"),
        (json!({"limit": -5}), "limit"),
        (json!({"limit": "10"}), "limit"),
        (json!({"limit": 1.5}), "limit"),
        (json!({"endpoint": "GET /nope", "limit": 1}), "endpoint"),
        (json!({"tier": "gold", "limit": 1}), "tier"),
        (json!({"key": "k", "tier": "pro", "limit": 1}), "tier"),
        (json!({"key": "", "limit": 1}), "key"),
        (json!({"window": "soon"}), "window"),
        (json!({"window": "0s"}), "window"),
        (json!({"algorithm": "leaky"}), "algorithm"),
        (json!({}), "limit"),
        (json!({"limit": 1, "expires_in": "tomorrow"}), "expires_in"),
        (json!({"limit": 1, "expires_in": "10ms"}), "expires_in"),
        (json!({"limit": 1, "colour": "red"}), "colour"),
        (json!([1, 2]), "body"),
    ];
    for (body, field) in cases {
        let r = app.admin("PUT", "/admin/overrides", Some(body.clone())).await;
        r.assert_error(StatusCode::BAD_REQUEST, Some(field));
    }
    let request = Request::put("/admin/overrides")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "text/plain")
        .body(Body::from("{}"))
        .unwrap();
    app.send(request)
        .await
        .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("content-type"));
    let request = Request::put("/admin/overrides")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from("{"))
        .unwrap();
    app.send(request)
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("body"));
    let r = app
        .admin("DELETE", "/admin/overrides?endpoint=x&colour=red", None)
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, Some("colour"));
    assert_eq!(
        app.admin("GET", "/admin/overrides", None).await.body["overrides"],
        json!([]),
        "nothing was stored"
    );
}

#[tokio::test]
async fn block_and_allow_lists() {
    let app = app(&rules());
    let r = app
        .admin(
            "PUT",
            "/admin/lists/block",
            Some(json!({"entry": "user:evil", "comment": "abuse"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let blocked = app.check(json!({"key": "user:evil"})).await;
    assert_eq!(blocked.status, StatusCode::FORBIDDEN);
    assert_eq!(
        (blocked.body["allowed"].as_bool(), blocked.body["reason"].as_str()),
        (Some(false), Some("blocked"))
    );
    assert_eq!(blocked.header("retry-after"), None);

    // An allow-listed range: allowed without consuming.
    let r = app
        .admin("PUT", "/admin/lists/allow", Some(json!({"entry": "10.0.0.0/8"})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for _ in 0..10 {
        let r = app.check(json!({"key": "user:1", "client_ip": "10.2.3.4"})).await;
        assert_eq!(
            (r.status, r.body["reason"].as_str()),
            (StatusCode::OK, Some("allowlisted"))
        );
    }
    // The same key from elsewhere still has its whole quota.
    assert_eq!(
        app.allowed_in_a_row(json!({"key": "user:1", "client_ip": "192.0.2.1"}))
            .await,
        2
    );
    // An IP used as the key matches too, and IPv6 ranges work.
    app.admin(
        "PUT",
        "/admin/lists/block",
        Some(json!({"entry": "2001:db8::/32", "expires_in": "1m"})),
    )
    .await;
    assert_eq!(
        app.check(json!({"key": "2001:db8::1"})).await.status,
        StatusCode::FORBIDDEN
    );

    let listed = app.admin("GET", "/admin/lists/block", None).await;
    let entries: Vec<&str> = listed.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"].as_str().unwrap())
        .collect();
    assert_eq!(entries, ["2001:db8::/32", "user:evil"]);

    // Block entries expire.
    app.advance(Duration::from_secs(60));
    assert_eq!(app.check(json!({"key": "2001:db8::1"})).await.status, StatusCode::OK);

    let r = app.admin("DELETE", "/admin/lists/block?entry=user:evil", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(app.check(json!({"key": "user:evil"})).await.status, StatusCode::OK);
    app.admin("DELETE", "/admin/lists/block?entry=user:evil", None)
        .await
        .assert_error(StatusCode::NOT_FOUND, None);
}

#[tokio::test]
async fn bad_list_requests_name_the_field() {
    let app = app(&rules());
    app.admin("PUT", "/admin/lists/block", Some(json!({"entry": "10.0.0.1/8"})))
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("entry"));
    app.admin("PUT", "/admin/lists/block", Some(json!({})))
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("entry"));
    app.admin("PUT", "/admin/lists/block", Some(json!({"entry": "x", "ttl": 3})))
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("ttl"));
    app.admin("PUT", "/admin/lists/grey", Some(json!({"entry": "x"})))
        .await
        .assert_error(StatusCode::NOT_FOUND, None);
    app.admin("DELETE", "/admin/lists/allow", None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("entry"));
    app.check(json!({"key": "k", "client_ip": "not-an-ip"}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("client_ip"));
}

#[tokio::test]
async fn keys_can_be_inspected_without_consuming_and_reset() {
    let app = app(&rules());
    let data = json!({"key": "org:x", "endpoint": "GET /data"});
    app.check(data.clone()).await;
    for _ in 0..3 {
        let r = app
            .admin("GET", "/admin/keys?endpoint=GET%20/data&key=org:x", None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(
            (r.body["remaining"].as_u64(), r.body["limit"].as_u64()),
            (Some(2), Some(3))
        );
        assert_eq!(r.body["algorithm"], "fixed_window");
    }
    let r = app
        .admin("DELETE", "/admin/keys?endpoint=GET%20/data&key=org:x", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(app.allowed_in_a_row(data).await, 3);
    app.admin("GET", "/admin/keys?endpoint=GET%20/data", None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("key"));
    app.admin("GET", "/admin/keys?key=k&tier=gold", None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("tier"));
}

#[tokio::test]
async fn stats_count_decisions_and_the_most_limited_keys() {
    let app = app(&rules());
    for _ in 0..5 {
        app.check(json!({"key": "noisy"})).await;
    }
    app.check(json!({"key": "quiet"})).await;
    let r = app.admin("GET", "/admin/stats?limit=5", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["totals"]["allowed"], 3);
    assert_eq!(r.body["totals"]["limited"], 3);
    assert_eq!(r.body["top_limited"][0]["key"], "noisy");
    assert_eq!(r.body["top_limited"][0]["count"], 3);
    app.admin("GET", "/admin/stats?limit=0", None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, Some("limit"));
}

#[tokio::test]
async fn reload_without_a_file_is_a_conflict() {
    let app = app(&rules());
    app.admin("POST", "/admin/reload", None)
        .await
        .assert_error(StatusCode::CONFLICT, Some("rules"));
}
