//! Following a Redis Sentinel failover at once.
//!
//! With `mode = "sentinel"` fred asks the sentinels for the master whenever
//! it connects, and a connection to a master that was demoted is closed on
//! its first `READONLY` reply (see [`super::connection`]). That alone
//! leaves a gap: after a forced failover the old master can go on
//! accepting writes until the sentinels reconfigure it, seconds later, and
//! whatever it counted then is lost when it becomes a replica of the new
//! master. So the store also listens to every sentinel's `+switch-master`
//! announcement for its service and reconnects the pool (and the control
//! plane's subscriber) as soon as one arrives: the old master is left the
//! moment the sentinels agree on the new one.
//!
//! One subscriber per sentinel, so the loss of a sentinel loses no
//! announcement; duplicates only reconnect twice. A sentinel that is down
//! when the store starts is retried, and subscribed to once it answers.

use fred::clients::SubscriberClient;
use fred::prelude::{ClientLike, Config, EventInterface, PubsubInterface, Server, ServerConfig};
use fred::types::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::connection::Connector;

/// The sentinels' announcement of a new master.
const SWITCH_MASTER: &str = "+switch-master";

/// How long to wait before subscribing again after a live connection
/// refused the subscription.
const RESUBSCRIBE_DELAY: std::time::Duration = std::time::Duration::from_millis(500);

/// Watches the sentinels while it lives; each announcement for the
/// service bumps [`SentinelWatch::switches`] after the pool reconnected.
pub struct SentinelWatch {
    tasks: Vec<JoinHandle<()>>,
    switches: watch::Receiver<u64>,
}

impl SentinelWatch {
    /// Subscribes to every sentinel of `connector` (connecting in the
    /// background: a sentinel down at start-up is retried), reconnecting
    /// `pool` when one announces a new master for `service_name`.
    pub fn start(connector: &Connector, pool: fred::prelude::Pool) -> Option<SentinelWatch> {
        let ServerConfig::Sentinel {
            hosts,
            service_name,
            username,
            password,
        } = &connector.config().server
        else {
            return None;
        };
        let (tx, switches) = watch::channel(0u64);
        let mut tasks = Vec::new();
        for host in hosts {
            let config = Config {
                server: ServerConfig::Centralized { server: host.clone() },
                username: username.clone(),
                password: password.clone(),
                database: None,
                // A sentinel down now is retried by the reconnection
                // policy rather than given up.
                fail_fast: false,
                ..connector.config().clone()
            };
            let Ok(client) = connector.subscriber_for(config) else {
                continue;
            };
            tasks.push(tokio::spawn(watch_one(
                client,
                host.clone(),
                service_name.clone(),
                pool.clone(),
                tx.clone(),
            )));
        }
        Some(SentinelWatch { tasks, switches })
    }

    /// Counts the failovers followed; changes after each reconnection.
    pub fn switches(&self) -> watch::Receiver<u64> {
        self.switches.clone()
    }
}

impl Drop for SentinelWatch {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn watch_one(
    client: SubscriberClient,
    sentinel: Server,
    service_name: String,
    pool: fred::prelude::Pool,
    switches: watch::Sender<u64>,
) {
    let mut messages = client.message_rx();
    let _connection = client.connect();
    let _resubscribe = client.manage_subscriptions();
    // Until the first subscription succeeds: a sentinel that is down now
    // is tried again by the reconnection policy, and subscribed to once it
    // answers (after that, `manage_subscriptions` renews it).
    let mut warned = false;
    loop {
        let subscribed = match client.wait_for_connect().await {
            Ok(()) => client.subscribe(SWITCH_MASTER).await,
            Err(e) => Err(e),
        };
        match subscribed {
            Ok(()) => break,
            Err(e) => {
                if !warned {
                    tracing::warn!(sentinel = %sentinel, error = %e, "cannot subscribe to a sentinel's failover announcements yet; retrying");
                    warned = true;
                }
                // A failed subscribe on a live connection: wait as a
                // reconnection would before asking again.
                if client.is_connected() {
                    tokio::time::sleep(RESUBSCRIBE_DELAY).await;
                }
            }
        }
    }
    if warned {
        tracing::info!(sentinel = %sentinel, "subscribed to a sentinel's failover announcements");
    }
    while let Ok(message) = messages.recv().await {
        // `<name> <old ip> <old port> <new ip> <new port>`
        let text = match &message.value {
            Value::String(s) => s.to_string(),
            Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            _ => continue,
        };
        let mut fields = text.split(' ');
        if fields.next() != Some(service_name.as_str()) {
            continue;
        }
        let new_master: Vec<&str> = fields.skip(2).collect();
        tracing::warn!(
            sentinel = %sentinel,
            master = %new_master.join(":"),
            "the sentinels switched the master: reconnecting"
        );
        if let Err(e) = pool.force_reconnection().await {
            tracing::warn!(error = %e, "reconnecting to the new master failed; retrying in the background");
        }
        switches.send_modify(|n| *n += 1);
    }
}
