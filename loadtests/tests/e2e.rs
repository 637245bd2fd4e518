//! End to end: the real `ratelimiter` binary on a free loopback port, driven
//! by loadgen (as a library call, and as its own binary), for about 1.5 s.
//!
//! The service binary is found as `support::ratelimiter_binary` explains.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use loadgen::config::{Settings, Target};
use loadgen::keys::KeySpec;
use serde_json::Value;
use support::ratelimiter_binary;

mod support;

const CONFIG: &str = r#"
[log]
level = "warn"
[reload]
watch = false
[defaults]
algorithm = "token_bucket"
limit = 100
window = "10s"
[[rules]]
endpoint = "POST /login"
algorithm = "fixed_window"
limit = 50
window = "1h"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_on_a_fixed_window_gets_exactly_the_limit() {
    let service = Service::start(CONFIG);
    let dir = tempfile::tempdir().unwrap();
    let target: Target = format!("http://{}", service.addr).parse().unwrap();
    let mut settings = Settings::closed_loop(
        vec![target],
        NonZeroUsize::new(8).unwrap(),
        Duration::from_millis(1500),
        KeySpec::Hot,
    );
    settings.endpoint = Some("POST /login".into());
    settings.json = Some(dir.path().join("report.json"));
    settings.plot = Some(dir.path().join("report.svg"));

    let started = Instant::now();
    let report = loadgen::run(&settings).await;
    loadgen::write_outputs(&settings, &report).unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "the run stops by itself");
    println!("{}", report.to_text(3));

    assert!(report.throughput_rps > 0.0);
    assert_eq!(report.errors.total, 0, "{:?}", report.errors);
    assert_eq!(report.requests, report.answered);
    assert!(report.latency_ms.p50 > 0.0 && report.latency_ms.p99 >= report.latency_ms.p50);
    let a = report.accuracy.as_ref().expect("GET /rules was read");
    assert_eq!((a.rule.as_str(), a.limit, a.window_ms), ("POST /login", 50, 3_600_000));
    // One hour window: the run touches one aligned window, or two in the
    // rare run that straddles the top of the hour.
    let windows = a.aligned_windows.expect("a window algorithm");
    assert_eq!(a.total_allowed, 50 * windows, "allowed exactly the limit");
    assert_eq!(a.permitted_per_key, 50 * windows);
    assert_eq!((a.keys, a.total_over_admission), (1, 0));
    assert_eq!(report.reasons.get("allowed"), Some(&a.total_allowed));
    assert_eq!(report.status.get("429"), report.reasons.get("limited"));

    let json: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["accuracy"]["total_over_admission"], 0);
    assert_eq!(json["accuracy"]["per_key"][0]["allowed"], 50 * windows);
    assert_eq!(json["timeline"].as_array().unwrap().len(), 2);
    let svg = std::fs::read_to_string(dir.path().join("report.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<polyline") && svg.trim_end().ends_with("</svg>"));
}

#[test]
fn two_memory_replicas_over_admit_and_the_exit_status_says_so() {
    // Each replica has its own memory store, so one key sent round-robin to
    // both gets the limit twice: the over-admission loadgen exists to catch.
    let a = Service::start(CONFIG);
    let b = Service::start(CONFIG);
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--scenario", "one-user", "--connections", "8", "--duration", "1s"])
        .args([
            "--target",
            &format!("http://{}", a.addr),
            "--target",
            &format!("http://{}/", b.addr),
        ])
        .args(["--endpoint", "POST /login", "--fail-on-over-admission", "--json"])
        .arg(&json_path)
        .output()
        .expect("run loadgen");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("OVER-ADMITTED"), "{stdout}");

    let json: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let windows = json["accuracy"]["aligned_windows"].as_u64().unwrap();
    assert_eq!(json["scenario"], "one-user");
    assert_eq!(json["accuracy"]["total_allowed"], 100 * windows);
    assert_eq!(json["accuracy"]["total_over_admission"], 50 * windows);
    assert_eq!(json["accuracy"]["over_admitted_keys"], 1);
}

/// A running `ratelimiter serve` on a free loopback port, killed on drop.
struct Service {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Service {
    fn start(toml: &str) -> Service {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("ratelimiter.toml");
        std::fs::write(&config, toml).expect("write the config");
        let mut child = Command::new(ratelimiter_binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--config"])
            .arg(&config)
            // The "listening" event is logged at info.
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ratelimiter");
        // Read the log until it names the address; keep draining it after.
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let Ok(event) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if event["message"] == "listening" {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(event["addr"].as_str().unwrap_or_default().to_owned());
                    }
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr.parse().expect("a socket address"),
            Err(_) => {
                let _ = child.kill();
                panic!("ratelimiter did not log its address within 20 s");
            }
        };
        Service { child, addr, _dir: dir }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
