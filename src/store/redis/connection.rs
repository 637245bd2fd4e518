//! Reaching Redis: the fred configuration from `[store.redis]` (a
//! standalone server or a cluster, asked when `mode = "auto"`, or a master
//! found through Redis Sentinel), TLS and credentials, with the
//! reconnection policy and timeouts every connection shares, and the
//! connection pool and pub/sub clients built from it.
//!
//! Connections reconnect with exponential backoff plus random jitter, so
//! replicas do not reconnect in lockstep when Redis comes back. Every write
//! counts as an attempt, so a check is written at most three times (see the
//! parent module).

use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::{
    Builder, ClientLike, Config, Error as FredError, ErrorKind, Pool, ReconnectPolicy, Server, ServerConfig, TcpConfig,
};
use fred::types::config::ReconnectError;
use fred::types::InfoKind;

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
    #[error("{field}: {reason}")]
    Tls { field: &'static str, reason: String },
    #[error("cannot load the Lua scripts into Redis: {0}")]
    Scripts(#[source] FredError),
}

/// How to reach Redis: the resolved configuration and the settings. Makes
/// the pool and pub/sub clients alike.
#[derive(Clone)]
pub struct Connector {
    config: Config,
    settings: RedisSettings,
    clustered: bool,
}

impl Connector {
    /// Resolves the servers, asking one whether it runs in cluster mode
    /// when `mode = "auto"`.
    pub async fn resolve(settings: &RedisSettings) -> Result<Connector, ConnectError> {
        let (config, clustered) = server_config(settings).await?;
        Ok(Connector {
            config,
            settings: settings.clone(),
            clustered,
        })
    }

    /// Whether the servers are a Redis Cluster.
    pub fn is_clustered(&self) -> bool {
        self.clustered
    }

    /// The servers, for messages.
    pub fn target(&self) -> String {
        describe(&self.config)
    }

    /// A connected pool of `pool_size` connections; fails if Redis cannot
    /// be reached within `connect_timeout`.
    pub async fn pool(&self) -> Result<Pool, ConnectError> {
        let target = self.target();
        let pool = builder(self.config.clone(), &self.settings, !self.clustered)
            .build_pool(self.settings.pool_size)
            .map_err(|source| ConnectError::Connect {
                target: target.clone(),
                source,
            })?;
        match tokio::time::timeout(self.settings.connect_timeout.0, pool.init()).await {
            Ok(Ok(_handle)) => Ok(pool),
            Ok(Err(source)) => Err(ConnectError::Connect { target, source }),
            Err(_) => {
                let _ = pool.quit().await;
                Err(ConnectError::Connect {
                    target,
                    source: FredError::new(ErrorKind::Timeout, "connection timed out"),
                })
            }
        }
    }

    /// The cluster's nodes as configured, to ask for the slot map.
    pub fn seeds(&self) -> Vec<(String, u16)> {
        self.config
            .server
            .hosts()
            .into_iter()
            .map(|s| (s.host.to_string(), s.port))
            .collect()
    }

    /// A pool of `pool_size` connections to one node (a master of the
    /// cluster) alone, with the same policies; not yet connected.
    pub fn node_pool(&self, host: &str, port: u16) -> Result<Pool, FredError> {
        let mut config = self.config.clone();
        config.server = ServerConfig::new_centralized(host, port);
        builder(config, &self.settings, false).build_pool(self.settings.pool_size)
    }

    /// The resolved fred configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A pub/sub client for `config` with the same policies; not yet
    /// connected.
    pub fn subscriber_for(&self, config: Config) -> Result<SubscriberClient, FredError> {
        builder(config, &self.settings, false).build_subscriber_client()
    }

    /// A connected pub/sub client with the same servers and policies.
    pub async fn subscriber(&self) -> Result<SubscriberClient, FredError> {
        let client = builder(self.config.clone(), &self.settings, !self.clustered).build_subscriber_client()?;
        tokio::time::timeout(self.settings.connect_timeout.0, client.init())
            .await
            .map_err(|_| FredError::new(ErrorKind::Timeout, "connection timed out"))??;
        Ok(client)
    }
}

/// `follow_role_changes`: a server that answers `READONLY` (it was
/// demoted to a replica: a Sentinel failover, or a managed service's
/// endpoint that moved) or `LOADING` gets its connection closed and
/// opened again — through the sentinels, or the address's DNS — and the
/// command written once more (it did not run). Not for a cluster's
/// masters, whose role changes the slot map follows (see
/// [`super::shards`]).
fn builder(config: Config, settings: &RedisSettings, follow_role_changes: bool) -> Builder {
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
            c.reconnect_errors = if follow_role_changes {
                vec![
                    ReconnectError::ReadOnly,
                    ReconnectError::Loading,
                    ReconnectError::MasterDown,
                ]
            } else {
                Vec::new()
            };
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
    let mut config = parse_url(&settings.url)?;
    if let Some(username) = &settings.username {
        config.username = Some(username.clone());
    }
    if let Some(password) = &settings.password {
        config.password = Some(password.expose().to_owned());
    }
    config.tls = super::tls::config(settings).map_err(|e| ConnectError::Tls {
        field: e.field,
        reason: e.reason,
    })?;
    let nodes = settings
        .nodes
        .iter()
        .map(|node| parse_host_port(node))
        .collect::<Result<Vec<_>, _>>()?;
    if settings.mode == RedisMode::Sentinel {
        let sentinels = settings
            .sentinels
            .iter()
            .map(|node| parse_host_port(node))
            .collect::<Result<Vec<_>, _>>()?;
        config.server = ServerConfig::Sentinel {
            hosts: sentinels
                .into_iter()
                .map(|(host, port)| Server::new(host, port))
                .collect(),
            service_name: settings.service_name.clone(),
            username: settings.sentinel_username.clone(),
            password: settings.sentinel_password.as_ref().map(|p| p.expose().to_owned()),
        };
        return Ok((config, false));
    }
    let clustered = match settings.mode {
        RedisMode::Standalone | RedisMode::Sentinel => false,
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

/// The URL's server, credentials and database. TLS is set apart from the
/// scheme (see [`super::tls`]): fred would otherwise load the system's roots
/// itself, whatever `tls_ca_file` says.
fn parse_url(url: &str) -> Result<Config, ConnectError> {
    let trimmed = url.trim();
    let plain = match trimmed.get(..9) {
        Some(scheme) if scheme.eq_ignore_ascii_case("rediss://") => format!("redis://{}", &trimmed[9..]),
        _ => trimmed.to_owned(),
    };
    Config::from_url(&plain).map_err(|e| ConnectError::Address {
        address: redact(url),
        reason: e.details().to_owned(),
    })
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://***@{host}"),
        _ => url.to_owned(),
    }
}

/// Asks one server (`INFO cluster`) whether cluster mode is enabled.
async fn cluster_enabled(config: &Config, settings: &RedisSettings) -> Result<bool, ConnectError> {
    let target = describe(config);
    let client = builder(config.clone(), settings, false)
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
}
