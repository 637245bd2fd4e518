//! Helpers shared by the deployment checks: reading files of the
//! repository, YAML documents, loading settings from an environment, and
//! asking the real router whether a path is served.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ratelimiter::app::App;
use ratelimiter::core::SystemClock;
use ratelimiter::limiter::rules::RuleSet;
use ratelimiter::settings::{parse_duration, Settings};
use ratelimiter::store::Backend;
use serde::Deserialize;
use serde_json::Value;
use tower::ServiceExt;

/// A path inside the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The contents of a file of the repository.
#[track_caller]
pub fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Every document of a (possibly multi-document) YAML file, with merge
/// keys (`<<: *anchor`) applied, as JSON values.
#[track_caller]
pub fn yaml_documents(path: &str) -> Vec<Value> {
    let text = read(path);
    let mut documents = Vec::new();
    for document in serde_norway::Deserializer::from_str(&text) {
        let mut value = serde_norway::Value::deserialize(document).unwrap_or_else(|e| panic!("{path}: {e}"));
        value
            .apply_merge()
            .unwrap_or_else(|e| panic!("{path}: merge keys: {e}"));
        if value.is_null() {
            continue;
        }
        documents.push(serde_json::to_value(value).unwrap_or_else(|e| panic!("{path}: {e}")));
    }
    documents
}

/// The one document of a YAML file.
#[track_caller]
pub fn yaml(path: &str) -> Value {
    let mut documents = yaml_documents(path);
    assert_eq!(documents.len(), 1, "{path}: expected one YAML document");
    documents.remove(0)
}

/// `value` as a string, whether YAML wrote it as a string or a number.
#[track_caller]
pub fn scalar(value: &Value, what: &str) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("{what}: expected a scalar, got {other}"),
    }
}

/// Loads settings as the service would: the configuration file `config`
/// (when given), then the `RATELIMITER__…` variables of `env` (others are
/// ignored, as the service ignores them). Panics naming `origin` when a
/// variable is not a setting or a value is invalid.
#[track_caller]
pub fn settings_from_env(origin: &str, config: Option<&Path>, env: &BTreeMap<String, String>) -> Settings {
    try_settings_from_env(config, env).unwrap_or_else(|e| panic!("{origin}: the settings do not load: {e}"))
}

pub fn try_settings_from_env(config: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Settings, String> {
    let env: HashMap<String, String> = env
        .iter()
        .filter(|(name, _)| name.starts_with("RATELIMITER__"))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let settings = Settings::load_with_env(config, Some(env)).map_err(|e| e.to_string())?;
    RuleSet::from_settings(&settings).map_err(|problems| format!("{problems:?}"))?;
    Ok(settings)
}

/// Settings from TOML text written to a temporary file, plus `env`.
#[track_caller]
pub fn settings_from_toml_and_env(origin: &str, toml: &str, env: &BTreeMap<String, String>) -> Settings {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ratelimiter.toml");
    std::fs::write(&path, toml).unwrap();
    settings_from_env(origin, Some(&path), env)
}

/// A duration as the configuration writes it (`"5s"`), in seconds.
#[track_caller]
pub fn seconds(text: &str) -> f64 {
    parse_duration(text).unwrap_or_else(|e| panic!("{e}")).as_secs_f64()
}

/// The status the real public router answers to `GET path`, optionally
/// while the replica drains for shutdown (as after SIGTERM).
pub async fn status_of(path: &str, draining: bool) -> StatusCode {
    let settings = Settings::from_toml("").expect("default settings");
    let wiring = App::builder(settings)
        .wire(Backend::memory(Arc::new(SystemClock)))
        .expect("default rules");
    if draining {
        wiring.ctx.start_draining();
    }
    let request = Request::get(path).body(Body::empty()).unwrap();
    wiring.router.oneshot(request).await.expect("infallible").status()
}

/// Asserts that `path` is a liveness path: 200, also while draining (a
/// draining replica must not be restarted).
pub async fn assert_liveness_path(origin: &str, path: &str) {
    assert_eq!(
        status_of(path, false).await,
        StatusCode::OK,
        "{origin}: GET {path} is not served"
    );
    assert_eq!(
        status_of(path, true).await,
        StatusCode::OK,
        "{origin}: GET {path} fails while draining: a liveness check would kill draining replicas"
    );
}

/// Asserts that `path` is the readiness path: 200 when ready, 503 while
/// draining, so load balancers stop sending before connections close.
pub async fn assert_readiness_path(origin: &str, path: &str) {
    assert_eq!(
        status_of(path, false).await,
        StatusCode::OK,
        "{origin}: GET {path} is not served"
    );
    assert_eq!(
        status_of(path, true).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "{origin}: GET {path} stays 200 while draining: it is not the readiness path"
    );
}

/// `(port, path)` of `http://host:port/path`.
#[track_caller]
pub fn port_and_path(url: &str) -> (u16, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("{url}: not an http:// URL"));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let port = authority
        .rsplit_once(':')
        .map_or(80, |(_, port)| port.parse().expect("a port"));
    (port, format!("/{path}"))
}

