//! The real binary: started on a free port, driven over HTTP, stopped with
//! SIGTERM; and `check-config` on good and bad files.

use std::process::Command;

use serde_json::{json, Value};

use ratelimiter_testkit::service::{binary, Service};

fn shipped_config() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ratelimiter.toml")
}

#[tokio::test]
async fn the_binary_serves_checks_and_stops_on_sigterm() {
    let server = Service::start_with_file(&shipped_config());
    let client = reqwest::Client::new();

    let health: Value = client
        .get(server.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");

    // The shipped demo rules: GET /api/public allows 10 a minute.
    let check = json!({"key": "user:1", "endpoint": "GET /api/public"});
    for i in 0..10 {
        let response = client.post(server.url("/check")).json(&check).send().await.unwrap();
        assert_eq!(response.status(), 200, "request {i}");
        assert_eq!(response.headers()["x-ratelimit-limit"], "10");
    }
    let denied = client.post(server.url("/check")).json(&check).send().await.unwrap();
    assert_eq!(denied.status(), 429);
    assert!(denied.headers().contains_key("retry-after"));
    let body: Value = denied.json().await.unwrap();
    assert_eq!(
        (body["allowed"].as_bool(), body["rule"].as_str()),
        (Some(false), Some("GET /api/public"))
    );

    let bad = client
        .post(server.url("/check"))
        .body("{")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn check_config_accepts_the_shipped_file() {
    let out = Command::new(binary())
        .arg("check-config")
        .arg(shipped_config())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "GET /api/public",
        "GET /api/premium",
        "POST /api/data",
        "sliding_window_log",
        "enterprise",
    ] {
        assert!(table.contains(needle), "{needle} missing from:\n{table}");
    }
}

#[test]
fn check_config_rejects_a_bad_file_naming_file_rule_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[rules]]\nendpoint = \"POST /login\"\nalgorithm = \"leaky_bucket\"\nlimit = 0\n",
    )
    .unwrap();
    let out = Command::new(binary()).arg("check-config").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    for needle in [
        "bad.toml",
        "rules[0].algorithm",
        "POST /login",
        "leaky_bucket",
        "rules[0].limit",
    ] {
        assert!(err.contains(needle), "{needle} missing from:\n{err}");
    }
}

#[test]
fn serve_refuses_an_invalid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nlisten = \"nowhere\"\n").unwrap();
    let out = Command::new(binary())
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml"));
}

#[test]
fn version_and_help() {
    let out = Command::new(binary()).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("ratelimiter {}", env!("CARGO_PKG_VERSION"))
    );
    let out = Command::new(binary()).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("check-config") && help.contains("--listen"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_refuses_then_exits() {
    let service = Service::start("[server]\ndrain_grace = \"1s\"\nshutdown_timeout = \"5s\"\n");
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    assert_eq!(
        client.get(service.url("/health/ready")).send().await.unwrap().status(),
        200
    );
    service.signal("TERM");
    // During the grace period: not ready, but still deciding checks.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let response = client.get(service.url("/health/ready")).send().await.unwrap();
        if response.status() == 503 {
            let body: Value = response.json().await.unwrap();
            assert!(body["reason"].as_str().unwrap().starts_with("draining"), "{body}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "readiness never turned false");
    }
    let check = client
        .post(service.url("/check"))
        .json(&json!({"key": "k"}))
        .send()
        .await
        .unwrap();
    assert_eq!(check.status(), 200, "checks are still served while draining");
    // After the grace period new connections are refused, and the process
    // exits 0.
    loop {
        if client.get(service.url("/health/live")).send().await.is_err() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "connections were never refused");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let status = service.wait_exit(std::time::Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
}
