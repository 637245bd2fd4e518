//! Prometheus metrics on an owned registry, rendered at `GET /metrics`.
//!
//! Labels are low-cardinality by construction: `rule` and `tier` come from
//! the configuration (resolved names, never what a caller sent), `decision`,
//! `op`, `kind` and `result` from fixed sets. The caller's key is never a
//! label. Histogram buckets start at 50 µs, since a check decided in memory
//! takes microseconds and one decided by Redis well under a millisecond.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Seconds: 50 µs … 1 s.
const BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// `result` values of `rate_limit_config_reloads_total`.
pub const RELOAD_RESULTS: [&str; 2] = ["success", "failure"];
/// `action` values of `rate_limit_admin_changes_total`.
pub const ADMIN_ACTIONS: [&str; 5] = [
    "override_set",
    "override_deleted",
    "list_entry_set",
    "list_entry_removed",
    "key_reset",
];
/// `kind` values of `redis_errors_total`.
pub const REDIS_ERROR_KINDS: [&str; 8] = [
    "timeout",
    "connection",
    "cluster",
    "oom",
    "noscript",
    "busy",
    "script",
    "other",
];

/// Every metric the service exports.
pub struct Metrics {
    registry: Registry,
    /// `/check` decisions by rule, tier and decision.
    pub requests: IntCounterVec,
    /// Denied `/check`s (decision `limited`) by rule and tier.
    pub exceeded: IntCounterVec,
    /// Whole `/check` handling, parse to response.
    pub check_duration: Histogram,
    /// Store round trips by operation.
    pub store_duration: HistogramVec,
    /// Redis commands by operation.
    pub redis_operations: IntCounterVec,
    /// Redis failures by kind.
    pub redis_errors: IntCounterVec,
    /// Checks per script call on a standalone Redis (1 when not batched).
    pub redis_batch_size: Histogram,
    /// Connections in the Redis pool, and how many are connected.
    pub redis_pool_size: IntGauge,
    pub redis_pool_connected: IntGauge,
    /// Rules reloads by result (`success`, `failure`).
    pub config_reloads: IntCounterVec,
    /// Admin changes by action.
    pub admin_changes: IntCounterVec,
    /// Overrides and list entries in force on this replica.
    pub control_entries: IntGaugeVec,
    /// 1 while the replica accepts traffic, 0 while draining or not ready.
    pub ready: IntGauge,
    /// The store's circuit breaker: 0 closed, 1 half-open, 2 open; on a
    /// cluster, the worst of the masters' breakers.
    pub breaker_state: IntGauge,
    /// Circuit breakers open now (one per cluster master; one otherwise).
    pub breakers_open: IntGauge,
    /// Checks denied from the deny cache, without a store round trip.
    pub deny_cache_hits: IntCounter,
    /// `ShouldRateLimit` calls by domain and gRPC answer (`OK`,
    /// `OVER_LIMIT`, or the status code's name).
    pub grpc_requests: IntCounterVec,
    /// Denials held in the deny cache.
    pub deny_cache_entries: IntGauge,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("a metric registered once");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("a valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("a metric registered once");
    metric
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let check_duration = Histogram::with_opts(
            HistogramOpts::new(
                "rate_limit_check_duration_seconds",
                "Time to handle POST /check, from request to response.",
            )
            .buckets(BUCKETS.to_vec()),
        )
        .expect("a valid metric definition");
        registry
            .register(Box::new(check_duration.clone()))
            .expect("a metric registered once");
        let store_duration = HistogramVec::new(
            HistogramOpts::new(
                "rate_limit_store_duration_seconds",
                "Round trip to the rate-limit store, by operation.",
            )
            .buckets(BUCKETS.to_vec()),
            &["op"],
        )
        .expect("a valid metric definition");
        registry
            .register(Box::new(store_duration.clone()))
            .expect("a metric registered once");
        let redis_batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "redis_batch_checks",
                "Checks decided by one script call on a standalone Redis (batching).",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
        )
        .expect("a valid metric definition");
        registry
            .register(Box::new(redis_batch_size.clone()))
            .expect("a metric registered once");
        let control_entries = IntGaugeVec::new(
            Opts::new(
                "rate_limit_admin_entries",
                "Overrides and list entries in force on this replica.",
            ),
            &["kind"],
        )
        .expect("a valid metric definition");
        registry
            .register(Box::new(control_entries.clone()))
            .expect("a metric registered once");
        let build = IntGaugeVec::new(
            Opts::new("ratelimiter_build_info", "Always 1; labelled with the version."),
            &["version"],
        )
        .expect("a valid metric definition");
        registry
            .register(Box::new(build.clone()))
            .expect("a metric registered once");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            let _ = registry.register(Box::new(process));
        }

        let metrics = Metrics {
            grpc_requests: counter(
                &registry,
                "rate_limit_grpc_requests_total",
                "ShouldRateLimit calls (the gRPC RateLimitService) by domain and answer.",
                &["domain", "code"],
            ),
            requests: counter(
                &registry,
                "rate_limit_requests_total",
                "Decisions by rule, tier, decision and protocol (http or grpc).",
                &["rule", "tier", "decision", "protocol"],
            ),
            exceeded: counter(
                &registry,
                "rate_limit_exceeded_total",
                "POST /check requests denied by their limit, by rule and tier.",
                &["rule", "tier"],
            ),
            check_duration,
            store_duration,
            redis_operations: counter(
                &registry,
                "redis_operations_total",
                "Redis commands sent, by operation.",
                &["op"],
            ),
            redis_errors: counter(
                &registry,
                "redis_errors_total",
                "Redis commands that failed, by kind.",
                &["kind"],
            ),
            redis_batch_size,
            redis_pool_size: gauge(&registry, "redis_pool_connections", "Connections in the Redis pool."),
            redis_pool_connected: gauge(
                &registry,
                "redis_pool_connections_connected",
                "Connections in the Redis pool that are connected.",
            ),
            config_reloads: counter(
                &registry,
                "rate_limit_config_reloads_total",
                "Rules file reloads by result (success, failure).",
                &["result"],
            ),
            admin_changes: counter(
                &registry,
                "rate_limit_admin_changes_total",
                "Changes made through /admin, by action.",
                &["action"],
            ),
            control_entries,
            ready: gauge(
                &registry,
                "rate_limit_ready",
                "1 while the replica is ready for traffic.",
            ),
            breaker_state: gauge(
                &registry,
                "rate_limit_circuit_breaker_state",
                "The store's circuit breaker: 0 closed, 1 half-open, 2 open; on a Redis Cluster, the worst of its masters' breakers.",
            ),
            breakers_open: gauge(
                &registry,
                "rate_limit_circuit_breakers_open",
                "Circuit breakers open now: one per Redis Cluster master, else one for the store.",
            ),
            deny_cache_hits: {
                let metric = IntCounter::new(
                    "rate_limit_deny_cache_hits_total",
                    "POST /check requests denied from the deny cache, without a store round trip.",
                )
                .expect("a valid metric definition");
                registry
                    .register(Box::new(metric.clone()))
                    .expect("a metric registered once");
                metric
            },
            deny_cache_entries: gauge(
                &registry,
                "rate_limit_deny_cache_entries",
                "Denials held in the deny cache (swept periodically).",
            ),
            registry,
        };
        // Series of the fixed label sets exist from the start at 0, so a
        // rate() sees the first event and dashboards show zeros, not gaps.
        for result in RELOAD_RESULTS {
            metrics.config_reloads.with_label_values(&[result]);
        }
        for action in ADMIN_ACTIONS {
            metrics.admin_changes.with_label_values(&[action]);
        }
        for kind in REDIS_ERROR_KINDS {
            metrics.redis_errors.with_label_values(&[kind]);
        }
        metrics.store_duration.with_label_values(&["check"]);
        for kind in ["override", "allow", "block"] {
            metrics.control_entries.with_label_values(&[kind]);
        }
        metrics
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_help_and_type() {
        let m = Metrics::new();
        m.requests
            .with_label_values(&["GET /a", "free", "allowed", "http"])
            .inc();
        m.exceeded.with_label_values(&["GET /a", "free"]).inc();
        m.check_duration.observe(0.0002);
        m.store_duration.with_label_values(&["check"]).observe(0.0004);
        m.redis_operations.with_label_values(&["evalsha"]).inc();
        m.redis_errors.with_label_values(&["timeout"]).inc();
        m.config_reloads.with_label_values(&["success"]).inc();
        m.admin_changes.with_label_values(&["override_set"]).inc();
        let text = m.render();
        for family in [
            "rate_limit_requests_total",
            "rate_limit_exceeded_total",
            "rate_limit_check_duration_seconds",
            "rate_limit_store_duration_seconds",
            "redis_operations_total",
            "redis_errors_total",
            "redis_pool_connections",
            "rate_limit_config_reloads_total",
            "rate_limit_admin_changes_total",
            "rate_limit_ready",
            "ratelimiter_build_info",
        ] {
            assert!(text.contains(&format!("# TYPE {family} ")), "{family} missing:\n{text}");
        }
        assert!(
            text.contains(
                r#"rate_limit_requests_total{decision="allowed",protocol="http",rule="GET /a",tier="free"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"rate_limit_check_duration_seconds_bucket{le="0.00025"} 1"#),
            "{text}"
        );
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }
}
