//! The shared store: state in Redis (one server or a Redis Cluster),
//! updated by one Lua script per algorithm, so that any number of replicas
//! enforce one limit exactly.
//!
//! - One check is one run of its algorithm's script: one `EVALSHA` round
//!   trip on a pooled connection, or on a standalone Redis one turn of a
//!   batched call shared with the checks waiting on that connection
//!   ([`batch`]). The script reads the state, decides, writes the new state
//!   and its TTL atomically.
//! - Time comes from Redis (`TIME` inside the script), never from the
//!   replica, so clock skew between replicas cannot mint or lose capacity.
//! - A check is written at most three times: a `MOVED`/`ASK` redirection
//!   (the script did not run) or a connection lost before the reply (it may
//!   have run, so a resend may consume twice — never admit more) are retried
//!   by the client within `command_timeout`; past that the failure goes to
//!   the caller with [`StoreError::transient`] set.
//! - Connections reconnect with exponential backoff plus random jitter, so
//!   replicas do not reconnect in lockstep when Redis comes back.

pub mod batch;
pub mod keys;
pub mod scripts;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::KeysInterface;
use fred::prelude::{
    Builder, ClientLike, Config, Error as FredError, ErrorKind, Pool, ReconnectPolicy, ServerConfig, TcpConfig,
};
use fred::types::InfoKind;

use self::batch::Batcher;
use self::keys::KeyLayout;
use self::scripts::Scripts;
use super::{Store, StoreError, StoreKey};
use crate::core::{Clock, Cost, Decision, Policy, Timestamp};
use crate::metrics::Metrics;
use crate::settings::{RedisMode, RedisSettings};

/// Redis could not be configured or reached at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("store.redis: invalid address {address:?}: {reason}")]
    Address { address: String, reason: String },
    #[error("cannot connect to Redis at {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: FredError,
    },
    #[error("cannot load the Lua scripts into Redis: {0}")]
    Scripts(#[source] FredError),
}

/// Where a check's time comes from.
#[derive(Clone)]
pub enum TimeSource {
    /// `TIME` on the Redis server (production).
    Server,
    /// A clock of the caller's, passed to the script (tests that compare
    /// the scripts with the Rust core at identical times).
    Given(Arc<dyn Clock>),
}

impl TimeSource {
    /// The `now_us` argument of a script: empty for the server's `TIME`.
    pub fn argument(&self) -> String {
        match self {
            TimeSource::Server => String::new(),
            TimeSource::Given(clock) => clock.now().as_micros().to_string(),
        }
    }
}

/// State in Redis.
pub struct RedisStore {
    pool: Pool,
    /// Kept to build the pub/sub client of the control plane.
    config: Config,
    settings: RedisSettings,
    scripts: Arc<Scripts>,
    layout: KeyLayout,
    time: TimeSource,
    clustered: bool,
    metrics: Arc<Metrics>,
    /// Started on the first check, when batching applies (standalone,
    /// `batch = true`), so it sees the final clock and metrics.
    batcher: std::sync::OnceLock<Option<Batcher>>,
}

impl RedisStore {
    /// Connects the pool (failing if Redis cannot be reached within
    /// `connect_timeout`) and loads the scripts.
    pub async fn connect(settings: &RedisSettings) -> Result<RedisStore, ConnectError> {
        let (config, clustered) = server_config(settings).await?;
        let target = describe(&config);
        let pool = builder(config.clone(), settings)
            .build_pool(settings.pool_size)
            .map_err(|source| ConnectError::Connect {
                target: target.clone(),
                source,
            })?;
        let connected = tokio::time::timeout(settings.connect_timeout.0, pool.init()).await;
        match connected {
            Ok(Ok(_handle)) => {}
            Ok(Err(source)) => return Err(ConnectError::Connect { target, source }),
            Err(_) => {
                let _ = pool.quit().await;
                return Err(ConnectError::Connect {
                    target,
                    source: FredError::new(ErrorKind::Timeout, "connection timed out"),
                });
            }
        }
        let store = RedisStore {
            pool,
            config,
            settings: settings.clone(),
            scripts: Arc::new(Scripts::new()),
            layout: KeyLayout::new(&settings.key_prefix),
            time: TimeSource::Server,
            clustered,
            metrics: Arc::new(Metrics::new()),
            batcher: std::sync::OnceLock::new(),
        };
        store.load_scripts().await.map_err(ConnectError::Scripts)?;
        tracing::info!(target = %target, clustered, pool_size = settings.pool_size, "connected to Redis");
        Ok(store)
    }

