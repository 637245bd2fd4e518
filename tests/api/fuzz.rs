//! Hostile input through the real router (`oneshot`): arbitrary JSON values
//! (nested, huge and fractional numbers, long strings, NUL bytes, any
//! Unicode), arbitrary bytes including invalid UTF-8, huge keys, deep
//! nesting, odd content types and percent-encoded junk in paths and queries.
//!
//! Whatever arrives, the answer is one of the documented statuses — never a
//! 5xx or a panic — and every error is JSON `{"error": string, "field":
//! string|null}`. Case counts are bounded (`PROPTEST_CASES` overrides them),
//! so each property runs in seconds.

use std::fmt::Write as _;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value};
use tower::ServiceExt;

use crate::helpers::{app, TestApp};

const TOKEN: &str = "fuzz-admin-token-0123456789";

const RULES: &str = r#"
    [admin]
    token = "fuzz-admin-token-0123456789"
    [defaults]
    tier = "free"
    limit = 3
    window = "1h"
    [tiers]
    pro = { limit = 10 }
    [[rules]]
    endpoint = "POST /login"
    algorithm = "sliding_window_log"
    limit = 2
    window = "1m"
    [[rules]]
    endpoint = "POST /jobs"
    algorithm = "concurrency"
    limit = 2
"#;

const CHECK_FIELDS: &[&str] = &["key", "endpoint", "tier", "cost", "client_ip", "id"];
const LEASE_FIELDS: &[&str] = &["lease"];
const OVERRIDE_FIELDS: &[&str] = &["endpoint", "tier", "key", "algorithm", "limit", "window", "expires_in"];
const LIST_FIELDS: &[&str] = &["entry", "expires_in", "comment"];

fn config(cases: u32) -> Config {
    let default = Config::default();
    Config {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            default.cases
        } else {
            cases
        },
        failure_persistence: None,
        ..default
    }
}

/// Values a caller might plausibly send, valid or nearly.
fn plausible() -> impl Strategy<Value = String> {
    select(vec![
        "user:1",
        "user:2",
        "",
        " ",
        "free",
        "pro",
        "gold",
        "POST /login",
        "default",
        "10.0.0.1",
        "::1",
        "::ffff:10.0.0.1",
        "203.0.113.0/24",
        "10.0.0.1/8",
        "2001:db8::/32",
        "1h",
        "0s",
        "1s",
        "500ms",
        "1 fortnight",
        "-1s",
        "token_bucket",
        "gcra",
        "fixed_window",
        "leaky_bucket",
        "\u{0}",
        "a\u{0}b",
        "{user}",
        "%00",
        "🙂",
        "\u{feff}",
        "\u{202e}evil",
    ])
    .prop_map(str::to_owned)
}

/// Strings: plausible ones, any characters (NUL and controls included),
/// long ones, and ones around the 256-byte key limit.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        5 => plausible(),
        3 => prop::collection::vec(any::<char>(), 0..40).prop_map(|chars| chars.into_iter().collect()),
        2 => any::<String>(),
        1 => (200_usize..320).prop_map(|n| "k".repeat(n)),
        1 => prop::collection::vec(any::<char>(), 200..2000).prop_map(|chars| chars.into_iter().collect()),
        1 => (1_usize..300).prop_map(|n| "\u{0}".repeat(n)),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-5_i64..20).prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        select(vec![
            0.5,
            1.0,
            2.0,
            -0.0,
            1e30,
            9_007_199_254_740_993.0,
            f64::MAX,
            f64::MIN_POSITIVE
        ])
        .prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object over `fields` (and sometimes others) with any value in
/// each; `required` is there nine times in ten.
fn object(fields: &'static [&'static str], required: Option<&'static str>) -> impl Strategy<Value = Value> {
    let name = prop_oneof![
        6 => select(fields).prop_map(str::to_owned),
        1 => text(),
    ];
    let value = || {
        prop_oneof![
            4 => text().prop_map(Value::String),
            2 => number(),
            1 => json_value(),
        ]
    };
    (
        prop::option::weighted(0.9, value()),
        prop::collection::btree_map(name, value(), 0..5),
    )
        .prop_map(move |(first, rest)| {
            let mut map: Map<String, Value> = rest.into_iter().collect();
            if let (Some(field), Some(value)) = (required, first) {
                map.insert(field.to_owned(), value);
            }
            Value::Object(map)
        })
}