/// The port and path a health check asks when it is the binary's own
/// (`ratelimiter health --url URL [--ready]`): `/health/live`, or
/// `/health/ready` with `--ready`.
#[track_caller]
pub fn health_command_target(words: &[&str]) -> (u16, String) {
    let at = words
        .iter()
        .position(|w| *w == "health")
        .unwrap_or_else(|| panic!("`ratelimiter health` in {words:?}"));
    assert!(
        at > 0 && words[at - 1].ends_with("ratelimiter"),
        "the binary's own health check: {words:?}"
    );
    let url = words
        .iter()
        .skip_while(|w| **w != "--url")
        .nth(1)
        .unwrap_or_else(|| panic!("--url in {words:?}"));
    let (port, base) = port_and_path(url);
    assert_eq!(base, "/", "--url is the server's base URL: {url}");
    let path = if words.contains(&"--ready") {
        "/health/ready"
    } else {
        "/health/live"
    };
    (port, path.to_owned())
}

/// The part of `text` between the first `{` after `header` and its
/// matching `}` (for nginx blocks).
#[track_caller]
pub fn block<'a>(text: &'a str, header: &str) -> &'a str {
    let start = text.find(header).unwrap_or_else(|| panic!("no `{header}` block"));
    let open = start + text[start..].find('{').expect("an opening brace");
    let mut depth = 0;
    for (i, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &text[open + 1..open + i];
                }
            }
            _ => {}
        }
    }
    panic!("`{header}` block is not closed")
}

/// The directives of an nginx block (comments removed), each as its words.
pub fn directives(block: &str) -> Vec<Vec<String>> {
    let without_comments: String = block
        .lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(|d| d.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter(|words| !words.is_empty() && !words.iter().any(|w| w.contains('{') || w.contains('}')))
        .collect()
}

/// The numeric user id of `10001:10001` or `10001`.
#[track_caller]
pub fn uid(user: &str) -> u32 {
    let uid = user.split(':').next().unwrap_or(user);
    uid.parse()
        .unwrap_or_else(|_| panic!("user {user:?} is not numeric: runAsNonRoot cannot check it"))
}

/// A variable name for which the settings loader must fail: proves the
/// name checks above can fail.
pub const NOT_A_SETTING: &str = "RATELIMITER__SERVER__PORT";

#[test]
fn a_variable_that_is_not_a_setting_is_rejected() {
    for name in [NOT_A_SETTING, "RATELIMITER__STORE__REDIS_NODES", "RATELIMITER__LISTEN"] {
        let env = BTreeMap::from([(name.to_owned(), "8080".to_owned())]);
        let err = try_settings_from_env(None, &env).expect_err(name);
        assert!(err.to_lowercase().contains("unknown field"), "{name}: {err}");
    }
}