    /// Makes scripts use `clock` instead of the server's `TIME`. For tests
    /// only: replicas must share one clock, which only the server provides.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> RedisStore {
        self.time = TimeSource::Given(clock);
        self
    }

    /// Counts Redis operations and errors in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> RedisStore {
        self.metrics = metrics;
        self
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Pool size and connected connections, for the gauges.
    pub fn pool_state(&self) -> (usize, usize) {
        let clients = self.pool.clients();
        (clients.len(), clients.iter().filter(|c| c.is_connected()).count())
    }

    /// Whether Redis answers a PING within the command timeout.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.metrics.redis_operations.with_label_values(&["ping"]).inc();
        let result: Result<String, FredError> = self.pool.next().ping(None).await;
        result.map(|_| ()).map_err(|e| self.failed(e))
    }

    /// Counts a failed command and classifies it.
    pub fn failed(&self, e: FredError) -> StoreError {
        self.metrics.redis_errors.with_label_values(&[error_kind(&e)]).inc();
        store_error(e)
    }

    /// Whether the store talks to a Redis Cluster.
    pub fn is_clustered(&self) -> bool {
        self.clustered
    }

    /// Loads every script on every primary (done at start-up; `NOSCRIPT`
    /// later reloads on demand).
    pub async fn load_scripts(&self) -> Result<(), FredError> {
        for script in self.scripts.all() {
            script.load(self.pool.next()).await?;
        }
        Ok(())
    }

    /// The key names a check of `key` under `policy` touches.
    pub fn key_names(&self, key: StoreKey<'_>, policy: &Policy) -> Vec<String> {
        self.layout.state_keys(key, policy.algorithm()).to_vec()
    }

    /// The connection pool (shared with the control plane).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn key_prefix(&self) -> &str {
        &self.settings.key_prefix
    }

    /// A connected pub/sub client with the same servers and policies.
    pub async fn subscriber(&self) -> Result<SubscriberClient, FredError> {
        let client = builder(self.config.clone(), &self.settings).build_subscriber_client()?;
        tokio::time::timeout(self.settings.connect_timeout.0, client.init())
            .await
            .map_err(|_| FredError::new(ErrorKind::Timeout, "connection timed out"))??;
        Ok(client)
    }

    /// Deletes every key of `key`, whatever algorithm wrote it.
    async fn delete_all(&self, key: StoreKey<'_>) -> Result<(), StoreError> {
        let names: Vec<String> = crate::core::Algorithm::ALL
            .into_iter()
            .flat_map(|a| self.layout.state_keys(key, a).to_vec())
            .collect();
        // All names share one hash tag, so one DEL works on a cluster too.
        self.metrics.redis_operations.with_label_values(&["del"]).inc();
        let _: i64 = self.pool.del(names).await.map_err(|e| self.failed(e))?;
        Ok(())
    }

    /// Closes the pool's connections.
    pub async fn quit(&self) {
        let _ = self.pool.quit().await;
    }

    /// The batcher, when checks are batched.
    fn batcher(&self) -> Option<&Batcher> {
        self.batcher
            .get_or_init(|| {
                (self.settings.batch && !self.clustered).then(|| {
                    Batcher::start(
                        self.pool.clients(),
                        self.scripts.clone(),
                        self.time.clone(),
                        self.metrics.clone(),
                    )
                })
            })
            .as_ref()
    }

    async fn run(&self, key: StoreKey<'_>, policy: &Policy, cost: Cost) -> Result<Decision, StoreError> {
        let keys = self.layout.state_keys(key, policy.algorithm()).to_vec();
        let quota = policy.quota();
        let args = [
            quota.limit(),
            quota.window_us(),
            quota.emission_interval_us(),
            cost.get(),
        ];
        if let Some(batcher) = self.batcher() {
            // The lane's command has fred's timeout; this bounds the wait in
            // the queue before it, too.
            let reply = tokio::time::timeout(
                self.settings.command_timeout.0,
                batcher.check(policy.algorithm(), keys, args),
            )
            .await
            .unwrap_or_else(|_| Err(FredError::new(ErrorKind::Timeout, "Request timed out.")))
            .map_err(|e| self.failed(e))?;
            return decision_from_reply(&reply);
        }
        let args = batch::single_args(args, self.time.argument());
        self.metrics.redis_operations.with_label_values(&["evalsha"]).inc();
        let reply: Vec<i64> = self
            .scripts
            .get(policy.algorithm())
            .evalsha_with_reload(self.pool.next(), keys, args)
            .await
            .map_err(|e| self.failed(e))?;
        decision_from_reply(&reply)
    }
}