/// Bodies as bytes: well-formed objects over `fields`, any JSON value, raw
/// bytes, invalid UTF-8 inside a string, number literals no type holds,
/// deep nesting, and huge keys.
fn body(fields: &'static [&'static str], required: Option<&'static str>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        12 => object(fields, required).prop_map(|v| v.to_string().into_bytes()),
        2 => json_value().prop_map(|v| v.to_string().into_bytes()),
        2 => prop::collection::vec(any::<u8>(), 0..4096),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(|junk| {
            let mut bytes = br#"{"key": ""#.to_vec();
            bytes.extend(junk);
            bytes.extend(br#"", "entry": "x"}"#);
            bytes
        }),
        1 => ("[0-9]{1,400}", select(vec!["", "e999999999", ".5", "e-999", "0000"]), select(fields))
            .prop_map(|(digits, tail, field)| format!(r#"{{"key": "k", "{field}": -{digits}{tail}}}"#).into_bytes()),
        1 => (1_usize..5_000, select(vec!["[", "{\"key\":"])).prop_map(|(depth, open)| {
            let close = if open == "[" { "]" } else { "}" };
            format!("{}1{}", open.repeat(depth), close.repeat(depth)).into_bytes()
        }),
        1 => (0_usize..20_000).prop_map(|n| format!(r#"{{"key": "{}", "entry": "{}"}}"#, "x".repeat(n), "y".repeat(n)).into_bytes()),
    ]
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        12 => Just(Some("application/json".to_owned())),
        1 => select(vec![
            "application/json; charset=utf-8", "application/problem+json", "APPLICATION/JSON",
            "text/plain", "application/x-www-form-urlencoded", "application/jsonx", "",
        ])
        .prop_map(|ct| Some(ct.to_owned())),
        1 => "[ -~]{0,40}".prop_map(Some),
        1 => Just(None),
    ]
}

struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

async fn send(app: &TestApp, request: Request<Body>) -> Answer {
    let response = app.router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes()
        .to_vec();
    Answer { status, body }
}

fn request(method: &str, uri: &str, content_type: Option<&str>, body: Vec<u8>) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {TOKEN}"));
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    request.body(Body::from(body)).expect("a valid request")
}

/// The status is one of `allowed`; the body is JSON, and for an error the
/// documented `{"error", "field"}`.
fn check_answer(answer: &Answer, allowed: &[u16], error_statuses: &[u16]) -> Result<Value, TestCaseError> {
    let text = String::from_utf8_lossy(&answer.body);
    prop_assert!(
        allowed.contains(&answer.status.as_u16()),
        "status {} is not one of {allowed:?}: {text}",
        answer.status
    );
    let json: Value =
        serde_json::from_slice(&answer.body).map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {text}")))?;
    if error_statuses.contains(&answer.status.as_u16()) {
        let object = json
            .as_object()
            .ok_or_else(|| TestCaseError::fail(format!("not an object: {text}")))?;
        prop_assert!(
            object.len() == 2
                && object
                    .get("error")
                    .and_then(Value::as_str)
                    .is_some_and(|e| !e.is_empty())
                && object.get("field").is_some_and(|f| f.is_null() || f.is_string()),
            "not an error body: {text}"
        );
    }
    Ok(json)
}

fn runner(cases: u32) -> (TestRunner, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (TestRunner::new(config(cases)), runtime)
}

#[test]
fn check_answers_every_body_with_a_documented_status() {
    let (mut runner, runtime) = runner(1000);
    let app = app(RULES);
    runner
        .run(
            &(body(CHECK_FIELDS, Some("key")), content_type()),
            |(body, content_type)| {
                let answer = runtime.block_on(send(&app, request("POST", "/check", content_type.as_deref(), body)));
                let json = check_answer(&answer, &[200, 400, 403, 413, 415, 429], &[400, 413, 415])?;
                if matches!(answer.status.as_u16(), 200 | 403 | 429) {
                    prop_assert!(json["allowed"].is_boolean() && json["limit"].is_u64(), "{json}");
                }
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn report_release_and_renew_answer_every_body_with_a_documented_status() {
    let (mut runner, runtime) = runner(1000);
    let app = app(RULES);
    let target = prop_oneof![
        (Just("/report"), body(CHECK_FIELDS, Some("cost"))),
        (select(vec!["/release", "/renew"]), body(LEASE_FIELDS, Some("lease"))),
    ];
    runner
        .run(&(target, content_type()), |((path, body), content_type)| {
            let answer = runtime.block_on(send(&app, request("POST", path, content_type.as_deref(), body)));
            let json = check_answer(&answer, &[200, 400, 404, 413, 415], &[400, 404, 413, 415])?;
            if answer.status.as_u16() == 200 && path == "/report" {
                prop_assert!(json["allowed"] == true && json["limit"].is_u64(), "{json}");
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn admin_puts_answer_every_body_with_a_documented_status() {
    let (mut runner, runtime) = runner(1000);
    let app = app(RULES);
    let target = prop_oneof![
        (Just("/admin/overrides"), body(OVERRIDE_FIELDS, Some("limit"))),
        (
            select(vec!["/admin/lists/allow", "/admin/lists/block"]),
            body(LIST_FIELDS, Some("entry"))
        ),
    ];
    runner
        .run(&(target, content_type()), |((path, body), content_type)| {
            let answer = runtime.block_on(send(&app, request("PUT", path, content_type.as_deref(), body)));
            check_answer(&answer, &[200, 400, 413, 415], &[400, 413, 415])?;
            Ok(())
        })
        .unwrap();
}

/// Every byte outside the unreserved set percent-encoded.
fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            write!(out, "%{b:02X}").unwrap();
        }
    }
    out
}

#[test]
fn admin_paths_and_queries_answer_junk_with_a_documented_status() {
    let (mut runner, runtime) = runner(600);
    let app = app(RULES);
    let junk = || {
        prop_oneof![
            3 => prop::collection::vec(any::<u8>(), 0..64),
            1 => select(vec!["allow", "block", "k", "10.0.0.0/8", "20", "0", "99999999999999999999"])
                .prop_map(|s| s.as_bytes().to_vec()),
            1 => (0_usize..2000).prop_map(|n| vec![b'k'; n]),
        ]
    };
    let case = (
        select(vec!["GET", "DELETE"]),
        select(vec![
            "/admin/lists/",
            "/admin/keys?key=",
            "/admin/stats?limit=",
            "/admin/overrides?key=",
        ]),
        junk(),
        select(vec!["", "entry", "key", "endpoint", "tier", "limit", "other"]),
        junk(),
    );
    runner
        .run(&case, |(method, prefix, first, name, second)| {
            let mut uri = format!("{prefix}{}", percent_encode(&first));
            let separator = if prefix.contains('?') { '&' } else { '?' };
            if !name.is_empty() {
                write!(uri, "{separator}{name}={}", percent_encode(&second)).unwrap();
            }
            let answer = runtime.block_on(send(&app, request(method, &uri, None, Vec::new())));
            check_answer(&answer, &[200, 400, 404, 405], &[400, 404, 405])?;
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn admin_bodies_over_the_cap_are_refused_like_check_bodies() {
    let app = app(RULES);
    let big = serde_json::json!({"entry": "k", "comment": "x".repeat(9000)}).to_string();
    for path in ["/admin/lists/block", "/admin/overrides"] {
        let answer = send(
            &app,
            request("PUT", path, Some("application/json"), big.clone().into_bytes()),
        )
        .await;
        let json = check_answer(&answer, &[413], &[413]).unwrap();
        assert_eq!(json["field"], "body", "{path}: {json}");
        assert!(json["error"].as_str().unwrap().contains("8192"), "{path}: {json}");
    }
}
