//! Typed configuration: a TOML file, then `RATELIMITER__SECTION__KEY`
//! environment overrides, deserialised into [`Settings`].
//!
//! Every section has defaults, so the service runs without a file. Unknown
//! fields are errors. The rule sections (`[defaults]`, `[tiers]`,
//! `[[rules]]`) are kept here as written; [`crate::rules::RuleSet`] resolves
//! and validates them. [`Settings::validate`] checks the rest and names the
//! field at fault.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

/// Prefix of environment overrides: `RATELIMITER__SERVER__LISTEN=…`.
pub const ENV_PREFIX: &str = "RATELIMITER";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub store: StoreSettings,
    #[serde(default)]
    pub log: LogSettings,
    #[serde(default)]
    pub admin: AdminSettings,
    #[serde(default)]
    pub reload: ReloadSettings,
    #[serde(default)]
    pub forward: ForwardSettings,
    #[serde(default)]
    pub defaults: DefaultsSpec,
    /// Default limits per tier, by tier name.
    #[serde(default)]
    pub tiers: BTreeMap<String, LimitSpec>,
    /// Per-endpoint rules, in file order.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address of the HTTP listener.
    pub listen: SocketAddr,
    /// Longest accepted `key`, in bytes.
    pub max_key_bytes: usize,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_timeout: HumanDuration,
    /// After a shutdown signal, how long to keep serving (with readiness
    /// false) so load balancers stop sending before connections are refused.
    pub drain_grace: HumanDuration,
    /// How long a client has to send a request's headers (also how long an
    /// idle connection is kept), and then the rest of the request.
    pub read_timeout: HumanDuration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_key_bytes: 256,
            max_body_bytes: 8 * 1024,
            shutdown_timeout: HumanDuration(Duration::from_secs(10)),
            drain_grace: HumanDuration(Duration::ZERO),
            read_timeout: HumanDuration(Duration::from_secs(10)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    pub backend: Backend,
    /// What a check gets when the store cannot decide (rules may override).
    pub failure_mode: FailureMode,
    /// In `local` mode, each replica enforces `ceil(limit / local_divisor)`:
    /// set it to the number of replicas to keep the total near the limit.
    pub local_divisor: u64,
    pub breaker: BreakerSettings,
    pub deny_cache: DenyCacheSettings,
    pub memory: MemorySettings,
    pub redis: RedisSettings,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            backend: Backend::Memory,
            failure_mode: FailureMode::Local,
            local_divisor: 1,
            breaker: BreakerSettings::default(),
            deny_cache: DenyCacheSettings::default(),
            memory: MemorySettings::default(),
            redis: RedisSettings::default(),
        }
    }
}

/// What a check gets when the store is unavailable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Allow, `reason: "fail_open"`.
    Open,
    /// Deny with 503, `reason: "store_unavailable"`.
    Closed,
    /// Decide on this replica's own memory store until the store returns.
    #[default]
    Local,
}

impl FailureMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureMode::Open => "open",
            FailureMode::Closed => "closed",
            FailureMode::Local => "local",
        }
    }
}

impl std::str::FromStr for FailureMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(FailureMode::Open),
            "closed" => Ok(FailureMode::Closed),
            "local" => Ok(FailureMode::Local),
            other => Err(format!(
                "unknown failure mode {other:?} (expected open, closed or local)"
            )),
        }
    }
}

/// `[store.breaker]`: the circuit breaker around the store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// How long it stays open before one probe is let through.
    pub open_for: HumanDuration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failures: 5,
            open_for: HumanDuration(Duration::from_secs(1)),
        }
    }
}

/// Where counters live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// In this process: exact for one replica, not shared between replicas.
    #[default]
    Memory,
    /// In Redis (one server or a cluster): shared by every replica.
    Redis,
}