impl Store for RedisStore {
    async fn check(&self, key: StoreKey<'_>, policy: &Policy, cost: Cost) -> Result<Decision, StoreError> {
        self.run(key, policy, cost).await
    }

    async fn reset(&self, key: StoreKey<'_>) -> Result<(), StoreError> {
        self.delete_all(key).await
    }

    /// On a standalone Redis, the checks go to one lane, so they leave in
    /// as few script calls as possible (usually one).
    fn together<F>(&self, checks: F) -> impl Future<Output = F::Output> + Send
    where
        F: Future + Send,
    {
        batch::together(self.batcher().map(Batcher::pick_lane), checks)
    }
}

/// `{allowed, limit, remaining, reset_after_us, retry_after_us, now_us}`;
/// `retry_after_us` is -1 for a cost that can never fit.
fn decision_from_reply(reply: &[i64]) -> Result<Decision, StoreError> {
    let &[allowed, limit, remaining, reset_after, retry_after, now] = reply else {
        return Err(StoreError {
            transient: false,
            message: format!("unexpected script reply {reply:?}"),
        });
    };
    let non_negative = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(Decision {
        allowed: allowed == 1,
        limit: non_negative(limit),
        remaining: non_negative(remaining),
        reset_after_us: non_negative(reset_after),
        retry_after_us: if retry_after < 0 {
            u64::MAX
        } else {
            non_negative(retry_after)
        },
        at: Timestamp::from_micros(non_negative(now)),
    })
}

/// A low-cardinality name for a Redis failure.
fn error_kind(e: &FredError) -> &'static str {
    let details = e.details();
    match e.kind() {
        ErrorKind::Timeout => "timeout",
        ErrorKind::IO | ErrorKind::Canceled => "connection",
        ErrorKind::Cluster | ErrorKind::Routing => "cluster",
        _ if details.starts_with("OOM") => "oom",
        _ if details.starts_with("NOSCRIPT") => "noscript",
        _ if details.starts_with("LOADING") || details.starts_with("BUSY") => "busy",
        _ if details.contains("script") => "script",
        _ => "other",
    }
}

fn store_error(e: FredError) -> StoreError {
    let details = e.details();
    let transient = matches!(
        e.kind(),
        ErrorKind::IO
            | ErrorKind::Timeout
            | ErrorKind::Canceled
            | ErrorKind::Cluster
            | ErrorKind::Routing
            | ErrorKind::Backpressure
    ) || [
        "LOADING",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "MASTERDOWN",
        "BUSY",
        "OOM",
        "READONLY",
    ]
    .iter()
    .any(|prefix| details.starts_with(prefix));
    StoreError {
        transient,
        message: format!("redis {:?} error: {details}", e.kind()),
    }
}

