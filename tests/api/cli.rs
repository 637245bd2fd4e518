//! The commands that talk to a running server (`check`, `health`), the
//! ones that describe the command line (`completions`, `manpage`),
//! `check-config --config`, and the warning about a misspelt environment
//! variable.

use std::process::{Command, Output};

use serde_json::Value;

use ratelimiter_testkit::service::{binary, Service};

const CONFIG: &str = r#"
[defaults]
algorithm = "fixed_window"
limit = 2
window = "1h"
"#;

fn run(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_exits_0_when_allowed_1_when_limited_and_2_on_errors() {
    let service = Service::start(CONFIG);
    let url = service.url("");
    let url = url.trim_end_matches('/');
    let allowed = run(&["check", "--url", url, "--key", "cli"]);
    assert_eq!(allowed.status.code(), Some(0), "{}", text(&allowed.stderr));
    assert!(
        text(&allowed.stdout).starts_with("allowed (allowed): 1 of 2 left"),
        "{}",
        text(&allowed.stdout)
    );
    let json = run(&["check", "--url", url, "--key", "cli", "--json"]);
    assert_eq!(json.status.code(), Some(0));
    let answer: Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(answer["remaining"], 0);
    let limited = run(&["check", "--url", url, "--key", "cli"]);
    assert_eq!(limited.status.code(), Some(1));
    assert!(
        text(&limited.stdout).starts_with("limited (limited)"),
        "{}",
        text(&limited.stdout)
    );
    let peek = run(&["check", "--url", url, "--key", "cli", "--cost", "0"]);
    assert_eq!(peek.status.code(), Some(1), "a peek of a spent limit");
    let bad = run(&["check", "--url", url, "--key", "cli", "--tier", "gold"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("(field tier)"), "{}", text(&bad.stderr));
    let nowhere = run(&[
        "check",
        "--url",
        "http://127.0.0.1:1",
        "--key",
        "cli",
        "--timeout",
        "500ms",
    ]);
    assert_eq!(nowhere.status.code(), Some(2));
    assert!(
        text(&nowhere.stderr).starts_with("error: "),
        "{}",
        text(&nowhere.stderr)
    );
}

#[test]
fn health_exits_0_when_alive_and_1_otherwise() {
    let service = Service::start(CONFIG);
    let url = service.url("");
    let url = url.trim_end_matches('/');
    assert_eq!(run(&["health", "--url", url]).status.code(), Some(0));
    assert_eq!(run(&["health", "--url", url, "--ready"]).status.code(), Some(0));
    let down = run(&["health", "--url", "http://127.0.0.1:1", "--timeout", "500ms"]);
    assert_eq!(down.status.code(), Some(1));
}

#[test]
fn completions_and_the_manual_page_describe_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = text(&out.stdout);
        for command in ["serve", "check-config", "check", "health"] {
            assert!(script.contains(command), "{shell}: {command}");
        }
    }
    let man = run(&["manpage"]);
    assert!(man.status.success());
    let page = text(&man.stdout);
    assert!(page.starts_with(".ie") || page.contains(".TH ratelimiter"), "{page}");
    assert!(page.contains("check\\-config"), "{page}");
}

#[test]
fn check_config_takes_the_file_either_way_and_warns_of_a_misspelt_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let path = path.to_str().unwrap();
    for args in [vec!["check-config", path], vec!["check-config", "--config", path]] {
        let out = Command::new(binary())
            .args(&args)
            .env("RATELIMITER_ADMIN_TOKEN", "x")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("RATELIMITER_ADMIN_TOKEN is not read; did you mean RATELIMITER__ADMIN__TOKEN?"),
            "{}",
            text(&out.stderr)
        );
    }
    assert!(!run(&["check-config"]).status.success(), "a file is required");
}

#[test]
fn check_config_reads_the_files_the_service_would_read_at_start_up() {
    let tls = ratelimiter_testkit::redis::TlsFiles::generate();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let check = |toml: &str| {
        std::fs::write(&path, toml).unwrap();
        let out = Command::new(binary()).arg("check-config").arg(&path).output().unwrap();
        (out.status.success(), text(&out.stderr))
    };
    let good = format!(
        "[store]\nbackend = \"redis\"\n[store.redis]\nurl = \"rediss://127.0.0.1:1\"\ntls_ca_file = {:?}\n\
         [telemetry]\notlp_endpoint = \"https://127.0.0.1:4318\"\ntls_ca_file = {:?}\n\
         tls_cert_file = {:?}\ntls_key_file = {:?}\n",
        tls.ca(),
        tls.ca(),
        tls.client_cert(),
        tls.client_key()
    );
    let (ok, stderr) = check(&good);
    assert!(ok, "{stderr}");

    // The client certificate's key swapped for the server's: both sections
    // are reported, each naming its setting.
    let bad = good
        .replace(&format!("{:?}", tls.client_key()), &format!("{:?}", tls.server_key()))
        .replacen(
            &format!("tls_ca_file = {:?}", tls.ca()),
            "tls_ca_file = \"/nonexistent/ca.pem\"",
            1,
        );
    let (ok, stderr) = check(&bad);
    assert!(!ok);
    assert!(
        stderr.contains("store.redis.tls_ca_file: /nonexistent/ca.pem"),
        "{stderr}"
    );
    assert!(stderr.contains("telemetry.tls_key_file"), "{stderr}");

    // The HMAC key of `[keys]`, also read only at start-up.
    let (ok, stderr) = check("[keys]\nhash = \"hmac-sha256\"\nhmac_secret_file = \"/nonexistent/hmac\"\n");
    assert!(!ok);
    assert!(
        stderr.contains("keys.hmac_secret_file: cannot read /nonexistent/hmac"),
        "{stderr}"
    );
}
