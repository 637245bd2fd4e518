//! `GET /openapi.json`: the document parses, every `$ref` in it resolves, and
//! it lists exactly the routes the routers serve — each listed route is
//! served, and every other method on a listed path is a 405.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::helpers::{app, TestApp};

const TOKEN: &str = "openapi-test-admin-token-0123";

/// Every route of the public and admin routers, as the document writes it.
/// The one list of routes the tests keep: add a route here and in
/// `src/http/openapi.json` together.
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/check"),
    ("POST", "/check/batch"),
    ("POST", "/report"),
    ("POST", "/release"),
    ("POST", "/renew"),
    ("GET", "/check/forward"),
    ("POST", "/check/forward"),
    ("PUT", "/check/forward"),
    ("DELETE", "/check/forward"),
    ("PATCH", "/check/forward"),
    ("OPTIONS", "/check/forward"),
    ("HEAD", "/check/forward"),
    ("TRACE", "/check/forward"),
    ("GET", "/health"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/metrics"),
    ("GET", "/"),
    ("GET", "/rules"),
    ("GET", "/openapi.json"),
    ("GET", "/admin/rules"),
    ("GET", "/admin/overrides"),
    ("PUT", "/admin/overrides"),
    ("DELETE", "/admin/overrides"),
    ("GET", "/admin/lists/{list}"),
    ("PUT", "/admin/lists/{list}"),
    ("DELETE", "/admin/lists/{list}"),
    ("GET", "/admin/keys"),
    ("DELETE", "/admin/keys"),
    ("GET", "/admin/stats"),
    ("POST", "/admin/reload"),
];

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE"];

fn test_app() -> TestApp {
    app(&format!("[admin]\ntoken = \"{TOKEN}\"\n"))
}

/// Sends `method path` with the admin token (and `{}` as a JSON body where
/// one is expected); returns the status and the body, which need not be JSON.
async fn probe(app: &TestApp, method: &str, path: &str) -> (StatusCode, Vec<u8>) {
    let mut request = Request::builder()
        .method(method)
        .uri(path.replace("{list}", "allow"))
        .header("authorization", format!("Bearer {TOKEN}"));
    let body = if matches!(method, "POST" | "PUT" | "PATCH") {
        request = request.header("content-type", "application/json");
        Body::from("{}")
    } else {
        Body::empty()
    };
    let response = app
        .router
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .expect("infallible");
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, bytes.to_vec())
}

async fn document(app: &TestApp) -> Value {
    let (status, bytes) = probe(app, "GET", "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_slice(&bytes).expect("the document is JSON")
}

fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (name, v) in map {
                match (name.as_str(), v) {
                    ("$ref", Value::String(target)) => out.push(target),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_parses_and_lists_exactly_the_routes() {
    let app = test_app();
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.0.3");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("a path item")
                .keys()
                .filter(|k| METHODS.contains(&k.to_uppercase().as_str()))
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
    assert_eq!(
        documented.difference(&served).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented but not in ROUTES"
    );
    assert_eq!(
        served.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "in ROUTES but not documented"
    );

    let mut targets = Vec::new();
    refs(&doc, &mut targets);
    assert!(targets.len() > 50, "the document uses components");
    for target in targets {
        let pointer = target.strip_prefix('#').expect("a local reference");
        assert!(doc.pointer(pointer).is_some(), "{target} does not resolve");
    }

    // Admin operations need the bearer token and say what happens without it.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let admin = path.starts_with("/admin");
            assert_eq!(
                operation.get("security").is_some(),
                admin,
                "{method} {path}: security only on /admin"
            );
            if admin {
                assert!(operation["responses"]["401"].is_object(), "{method} {path}: 401");
            }
            if let Some(body) = operation.get("requestBody") {
                let schema = &body["content"]["application/json"]["schema"]["$ref"];
                let schema = doc
                    .pointer(schema.as_str().expect("a schema reference").trim_start_matches('#'))
                    .unwrap();
                assert_eq!(schema["additionalProperties"], false, "{method} {path}");
            }
        }
    }
    let error = &doc["components"]["schemas"]["Error"];
    assert_eq!(error["required"], serde_json::json!(["error", "field"]));
    assert_eq!(doc["components"]["securitySchemes"]["bearerAuth"]["scheme"], "bearer");
}

#[tokio::test]
async fn every_listed_route_is_served_and_other_methods_are_405() {
    let app = test_app();
    for (method, path) in ROUTES {
        let (status, body) = probe(&app, method, path).await;
        let unrouted = status == StatusCode::NOT_FOUND && String::from_utf8_lossy(&body).contains("no route for");
        assert!(
            !unrouted && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} is not served: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    let paths: BTreeSet<&str> = ROUTES.iter().map(|(_, p)| *p).collect();
    for path in paths {
        for method in METHODS {
            // HEAD is served wherever GET is (as HTTP says it may be).
            if ROUTES.contains(&(method, path)) || (*method == "HEAD" && ROUTES.contains(&("GET", path))) {
                continue;
            }
            let (status, body) = probe(&app, method, path).await;
            assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is served but not documented: {}",
                String::from_utf8_lossy(&body)
            );
            if *method != "HEAD" {
                // (An answer to HEAD has no body.)
                let error: Value = serde_json::from_slice(&body).expect("a JSON 405");
                assert!(error["error"].is_string() && error["field"].is_null(), "{error}");
            }
        }
    }
}

#[tokio::test]
async fn an_admin_listener_of_its_own_answers_json_too() {
    let service = ratelimiter_testkit::service::Service::start(&format!(
        "[admin]\ntoken = \"{TOKEN}\"\nlisten = \"127.0.0.1:0\"\n"
    ));
    let admin = service.admin_addr().expect("the admin listener");
    let client = reqwest::Client::new();
    let cases = [
        ("GET", "/admin/rules", StatusCode::OK),
        ("GET", "/admin/nope", StatusCode::NOT_FOUND),
        ("GET", "/check", StatusCode::NOT_FOUND),
        ("PATCH", "/admin/keys", StatusCode::METHOD_NOT_ALLOWED),
        ("GET", "/admin/lists/%FF", StatusCode::NOT_FOUND),
    ];
    for (method, path, expected) in cases {
        let response = client
            .request(method.parse().unwrap(), format!("http://{admin}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), expected.as_u16(), "{method} {path}");
        let body: Value = response.json().await.expect("a JSON body");
        if expected != StatusCode::OK {
            assert!(
                body["error"].is_string() && body.get("field").is_some(),
                "{method} {path}: {body}"
            );
        }
    }
    // The public listener does not serve /admin at all.
    let response = client
        .get(service.url("/admin/rules"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}