fn builder(config: Config, settings: &RedisSettings) -> Builder {
    let mut policy = ReconnectPolicy::new_exponential(
        0,
        millis(settings.reconnect_min_delay.0),
        millis(settings.reconnect_max_delay.0),
        2,
    );
    policy.set_jitter(millis(settings.reconnect_jitter.0));
    let mut builder = Builder::from_config(config);
    builder
        .set_policy(policy)
        .with_connection_config(|c| {
            c.connection_timeout = settings.connect_timeout.0;
            c.internal_command_timeout = settings.connect_timeout.0;
            // Every write counts as an attempt, including the one after a
            // MOVED or ASK redirection (the script did not run). Three allow
            // a redirection after a reconnection; the only resend that can
            // consume twice follows a connection lost mid-command.
            c.max_command_attempts = 3;
            c.max_redirections = 5;
            c.tcp = TcpConfig {
                nodelay: Some(true),
                ..Default::default()
            };
        })
        .with_performance_config(|p| {
            p.default_command_timeout = settings.command_timeout.0;
        });
    builder
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Builds the fred configuration, asking the server whether it runs in
/// cluster mode when `mode = "auto"`.
async fn server_config(settings: &RedisSettings) -> Result<(Config, bool), ConnectError> {
    let mut config = Config::from_url(&settings.url).map_err(|e| ConnectError::Address {
        address: settings.url.clone(),
        reason: e.details().to_owned(),
    })?;
    let nodes = settings
        .nodes
        .iter()
        .map(|node| parse_host_port(node))
        .collect::<Result<Vec<_>, _>>()?;
    let clustered = match settings.mode {
        RedisMode::Standalone => false,
        RedisMode::Cluster => true,
        RedisMode::Auto if !nodes.is_empty() => true,
        RedisMode::Auto => cluster_enabled(&config, settings).await?,
    };
    if clustered {
        let hosts = if nodes.is_empty() {
            config
                .server
                .hosts()
                .into_iter()
                .map(|s| (s.host.to_string(), s.port))
                .collect()
        } else {
            nodes
        };
        config.server = ServerConfig::new_clustered(hosts);
    }
    Ok((config, clustered))
}

/// Asks one server (`INFO cluster`) whether cluster mode is enabled.
async fn cluster_enabled(config: &Config, settings: &RedisSettings) -> Result<bool, ConnectError> {
    let target = describe(config);
    let client = builder(config.clone(), settings)
        .build()
        .map_err(|source| ConnectError::Connect {
            target: target.clone(),
            source,
        })?;
    let probe = async {
        client.init().await?;
        let info: String = client.info(Some(InfoKind::Cluster)).await?;
        Ok::<_, FredError>(info.lines().any(|line| line.trim() == "cluster_enabled:1"))
    };
    let result = tokio::time::timeout(settings.connect_timeout.0, probe).await;
    let _ = client.quit().await;
    match result {
        Ok(Ok(enabled)) => Ok(enabled),
        Ok(Err(source)) => Err(ConnectError::Connect { target, source }),
        Err(_) => Err(ConnectError::Connect {
            target,
            source: FredError::new(ErrorKind::Timeout, "connection timed out"),
        }),
    }
}

/// `redis://host:port`, `rediss://host:port` or `host:port`.
fn parse_host_port(node: &str) -> Result<(String, u16), ConnectError> {
    let bad = |reason: &str| ConnectError::Address {
        address: node.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = node.split_once("://").map_or(node, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let rest = rest.split('/').next().unwrap_or(rest);
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("expected host:port"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| bad("the port is not a number from 1 to 65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(bad("expected host:port"));
    }
    Ok((host.to_owned(), port))
}

fn describe(config: &Config) -> String {
    config
        .server
        .hosts()
        .iter()
        .map(|s| format!("{}:{}", s.host, s.port))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_become_decisions() {
        let d = decision_from_reply(&[1, 10, 9, 1_000, 0, 1_700_000_000_000_000]).unwrap();
        assert!(d.allowed);
        assert_eq!(
            (d.limit, d.remaining, d.reset_after_us, d.retry_after_us),
            (10, 9, 1_000, 0)
        );
        assert_eq!(d.at, Timestamp::from_micros(1_700_000_000_000_000));
        let never = decision_from_reply(&[0, 10, 9, 1_000, -1, 5]).unwrap();
        assert_eq!(never.retry_after_us, u64::MAX);
        assert!(!decision_from_reply(&[1, 2, 3]).unwrap_err().transient);
    }

    #[test]
    fn node_addresses_parse() {
        assert_eq!(
            parse_host_port("redis://127.0.0.1:7000").unwrap(),
            ("127.0.0.1".into(), 7000)
        );
        assert_eq!(parse_host_port("10.0.0.1:6379").unwrap(), ("10.0.0.1".into(), 6379));
        assert_eq!(parse_host_port("redis://user:pw@h:1/0").unwrap(), ("h".into(), 1));
        assert_eq!(parse_host_port("redis://[::1]:7000").unwrap(), ("::1".into(), 7000));
        for bad in ["", "host", "host:", "host:99999", "redis://:7000", "h:0"] {
            assert!(parse_host_port(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn transient_errors_are_told_apart() {
        assert!(store_error(FredError::new(ErrorKind::Timeout, "t")).transient);
        assert!(store_error(FredError::new(ErrorKind::IO, "reset")).transient);
        assert!(store_error(FredError::new(ErrorKind::Unknown, "LOADING Redis is loading")).transient);
        assert!(!store_error(FredError::new(ErrorKind::Unknown, "ERR Error running script")).transient);
    }
}
