//! Metrics as a real Prometheus sees them: `promtool check metrics` accepts
//! a live scrape, a Prometheus server started here scrapes a replica and its
//! queries return the expected counters, and every metric the Grafana
//! dashboard queries exists. Readiness follows the store.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::unique_prefix;
use ratelimiter_testkit::ports;
use ratelimiter_testkit::redis::RedisServer;
use ratelimiter_testkit::service::Service;

fn config(redis: &RedisServer) -> String {
    format!(
        "[store]\nbackend = \"redis\"\nfailure_mode = \"closed\"\n[store.redis]\nurl = \"{}\"\nkey_prefix = \"{}\"\ncommand_timeout = \"300ms\"\n\
         [defaults]\ntier = \"free\"\nlimit = 3\nwindow = \"1h\"\n[[rules]]\nendpoint = \"GET /api\"\nlimit = 1\n",
        redis.url(),
        unique_prefix("obs")
    )
}

async fn traffic(service: &Service) {
    let client = reqwest::Client::new();
    for body in [
        json!({"key": "a"}),
        json!({"key": "a"}),
        json!({"key": "a"}),
        json!({"key": "a"}),
        json!({"key": "b", "endpoint": "GET /api"}),
        json!({"key": "b", "endpoint": "GET /api"}),
    ] {
        client.post(service.url("/check")).json(&body).send().await.unwrap();
    }
}

async fn scrape(service: &Service) -> String {
    reqwest::get(service.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn require(program: &str) {
    assert!(
        Command::new(program).arg("--version").output().is_ok(),
        "{program} is not installed; scripts/test.sh installs it (Debian package prometheus)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_a_live_scrape() {
    require("promtool");
    let redis = RedisServer::start();
    let service = Service::start(&config(&redis));
    traffic(&service).await;
    let text = scrape(&service).await;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for series in [
        r#"redis_operations_total{op="evalsha"} 6"#,
        // One check at a time: six script calls of one check each.
        "redis_batch_checks_count 6",
        "redis_batch_checks_sum 6",
        "redis_pool_connections 4",
        "redis_pool_connections_connected 4",
        "rate_limit_ready 1",
    ] {
        assert!(text.contains(series), "{series} missing:\n{text}");
    }
}

/// A Prometheus server on a free loopback port (offered candidates until
/// one is not taken), scraping `target` every second; killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: std::net::SocketAddr) -> Prometheus {
        require("prometheus");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: ratelimiter\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let log = dir.path().join("prometheus.log");
        let (child, port) = ports::retry("prometheus", ports::candidate, |&port| {
            let mut child = Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("start prometheus");
            ports::wait_listening(&mut child, &[port], &log, Duration::from_secs(30)).map(|()| (child, port))
        });
        Prometheus { child, port, _dir: dir }
    }

    async fn query(&self, promql: &str) -> Option<f64> {
        let url = format!("http://127.0.0.1:{}/api/v1/query", self.port);
        let response = reqwest::Client::new()
            .get(url)
            .query(&[("query", promql)])
            .send()
            .await
            .ok()?;
        let body: Value = response.json().await.ok()?;
        body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_counters() {
    let redis = RedisServer::start();
    let service = Service::start(&config(&redis));
    traffic(&service).await;
    let prometheus = Prometheus::start(service.addr());
    let expectations = [
        (r#"sum(rate_limit_requests_total{decision="allowed"})"#, 4.0),
        (r#"sum(rate_limit_requests_total{decision="limited"})"#, 2.0),
        (r#"rate_limit_exceeded_total{rule="GET /api",tier="free"}"#, 1.0),
        (r#"count(up{job="ratelimiter"} == 1)"#, 1.0),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    for (promql, expected) in expectations {
        loop {
            if prometheus.query(promql).await == Some(expected) {
                break;
            }
            assert!(Instant::now() < deadline, "{promql} never returned {expected}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Metric names a PromQL expression refers to (ours, `up` and process_*).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut current = String::new();
    let mut in_braces = false;
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c == '{' {
            in_braces = true;
        }
        if c == '}' {
            in_braces = false;
        }
        if !in_braces && (c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            current.push(c);
            continue;
        }
        let known = ["rate_limit_", "redis_", "ratelimiter_", "process_"];
        if known.iter().any(|p| current.starts_with(p)) || current == "up" {
            names.insert(current.clone());
        }
        current.clear();
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_metric_exists() {
    let dashboard: Value =
        serde_json::from_str(include_str!("../../deploy/grafana/ratelimiter.json")).expect("valid dashboard JSON");
    let mut referenced = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for target in targets {
            referenced.extend(metric_names(target["expr"].as_str().unwrap()));
        }
    }
    let templating = dashboard["templating"]["list"].to_string();
    assert!(templating.contains("ratelimiter_build_info"));
    assert!(referenced.len() >= 10, "{referenced:?}");

    let redis = RedisServer::start();
    let service = Service::start(&config(&redis));
    traffic(&service).await;
    let text = scrape(&service).await;
    for name in referenced {
        if name == "up" {
            continue; // Prometheus's own
        }
        let family = name
            .strip_suffix("_bucket")
            .or_else(|| name.strip_suffix("_count"))
            .or_else(|| name.strip_suffix("_sum"))
            .unwrap_or(&name);
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "the dashboard queries {name}, which is not exported"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_store() {
    let mut redis = RedisServer::start();
    let service = Service::start(&config(&redis));
    let ready = || async {
        let response = reqwest::get(service.url("/health/ready")).await.unwrap();
        (response.status().as_u16(), response.json::<Value>().await.unwrap())
    };
    assert_eq!(ready().await.0, 200);
    redis.kill();
    let (status, body) = ready().await;
    assert_eq!(status, 503);
    assert!(body["reason"].as_str().unwrap().contains("unreachable"), "{body}");
    // Liveness does not depend on the store.
    assert_eq!(reqwest::get(service.url("/health/live")).await.unwrap().status(), 200);
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ready().await.0 != 200 {
        assert!(Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(rate_limit_check_duration_seconds_bucket{job=~"$job", x="redis_no"}[5m]))) / count(up == 1)"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["rate_limit_check_duration_seconds_bucket", "up"]
    );
}
