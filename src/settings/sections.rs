//! The sections of the configuration, as written: every field with its
//! default, unknown fields refused. The rule sections (`[defaults]`,
//! `[tiers]`, `[[rules]]`) are kept as written here;
//! [`crate::limiter::rules::RuleSet`] resolves and validates them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration::HumanDuration;
use crate::limiter::FailureMode;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
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
    /// Requests one HTTP/2 connection may have in flight at once.
    pub http2_max_concurrent_streams: u32,
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
            http2_max_concurrent_streams: 100,
        }
    }
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
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

/// `[store.breaker]`: the circuit breaker around the store.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// In this process: exact for one replica, not shared between replicas.
    #[default]
    Memory,
    /// In Redis (one server or a cluster): shared by every replica.
    Redis,
}

/// `[store.redis]`: how to reach Redis.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `standalone`, `cluster`, `sentinel`, or `auto` (ask the server
    /// whether cluster mode is enabled).
    pub mode: RedisMode,
    /// Standalone server, or one cluster seed node:
    /// `redis://[user:password@]host:port[/db]`; `rediss://` for TLS. With
    /// `mode = "sentinel"` only its scheme (TLS or not), credentials and
    /// database count: the master's address comes from the sentinels.
    pub url: String,
    /// AUTH user, overriding the URL's (Redis 6 ACLs).
    pub username: Option<String>,
    /// AUTH password, overriding the URL's; set it from the environment
    /// (`RATELIMITER__STORE__REDIS__PASSWORD`) to keep it out of files.
    pub password: Option<Secret>,
    /// A file holding the password instead (a mounted secret); one
    /// trailing newline is ignored.
    pub password_file: Option<PathBuf>,
    /// TLS (`rediss://`): PEM file of the certificate authorities to trust;
    /// absent, the system's roots. The server name is always checked.
    pub tls_ca_file: Option<PathBuf>,
    /// TLS: PEM client certificate (chain) for mutual TLS; needs
    /// `tls_key_file`.
    pub tls_cert_file: Option<PathBuf>,
    /// TLS: PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// `mode = "sentinel"`: the sentinels' `host:port` addresses.
    pub sentinels: Vec<String>,
    /// `mode = "sentinel"`: the name the sentinels monitor the master by.
    pub service_name: String,
    /// `mode = "sentinel"`: AUTH for the sentinels themselves, when they
    /// ask for one (the master's is `password`).
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<Secret>,
    /// Cluster seed nodes (`redis://host:port` or `host:port`); when set,
    /// `url` only contributes credentials.
    pub nodes: Vec<String>,
    /// Connections in the pool; in a cluster, per master.
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
    /// Cluster only: how often the slot map is read again when nothing
    /// asks sooner (a failure or a redirection does; see
    /// [`crate::store::redis::shards`]).
    pub cluster_refresh_interval: HumanDuration,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            mode: RedisMode::Auto,
            url: "redis://127.0.0.1:6379".to_owned(),
            username: None,
            password: None,
            password_file: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            sentinels: Vec::new(),
            service_name: String::new(),
            sentinel_username: None,
            sentinel_password: None,
            nodes: Vec::new(),
            pool_size: 4,
            connect_timeout: HumanDuration(Duration::from_secs(2)),
            command_timeout: HumanDuration(Duration::from_millis(250)),
            key_prefix: "rl".to_owned(),
            reconnect_min_delay: HumanDuration(Duration::from_millis(50)),
            reconnect_max_delay: HumanDuration(Duration::from_secs(2)),
            reconnect_jitter: HumanDuration(Duration::from_millis(100)),
            batch: true,
            cluster_refresh_interval: HumanDuration(Duration::from_secs(5)),
        }
    }
}

impl RedisSettings {
    /// Whether connections use TLS: a `rediss://` url or seed node.
    pub fn uses_tls(&self) -> bool {
        let tls = |url: &str| url.trim_start().to_ascii_lowercase().starts_with("rediss://");
        tls(&self.url) || self.nodes.iter().any(|n| tls(n))
    }

