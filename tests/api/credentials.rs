//! `/check/forward` keeps credential headers (`forward.hash_headers`,
//! `x-api-key` by default) as their SHA-256: the secret is in no
//! stats, while blocking and inspecting by `x-api-key:<secret>` work.

use axum::body::Body;
use axum::http::{Request, StatusCode};

use crate::admin::TOKEN;
use crate::helpers::app;

const SECRET: &str = "sk-live-0a1b2c3d4e5f";

#[tokio::test]
async fn a_forwarded_api_key_is_kept_hashed_and_admin_works_by_the_raw_one() {
    let app = app(&format!(
        "[admin]\ntoken = \"{TOKEN}\"\n[defaults]\nalgorithm = \"fixed_window\"\nlimit = 1\nwindow = \"1h\"\n"
    ));
    let forwarded = || {
        Request::get("/check/forward")
            .header("x-api-key", SECRET)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(app.send(forwarded()).await.status, StatusCode::OK);
    assert_eq!(app.send(forwarded()).await.status, StatusCode::TOO_MANY_REQUESTS);
    let stats = app.admin("GET", "/admin/stats", None).await;
    let text = stats.body.to_string();
    assert!(text.contains("x-api-key:sha256:"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
    // Inspect by the raw key; block by the raw key.
    let inspect = app
        .admin("GET", &format!("/admin/keys?key=x-api-key:{SECRET}"), None)
        .await;
    assert_eq!(inspect.body["remaining"], 0, "{}", inspect.body);
    let block = app
        .admin(
            "PUT",
            "/admin/lists/block",
            Some(serde_json::json!({"entry": format!("x-api-key:{SECRET}")})),
        )
        .await;
    assert_eq!(block.status, StatusCode::OK);
    assert!(!block.body.to_string().contains(SECRET), "{}", block.body);
    assert_eq!(app.send(forwarded()).await.status, StatusCode::FORBIDDEN);
}