/// `[store.redis]`: how to reach Redis.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `standalone`, `cluster`, or `auto` (ask the server whether cluster
    /// mode is enabled).
    pub mode: RedisMode,
    /// Standalone server, or one cluster seed node:
    /// `redis://[user:password@]host:port[/db]`.
    pub url: String,
    /// Cluster seed nodes (`redis://host:port` or `host:port`); when set,
    /// `url` only contributes credentials.
    pub nodes: Vec<String>,
    /// Connections in the pool (each speaks to every cluster node).
    pub pool_size: usize,
    /// Timeout to open a connection.
    pub connect_timeout: HumanDuration,
    /// Timeout of one check's round trip; past it the check fails.
    pub command_timeout: HumanDuration,
    /// Prefix of every key the service writes.
    pub key_prefix: String,
    /// Reconnection backoff: first delay, doubled up to `reconnect_max_delay`,
    /// plus up to `reconnect_jitter` of random jitter per attempt.
    pub reconnect_min_delay: HumanDuration,
    pub reconnect_max_delay: HumanDuration,
    pub reconnect_jitter: HumanDuration,
    /// Standalone only: send the checks waiting at a moment as one script
    /// call (see [`crate::store::redis::batch`]).
    pub batch: bool,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            mode: RedisMode::Auto,
            url: "redis://127.0.0.1:6379".to_owned(),
            nodes: Vec::new(),
            pool_size: 4,
            connect_timeout: HumanDuration(Duration::from_secs(2)),
            command_timeout: HumanDuration(Duration::from_millis(250)),
            key_prefix: "rl".to_owned(),
            reconnect_min_delay: HumanDuration(Duration::from_millis(50)),
            reconnect_max_delay: HumanDuration(Duration::from_secs(2)),
            reconnect_jitter: HumanDuration(Duration::from_millis(100)),
            batch: true,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisMode {
    #[default]
    Auto,
    Standalone,
    Cluster,
}

/// The deny cache of the Redis backend: denials answered locally until
/// their `retry_after` (see [`crate::deny_cache`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DenyCacheSettings {
    pub enabled: bool,
    /// Denials held at most; when full, new denials go to Redis every time
    /// until the sweeper (every `store.memory.sweep_interval`) makes room.
    pub max_entries: usize,
}

impl Default for DenyCacheSettings {
    fn default() -> Self {
        DenyCacheSettings {
            enabled: true,
            max_entries: 100_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySettings {
    /// How often keys whose state has fully expired are dropped.
    pub sweep_interval: HumanDuration,
}

impl Default for MemorySettings {
    fn default() -> Self {
        MemorySettings {
            sweep_interval: HumanDuration(Duration::from_secs(10)),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `ratelimiter=debug,info`;
    /// `RUST_LOG` wins when set.
    pub level: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// `[admin]`: the operators' API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Bearer token for `/admin`; without one the admin API is disabled.
    pub token: Option<Secret>,
    /// A separate listener for `/admin`; without one it shares `server.listen`.
    pub listen: Option<SocketAddr>,
    /// How often a replica re-reads overrides and lists from the shared
    /// store, healing any missed change notification.
    pub resync_interval: HumanDuration,
    /// How many most-limited keys the stats track (memory is bounded by it).
    pub top_keys: usize,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            token: None,
            listen: None,
            resync_interval: HumanDuration(Duration::from_secs(5)),
            top_keys: 100,
        }
    }
}

/// A value that is never printed: `Debug` shows `"***"`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself; only for comparison.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// `[forward]`: how `GET /check/forward` (for gateways' forward-auth)
/// reads a request from headers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardSettings {
    /// Headers that identify the caller, most specific first; the first one
    /// present gives the key. `authorization` uses the bearer JWT's `sub`
    /// claim; `x-forwarded-for` its first address.
    pub key_headers: Vec<String>,
    /// Headers holding the original method, first present wins.
    pub method_headers: Vec<String>,
    /// Headers holding the original URI, first present wins.
    pub uri_headers: Vec<String>,
    /// Header naming the tier; absent → the default tier.
    pub tier_header: String,
}

impl Default for ForwardSettings {
    fn default() -> Self {
        let v = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
        ForwardSettings {
            key_headers: v(&["x-api-key", "authorization", "x-org-id", "x-forwarded-for"]),
            method_headers: v(&["x-forwarded-method", "x-original-method"]),
            uri_headers: v(&["x-original-uri", "x-forwarded-uri"]),
            tier_header: "x-ratelimit-tier".to_owned(),
        }
    }
}

/// `[reload]`: re-reading the rules file while running.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadSettings {
    /// Re-read the file when it changes (checked every `poll_interval`).
    pub watch: bool,
    pub poll_interval: HumanDuration,
}

impl Default for ReloadSettings {
    fn default() -> Self {
        ReloadSettings {
            watch: true,
            poll_interval: HumanDuration(Duration::from_secs(1)),
        }
    }
}

/// `[defaults]`: the default rule and the default tier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefaultsSpec {
    pub algorithm: String,
    /// The tier of requests that name none.
    pub tier: String,
    pub limit: i64,
    pub window: String,
}