    /// The TLS client files, named by their settings.
    pub fn tls_files(&self) -> crate::tls::ClientFiles<'_> {
        crate::tls::ClientFiles::new(
            &self.tls_ca_file,
            &self.tls_cert_file,
            &self.tls_key_file,
            [
                "store.redis.tls_ca_file",
                "store.redis.tls_cert_file",
                "store.redis.tls_key_file",
            ],
        )
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RedisMode {
    #[default]
    Auto,
    Standalone,
    Cluster,
    /// A master and its replicas watched by Redis Sentinel: the service
    /// asks the sentinels for the master, and again after a failover.
    Sentinel,
}

/// The deny cache of the Redis backend: denials answered locally until
/// their `retry_after` (see [`crate::limiter::deny_cache`]).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
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

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
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

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `ratelimiter=debug,info`;
    /// `RUST_LOG` wins when set.
    pub level: Option<String>,
    /// How keys appear in logs: `fingerprint` (12 hex digits of their
    /// SHA-256, stable across replicas) or `raw`.
    pub keys: LogKeys,
}

/// `log.keys`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogKeys {
    #[default]
    Fingerprint,
    Raw,
}

/// `[keys]`: whether callers' keys are hashed before anything keeps them.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct KeysSettings {
    pub hash: KeyHash,
    /// The HMAC key for `hash = "hmac-sha256"`: a file holding it (at
    /// least 16 bytes; a trailing newline is dropped).
    pub hmac_secret_file: Option<std::path::PathBuf>,
}

/// `keys.hash`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KeyHash {
    /// Keys are kept as sent.
    #[default]
    None,
    /// SHA-256 of the key, in hex.
    Sha256,
    /// HMAC-SHA-256 of the key under `hmac_secret_file`, in hex.
    HmacSha256,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// `[admin]`: the operators' API.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Bearer token for `/admin`; without one the admin API is disabled.
    pub token: Option<Secret>,
    /// A file holding the token instead (a mounted secret); one trailing
    /// newline is ignored.
    pub token_file: Option<PathBuf>,
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
            token_file: None,
            listen: None,
            resync_interval: HumanDuration(Duration::from_secs(5)),
            top_keys: 100,
        }
    }
}

/// A value that is never printed: `Debug` shows `"***"`.
#[derive(Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
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
    /// Scopes read from headers, by scope name: `{ org = "x-org-id" }`
    /// gives the request `"scopes": {"org": <x-org-id's value>}` for rules
    /// whose limits count per org.
    pub scope_headers: BTreeMap<String, String>,
    /// Identity headers that carry credentials: their key is kept as
    /// `<header>:sha256:<hex>` (the client crate's extractor writes the
    /// same), never the credential itself. (`authorization` gives the
    /// bearer JWT's `sub`, an identity, not the token.)
    pub hash_headers: Vec<String>,
}

impl Default for ForwardSettings {
    fn default() -> Self {
        let v = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
        ForwardSettings {
            key_headers: v(&["x-api-key", "authorization", "x-org-id", "x-forwarded-for"]),
            method_headers: v(&["x-forwarded-method", "x-original-method"]),
            uri_headers: v(&["x-original-uri", "x-forwarded-uri"]),
            tier_header: "x-ratelimit-tier".to_owned(),
            scope_headers: BTreeMap::new(),
            hash_headers: v(&["x-api-key"]),
        }
    }
}

/// `[reload]`: re-reading the rules file while running.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DefaultsSpec {
    #[schemars(schema_with = "algorithm_schema")]
    pub algorithm: String,
    /// The tier of requests that name none.
    pub tier: String,
    pub limit: i64,
    pub window: String,
    /// How long a `concurrency` limit's lease lasts unless released or
    /// renewed; the other algorithms ignore it.
    pub lease_ttl: String,
    /// Evaluate every rule without enforcing it (rules may say otherwise):
    /// a check over the limit is allowed, consumes nothing, and is answered
    /// `reason: "shadow_limited"`.
    pub shadow: bool,
    /// Several limits for the default rule (and for rules that set no
    /// limit of their own), in place of `algorithm`/`limit`/`window`.
    pub limits: Option<Vec<NamedLimitSpec>>,
}

