//! schemathesis against the real binary, from the `GET /openapi.json` it
//! serves: generated valid and invalid requests to every public and admin
//! operation (with the admin token), checking that none is a server error
//! and that every answer conforms to the document (status, content type,
//! headers, body schema), that invalid input is refused, and more.
//!
//! schemathesis lives in a virtualenv at `target/venv` (override with
//! `SCHEMATHESIS=/path/to/schemathesis`), which `scripts/test.sh` creates.
//! The seed is fixed, so a run is reproducible; `SCHEMATHESIS_SEED=N` tries
//! another.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ratelimiter_testkit::service::Service;

const TOKEN: &str = "schemathesis-admin-token-0123456789";

/// Examples per operation and phase.
const MAX_EXAMPLES: &str = "40";

/// The run is killed (and the test fails) past this.
const DEADLINE: Duration = Duration::from_secs(150);

/// Every check but `positive_data_acceptance`: the document cannot know
/// which tiers, endpoints and durations the configuration accepts, so
/// schema-valid requests naming an unknown tier or an empty duration are
/// rightly refused with a 400.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
response_headers_conformance,response_schema_conformance,negative_data_rejection,\
missing_required_header,unsupported_method,allow_header_conformance,use_after_free,\
ensure_resource_availability,ignored_auth";

fn config() -> String {
    format!(
        r#"
        [admin]
        token = "{TOKEN}"
        [defaults]
        tier = "free"
        limit = 1000
        window = "1m"
        [tiers]
        pro = {{ limit = 5000 }}
        [[rules]]
        endpoint = "POST /login"
        algorithm = "fixed_window"
        limit = 5
        window = "1m"
        [[rules]]
        endpoint = "GET /search"
        algorithm = "sliding_window_log"
        limit = 3
        window = "10s"
        "#
    )
}

fn schemathesis() -> PathBuf {
    let path = std::env::var_os("SCHEMATHESIS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/venv/bin/schemathesis"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "schemathesis is not installed at {}: run scripts/test.sh, which installs it into target/venv \
         (or set SCHEMATHESIS to its path)",
        path.display()
    );
    path
}

#[test]
fn schemathesis_finds_no_server_error_and_no_deviation_from_the_document() {
    let bin = schemathesis();
    let service = Service::start(&config());
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261125".to_owned());
    let workdir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = Command::new(&bin)
        .arg("run")
        .arg(service.url("/openapi.json"))
        .args(["--checks", CHECKS])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", &seed])
        .args(["--generation-database", "none"])
        .args(["--request-timeout", "10"])
        // One worker: with two, hypothesis sometimes fails inside itself
        // (a race in its cache of lambda sources: "AST constructor recursion
        // depth mismatch"), an error of the tool rather than of the service.
        .args(["--workers", "1"])
        .arg("--no-color")
        .arg("--header")
        .arg(format!("Authorization: Bearer {TOKEN}"))
        .current_dir(workdir.path())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let mut status = None;
    let finished = ratelimiter_testkit::poll_until(DEADLINE, || {
        status = child.try_wait().expect("wait for schemathesis");
        status.is_some()
    });
    if !finished {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        finished,
        "schemathesis did not finish within {DEADLINE:?}:\n{out}\n{err}"
    );
    let status = status.unwrap();
    eprintln!(
        "schemathesis (seed {seed}) took {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        out.lines()
            .rev()
            .find(|l| l.contains(" in "))
            .unwrap_or("")
            .trim_matches(['=', ' '])
    );
    assert!(status.success(), "schemathesis failed ({status}):\n{out}\n{err}");
    assert!(
        out.contains("generated"),
        "schemathesis ran no test case:\n{out}\n{err}"
    );

    // The service is still alive and well after all that.
    let ready: serde_json::Value = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { reqwest::get(service.url("/health/ready")).await?.json().await })
        .expect("/health/ready answers");
    assert_eq!(ready["ready"], true);
}
