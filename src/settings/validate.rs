//! Validation of the non-rule settings, naming the field at fault; the
//! rule sections are validated by [`crate::limiter::rules::RuleSet`], with
//! the same [`Problem`].

use std::fmt;
use std::time::Duration;

use super::{RedisMode, Settings};

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

impl Settings {
    /// Checks the non-rule settings; rules are checked by
    /// [`crate::limiter::rules::RuleSet::from_settings`].
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
        let grpc = &self.grpc;
        if !(1024..=4 * 1024 * 1024).contains(&grpc.max_message_bytes) {
            problems.push(Problem::new(
                "grpc.max_message_bytes",
                "must be between 1024 and 4194304",
            ));
        }
        if !(1..=1000).contains(&grpc.max_descriptors) {
            problems.push(Problem::new("grpc.max_descriptors", "must be between 1 and 1000"));
        }
        let mut domains = std::collections::HashSet::new();
        for (i, d) in grpc.domains.iter().enumerate() {
            if d.domain.is_empty() {
                problems.push(Problem::new(format!("grpc.domains[{i}].domain"), "must not be empty"));
            } else if !domains.insert(d.domain.as_str()) {
                problems.push(Problem::new(
                    format!("grpc.domains[{i}].domain"),
                    format!("{:?} is configured twice", d.domain),
                ));
            }
            if d.endpoint_entry.is_some() && d.endpoint_template.is_some() {
                problems.push(Problem::new(
                    format!("grpc.domains[{i}].endpoint_template"),
                    "set endpoint_entry or endpoint_template, not both",
                ));
            }
            if d.key_entries.as_ref().is_some_and(Vec::is_empty) {
                problems.push(Problem::new(
                    format!("grpc.domains[{i}].key_entries"),
                    "must name at least one entry (or be left out: every entry forms the key)",
                ));
            }
        }
        if !(1..=10_000).contains(&self.server.http2_max_concurrent_streams) {
            problems.push(Problem::new(
                "server.http2_max_concurrent_streams",
                "must be between 1 and 10000",
            ));
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
        if redis.cluster_refresh_interval.0 < Duration::from_millis(100) {
            problems.push(Problem::new(
                "store.redis.cluster_refresh_interval",
                "must be at least 100ms",
            ));
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
        if matches!(redis.mode, RedisMode::Standalone | RedisMode::Sentinel) && !redis.nodes.is_empty() {
            problems.push(Problem::new(
                "store.redis.nodes",
                "cluster seed nodes need mode = \"cluster\" or \"auto\"",
            ));
        }
        problems.extend(redis_tls_and_sentinel(redis));
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
        if self.forward.scope_headers.len() > crate::limiter::request::MAX_SCOPES {
            problems.push(Problem::new(
                "forward.scope_headers",
                format!("at most {} scopes", crate::limiter::request::MAX_SCOPES),
            ));
        }
        for (scope, header) in &self.forward.scope_headers {
            if !header_ok(header) {
                problems.push(Problem::new(
                    format!("forward.scope_headers.{scope}"),
                    "must be an HTTP header name",
                ));
            }
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
        problems.extend(self.telemetry.problems());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// `[store.redis]`'s TLS files and Sentinel settings, which only make
/// sense together with the right URL scheme and mode.
/// The TLS files of a section (`store.redis`, `telemetry`): set only
/// when the connection is TLS (`not_tls` says how to make it so), and a
/// client certificate only with its key.
pub(super) fn tls_file_problems(
    section: &str,
    [ca, cert, key]: [&Option<std::path::PathBuf>; 3],
    tls: bool,
    not_tls: &str,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (name, file) in [("tls_ca_file", ca), ("tls_cert_file", cert), ("tls_key_file", key)] {
        if file.is_some() && !tls {
            problems.push(Problem::new(
                format!("{section}.{name}"),
                format!("is set but {not_tls}"),
            ));
        }
    }
    if cert.is_some() != key.is_some() {
        problems.push(Problem::new(
            format!("{section}.tls_cert_file"),
            "mutual TLS needs both tls_cert_file and tls_key_file",
        ));
    }
    problems
}

fn redis_tls_and_sentinel(redis: &super::RedisSettings) -> Vec<Problem> {
    let mut problems = tls_file_problems(
        "store.redis",
        [&redis.tls_ca_file, &redis.tls_cert_file, &redis.tls_key_file],
        redis.uses_tls(),
        "the connection is not TLS: use a rediss:// url",
    );
    let sentinel = redis.mode == RedisMode::Sentinel;
    if sentinel && redis.sentinels.is_empty() {
        problems.push(Problem::new(
            "store.redis.sentinels",
            "mode = \"sentinel\" needs at least one sentinel address (host:port)",
        ));
    }
    if sentinel && redis.service_name.trim().is_empty() {
        problems.push(Problem::new(
            "store.redis.service_name",
            "mode = \"sentinel\" needs the name the sentinels monitor the master by",
        ));
    }
    if !sentinel && !redis.sentinels.is_empty() {
        problems.push(Problem::new(
            "store.redis.sentinels",
            "sentinel addresses need mode = \"sentinel\"",
        ));
    }
    problems
}
