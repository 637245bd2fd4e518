//! `[keys] hash`: with hashing on, a secret-looking key never reaches the
//! logs, Redis's key names, `/metrics` or `/admin/stats`; operators still
//! inspect, reset, block and override by the raw key.

use std::process::Command;

use serde_json::{json, Value};

use crate::common::{standalone_toml, unique_prefix};
use ratelimiter_testkit::redis::RedisServer;
use ratelimiter_testkit::service::Service;

const SECRET: &str = "sk-live-4f9a1c0ffee2b7d3";
const TOKEN: &str = "secrets-admin-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hashed_key_is_nowhere_and_admin_works_by_the_raw_key() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("hmac");
    std::fs::write(&secret_file, "a-long-enough-hmac-secret\n").unwrap();
    let prefix = unique_prefix("secrets");
    let service = Service::start(&format!(
        r#"
[log]
level = "info"
[admin]
token = "{TOKEN}"
[keys]
hash = "hmac-sha256"
hmac_secret_file = "{}"
[store]
backend = "redis"
[store.redis]
{}
key_prefix = "{prefix}"
[defaults]
algorithm = "fixed_window"
limit = 2
window = "1h"
[[rules]]
endpoint = "POST /other"
algorithm = "fixed_window"
limit = 5
window = "1h"
"#,
        secret_file.display(),
        standalone_toml(&server)
    ));
    let client = reqwest::Client::new();
    let check = |endpoint: Option<&str>| {
        let mut body = json!({"key": SECRET});
        if let Some(endpoint) = endpoint {
            body["endpoint"] = endpoint.into();
        }
        client.post(service.url("/check")).json(&body).send()
    };
    let admin = |method: reqwest::Method, path: &str| {
        client
            .request(method, service.url(path))
            .header("authorization", format!("Bearer {TOKEN}"))
    };
    // Allowed twice, then denied (and logged).
    for expected in [200, 200, 429, 429] {
        assert_eq!(check(None).await.unwrap().status(), expected);
    }

    // Inspect and reset by the raw key.
    let inspect: Value = admin(reqwest::Method::GET, &format!("/admin/keys?key={SECRET}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(inspect["remaining"], 0, "{inspect}");
    let reset = admin(reqwest::Method::DELETE, &format!("/admin/keys?key={SECRET}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    assert_eq!(check(None).await.unwrap().status(), 200, "reset by the raw key");

    // An override by the raw key applies.
    let set = admin(reqwest::Method::PUT, "/admin/overrides")
        .json(&json!({"endpoint": "POST /other", "key": SECRET, "limit": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200, "{}", set.text().await.unwrap());
    assert_eq!(check(Some("POST /other")).await.unwrap().status(), 200);
    assert_eq!(
        check(Some("POST /other")).await.unwrap().status(),
        429,
        "the override's limit of 1"
    );

    // Blocking by the raw key applies.
    let block = admin(reqwest::Method::PUT, "/admin/lists/block")
        .json(&json!({"entry": SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(block.status(), 200);
    assert_eq!(check(None).await.unwrap().status(), 403);

    // Nowhere: Redis's key names and values, /metrics, /admin/stats, logs.
    let keys = Command::new("redis-cli")
        .args(["-u", &server.url(), "--scan", "--pattern", "*"])
        .output()
        .unwrap();
    let keys = String::from_utf8_lossy(&keys.stdout).into_owned();
    assert!(keys.contains(&prefix), "the counters are in Redis: {keys}");
    assert!(!keys.contains(SECRET), "{keys}");
    let stored = Command::new("redis-cli")
        .args([
            "-u",
            &server.url(),
            "--no-raw",
            "HGETALL",
            &format!("{prefix}:{{admin}}:block"),
        ])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&stored.stdout).contains(SECRET));
    let metrics = client
        .get(service.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains(SECRET));
    let stats = admin(reqwest::Method::GET, "/admin/stats")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(stats.contains("limited"), "{stats}");
    assert!(!stats.contains(SECRET), "{stats}");
    let log = service.log_lines().join("\n");
    assert!(log.contains("check denied"), "the denial was logged");
    assert!(!log.contains(SECRET), "{log}");
    // The log names the key by its fingerprint.
    let fingerprint = ratelimiter::limiter::hashing::fingerprint(SECRET);
    assert!(log.contains(&fingerprint), "{fingerprint} in\n{log}");
}