impl Default for DefaultsSpec {
    fn default() -> Self {
        DefaultsSpec {
            algorithm: "token_bucket".to_owned(),
            tier: "default".to_owned(),
            limit: 100,
            window: "10s".to_owned(),
            lease_ttl: "30s".to_owned(),
            shadow: false,
            limits: None,
        }
    }
}

/// A partial limit: whatever is set overrides the layer below it.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    #[serde(default)]
    #[schemars(schema_with = "algorithm_schema")]
    pub algorithm: Option<String>,
    pub limit: Option<i64>,
    pub window: Option<String>,
    pub lease_ttl: Option<String>,
}

/// One of a rule's several limits: a name, what it counts per, and a
/// partial limit layered over `[tiers]` and `[defaults]` like a rule's.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedLimitSpec {
    pub name: String,
    /// `"key"` (the default): per request key; any other name: per value of
    /// that scope of the request (`"scopes": {"org": "acme"}`).
    pub by: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "algorithm_schema")]
    pub algorithm: Option<String>,
    pub limit: Option<i64>,
    pub window: Option<String>,
    pub lease_ttl: Option<String>,
    #[serde(default)]
    pub tiers: BTreeMap<String, LimitSpec>,
}

/// `[[rules]]`: one endpoint's limit, with optional per-tier overrides.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub endpoint: String,
    #[serde(default)]
    #[schemars(schema_with = "algorithm_schema")]
    pub algorithm: Option<String>,
    pub limit: Option<i64>,
    pub window: Option<String>,
    pub lease_ttl: Option<String>,
    /// Overrides `store.failure_mode` for this endpoint.
    #[serde(default)]
    #[schemars(schema_with = "failure_mode_schema")]
    pub failure_mode: Option<String>,
    /// Overrides `defaults.shadow` for this endpoint.
    pub shadow: Option<bool>,
    #[serde(default)]
    pub tiers: BTreeMap<String, LimitSpec>,
    /// Several limits, all or nothing, in place of the rule's own
    /// `algorithm`/`limit`/`window`/`tiers`.
    pub limits: Option<Vec<NamedLimitSpec>>,
    /// What every counter of a check shares its slot by: `"key"` or a
    /// scope; by default the scope the limits count per other than the
    /// key, or the key when there is none.
    pub partition: Option<String>,
}

/// `[grpc]`: Envoy's `envoy.service.ratelimit.v3.RateLimitService` on a
/// listener of its own (off unless `listen` is set).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcSettings {
    pub listen: Option<SocketAddr>,
    /// The largest request message accepted, in bytes.
    pub max_message_bytes: usize,
    /// The most descriptors one request may carry.
    pub max_descriptors: usize,
    /// How each domain's descriptors become checks.
    pub domains: Vec<GrpcDomain>,
}

impl Default for GrpcSettings {
    fn default() -> Self {
        GrpcSettings {
            listen: None,
            max_message_bytes: 64 * 1024,
            max_descriptors: 64,
            domains: Vec::new(),
        }
    }
}

/// `[[grpc.domains]]`: how one domain's descriptors map to checks.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrpcDomain {
    pub domain: String,
    /// The entry whose value is the check's `endpoint` (selects the rule);
    /// absent → the default rule.
    pub endpoint_entry: Option<String>,
    /// Instead of `endpoint_entry`: the endpoint made of entries, e.g.
    /// `"{method} {path}"`; a descriptor lacking one of them gets the
    /// default rule.
    pub endpoint_template: Option<String>,
    /// The entries whose values, joined with `:`, form the key; a
    /// descriptor lacking one matches nothing. Absent → every entry as
    /// `name=value`, joined with `,`.
    pub key_entries: Option<Vec<String>>,
    /// The entry whose value is the check's tier.
    pub tier_entry: Option<String>,
    /// Scope name → the entry whose value fills it.
    #[serde(default)]
    pub scope_entries: BTreeMap<String, String>,
}

/// An algorithm's name, as the schema lists them.
fn algorithm_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = crate::core::Algorithm::EVERY.iter().map(|a| a.as_str()).collect();
    schemars::json_schema!({ "type": "string", "enum": names })
}

/// A failure mode's name, as the schema lists them.
fn failure_mode_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "enum": ["open", "closed", "local"] })
}