impl Default for DefaultsSpec {
    fn default() -> Self {
        DefaultsSpec {
            algorithm: "token_bucket".to_owned(),
            tier: "default".to_owned(),
            limit: 100,
            window: "10s".to_owned(),
        }
    }
}

/// A partial limit: whatever is set overrides the layer below it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    pub algorithm: Option<String>,
    pub limit: Option<i64>,
    pub window: Option<String>,
}

/// `[[rules]]`: one endpoint's limit, with optional per-tier overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub endpoint: String,
    pub algorithm: Option<String>,
    pub limit: Option<i64>,
    pub window: Option<String>,
    /// Overrides `store.failure_mode` for this endpoint.
    pub failure_mode: Option<String>,
    #[serde(default)]
    pub tiers: BTreeMap<String, LimitSpec>,
}

/// A duration written for people: `"10s"`, `"1m"`, `"1h 30m"`, `"500ms"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses a human duration such as `10s`, `1m` or `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like \"500ms\", \"10s\", \"1m\" or \"1h\" ({e})"))
}

/// Formats a duration the way the configuration writes it.
pub fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// Where the settings came from, for error messages.
#[derive(Debug, Clone)]
pub enum Origin {
    File(PathBuf),
    Defaults,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Defaults => f.write_str("built-in defaults"),
        }
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the offending field, e.g. `rules[1].tiers.pro.limit`.
    pub field: String,
    /// Extra context, e.g. `endpoint "POST /login"`.
    pub context: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            field: field.into(),
            context: None,
            message: message.into(),
        }
    }

    pub fn with_context(mut self, context: impl Into<String>) -> Problem {
        self.context = Some(context.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.context {
            Some(context) => write!(f, "{} ({context}): {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

/// The configuration could not be loaded or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{origin}: {source}")]
    Load {
        origin: Origin,
        #[source]
        source: config::ConfigError,
    },
    #[error("{origin}: {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid { origin: Origin, problems: Vec<Problem> },
}

impl Settings {
    /// Loads the file at `path` (when given) and the process environment's
    /// `RATELIMITER__…` overrides.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        Settings::load_with_env(path, None)
    }

    /// Like [`Settings::load`], with the environment given as a map instead
    /// of read from the process (`None` reads the process environment).
    pub fn load_with_env(
        path: Option<&Path>,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Settings, ConfigError> {
        let origin = path.map_or(Origin::Defaults, |p| Origin::File(p.to_owned()));
        let mut builder = Config::builder();
        if let Some(path) = path {
            builder = builder.add_source(File::from(path).format(FileFormat::Toml).required(true));
        }
        let env = Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("store.redis.nodes")
            .source(env);
        let settings: Settings = builder
            .add_source(env)
            .build()
            .and_then(Config::try_deserialize)
            .map_err(|source| ConfigError::Load {
                origin: origin.clone(),
                source,
            })?;
        settings
            .validate()
            .map_err(|problems| ConfigError::Invalid { origin, problems })?;
        Ok(settings)
    }

    /// Parses settings from TOML text (no environment), as a file would be.
    pub fn from_toml(text: &str) -> Result<Settings, ConfigError> {
        let origin = Origin::Defaults;
        let settings: Settings = Config::builder()
            .add_source(File::from_str(text, FileFormat::Toml))
            .build()
            .and_then(Config::try_deserialize)
            .map_err(|source| ConfigError::Load {
                origin: origin.clone(),
                source,
            })?;
        settings
            .validate()
            .map_err(|problems| ConfigError::Invalid { origin, problems })?;
        Ok(settings)
    }

    /// Checks the non-rule settings; rules are checked by
    /// [`crate::rules::RuleSet::from_settings`].
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        let mut problems = Vec::new();
        if !(1..=64 * 1024).contains(&self.server.max_key_bytes) {
            problems.push(Problem::new("server.max_key_bytes", "must be between 1 and 65536"));
        }
        if !(256..=1024 * 1024).contains(&self.server.max_body_bytes) {
            problems.push(Problem::new("server.max_body_bytes", "must be between 256 and 1048576"));
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&self.server.read_timeout.0) {
            problems.push(Problem::new("server.read_timeout", "must be between 100ms and 1h"));
        }
        if self.store.memory.sweep_interval.0 < Duration::from_millis(100) {
            problems.push(Problem::new("store.memory.sweep_interval", "must be at least 100ms"));
        }
        if !(1..=10_000).contains(&self.store.local_divisor) {
            problems.push(Problem::new("store.local_divisor", "must be between 1 and 10000"));
        }
        if self.store.deny_cache.max_entries == 0 || self.store.deny_cache.max_entries > 100_000_000 {
            problems.push(Problem::new(
                "store.deny_cache.max_entries",
                "must be between 1 and 100000000 (set store.deny_cache.enabled = false to turn the cache off)",
            ));
        }
        if self.store.breaker.failures == 0 {
            problems.push(Problem::new("store.breaker.failures", "must be at least 1"));
        }
        if self.store.breaker.open_for.0 < Duration::from_millis(10) {
            problems.push(Problem::new("store.breaker.open_for", "must be at least 10ms"));
        }
        let redis = &self.store.redis;
        if !(1..=256).contains(&redis.pool_size) {
            problems.push(Problem::new("store.redis.pool_size", "must be between 1 and 256"));
        }
        if redis.command_timeout.0.is_zero() {
            problems.push(Problem::new(
                "store.redis.command_timeout",
                "must be more than 0 (a check must never hang)",
            ));
        }
        if redis.connect_timeout.0.is_zero() {
            problems.push(Problem::new("store.redis.connect_timeout", "must be more than 0"));
        }
        if redis.reconnect_min_delay.0.is_zero() || redis.reconnect_min_delay.0 > redis.reconnect_max_delay.0 {
            problems.push(Problem::new(
                "store.redis.reconnect_min_delay",
                "must be more than 0 and at most reconnect_max_delay",
            ));
        }
        if let Err(e) = crate::store::redis::keys::check_prefix(&redis.key_prefix) {
            problems.push(Problem::new("store.redis.key_prefix", e));
        }
        if redis.mode == RedisMode::Standalone && !redis.nodes.is_empty() {
            problems.push(Problem::new(
                "store.redis.nodes",
                "cluster seed nodes need mode = \"cluster\" or \"auto\"",
            ));
        }
        if let Some(token) = &self.admin.token {
            if token.expose().len() < 16 {
                problems.push(Problem::new("admin.token", "must be at least 16 characters"));
            }
        }
        if self.admin.resync_interval.0 < Duration::from_millis(100) {
            problems.push(Problem::new("admin.resync_interval", "must be at least 100ms"));
        }
        if !(1..=100_000).contains(&self.admin.top_keys) {
            problems.push(Problem::new("admin.top_keys", "must be between 1 and 100000"));
        }
        let header_ok = |h: &String| axum::http::HeaderName::from_bytes(h.as_bytes()).is_ok();
        for (field, headers) in [
            ("forward.key_headers", &self.forward.key_headers),
            ("forward.method_headers", &self.forward.method_headers),
            ("forward.uri_headers", &self.forward.uri_headers),
        ] {
            if headers.is_empty() || !headers.iter().all(header_ok) {
                problems.push(Problem::new(field, "must be a non-empty list of HTTP header names"));
            }
        }
        if !header_ok(&self.forward.tier_header) {
            problems.push(Problem::new("forward.tier_header", "must be an HTTP header name"));
        }
        if self.reload.poll_interval.0 < Duration::from_millis(50) {
            problems.push(Problem::new("reload.poll_interval", "must be at least 50ms"));
        }
        if let Some(level) = &self.log.level {
            if tracing_subscriber::EnvFilter::try_new(level).is_err() {
                problems.push(Problem::new(
                    "log.level",
                    format!("{level:?} is not a log filter such as \"info\""),
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_without_a_file() {
        let s = Settings::load_with_env(None, Some(HashMap::new())).unwrap();
        assert_eq!(s.server.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.server.max_key_bytes, 256);
        assert_eq!(s.store.backend, Backend::Memory);
        assert_eq!(s.defaults.limit, 100);
        assert!(s.rules.is_empty());
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.toml");
        std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:9000\"\n[defaults]\nlimit = 5\n").unwrap();
        let env = HashMap::from([
            ("RATELIMITER__SERVER__LISTEN".to_owned(), "127.0.0.1:9100".to_owned()),
            ("RATELIMITER__DEFAULTS__LIMIT".to_owned(), "7".to_owned()),
            ("RATELIMITER__LOG__FORMAT".to_owned(), "json".to_owned()),
        ]);
        let s = Settings::load_with_env(Some(&path), Some(env)).unwrap();
        assert_eq!(s.server.listen, "127.0.0.1:9100".parse().unwrap());
        assert_eq!(s.defaults.limit, 7);
        assert_eq!(s.log.format, LogFormat::Json);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = Settings::from_toml("[server]\nlisten = \"127.0.0.1:1\"\nport = 3\n").unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");
        let err = Settings::from_toml("[[rules]]\nendpoint = \"x\"\nlimt = 3\n").unwrap_err();
        assert!(err.to_string().contains("limt"), "{err}");
    }

    #[test]
    fn unknown_backend_is_rejected() {
        let err = Settings::from_toml("[store]\nbackend = \"etcd\"\n").unwrap_err();
        assert!(err.to_string().contains("etcd"), "{err}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = Settings::load_with_env(Some(Path::new("/nonexistent/rl.toml")), Some(HashMap::new())).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/rl.toml"), "{err}");
    }

    #[test]
    fn invalid_server_settings_name_the_field() {
        let err = Settings::from_toml("[server]\nmax_key_bytes = 0\n").unwrap_err();
        assert!(err.to_string().contains("server.max_key_bytes"), "{err}");
        let err = Settings::from_toml("[server]\nshutdown_timeout = \"soon\"\n").unwrap_err();
        assert!(err.to_string().contains("soon"), "{err}");
        let err = Settings::from_toml("[log]\nlevel = \"=[\"\n").unwrap_err();
        assert!(err.to_string().contains("log.level"), "{err}");
    }

    #[test]
    fn the_admin_token_is_never_printed() {
        let s = Settings::from_toml("[admin]\ntoken = \"0123456789abcdef-secret\"\n").unwrap();
        assert_eq!(
            s.admin.token.as_ref().map(Secret::expose),
            Some("0123456789abcdef-secret")
        );
        assert!(!format!("{s:?}").contains("secret"));
        let err = Settings::from_toml("[admin]\ntoken = \"short\"\n").unwrap_err();
        assert!(
            err.to_string().contains("admin.token") && !err.to_string().contains("short"),
            "{err}"
        );
    }

    #[test]
    fn durations_parse_like_people_write_them() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("ten").is_err());
        assert_eq!(format_duration(Duration::from_secs(60)), "1m");
    }
}
