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
//!   replicas do not reconnect in lockstep when Redis comes back
//!   ([`connection`]); every failure is classified once ([`errors`]).
//! - Every key and channel name, the control plane's included, is built in
//!   [`keys`]; the control plane ([`control`]) shares the pool.

pub mod batch;
pub mod connection;
pub mod control;
pub mod errors;
pub mod keys;
mod once;
pub mod scripts;
mod sentinel;
pub mod shards;
mod tls;

use std::future::Future;
use std::sync::Arc;

use fred::prelude::{ClientLike, Error as FredError, ErrorKind, KeysInterface, Pool};

use self::batch::Batcher;
pub use self::connection::{ConnectError, Connector};
use self::keys::KeyLayout;
use self::scripts::Scripts;
use self::sentinel::SentinelWatch;
use self::shards::Shards;
use super::{Applied, CounterKey, LeaseOp, Once, Op, Store, StoreError, StoreKey};
use crate::core::{Clock, Consume, Cost, Decision, Policy, Timestamp};
use crate::metrics::Metrics;
use crate::settings::RedisSettings;

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
    /// Builds the pub/sub client of the control plane.
    connector: Connector,
    settings: RedisSettings,
    scripts: Arc<Scripts>,
    layout: KeyLayout,
    time: TimeSource,
    metrics: Arc<Metrics>,
    /// Started on the first check, when batching applies (standalone,
    /// `batch = true`), so it sees the final clock and metrics.
    batcher: std::sync::OnceLock<Option<Batcher>>,
    /// A cluster's checks, routed per master ([`shards`]).
    shards: Option<Arc<Shards>>,
    /// `mode = "sentinel"`: the sentinels' failover announcements.
    sentinel: Option<SentinelWatch>,
}

impl RedisStore {
    /// Connects the pool (failing if Redis cannot be reached within
    /// `connect_timeout`) and loads the scripts.
    pub async fn connect(settings: &RedisSettings) -> Result<RedisStore, ConnectError> {
        let connector = Connector::resolve(settings).await?;
        let pool = connector.pool().await?;
        let shards = match connector.is_clustered() {
            true => Some(
                Shards::connect(
                    connector.clone(),
                    settings.connect_timeout.0,
                    settings.command_timeout.0,
                    settings.cluster_refresh_interval.0,
                )
                .await?,
            ),
            false => None,
        };
        let sentinel = SentinelWatch::start(&connector, pool.clone());
        let store = RedisStore {
            pool,
            connector,
            settings: settings.clone(),
            scripts: Arc::new(Scripts::new()),
            layout: KeyLayout::new(&settings.key_prefix),
            time: TimeSource::Server,
            metrics: Arc::new(Metrics::new()),
            batcher: std::sync::OnceLock::new(),
            shards,
            sentinel,
        };
        store.load_scripts().await.map_err(ConnectError::Scripts)?;
        let (target, clustered) = (store.connector.target(), store.is_clustered());
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

    /// With sentinels: changes after each failover the store followed.
    pub fn sentinel_switches(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.sentinel.as_ref().map(SentinelWatch::switches)
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
        self.metrics
            .redis_errors
            .with_label_values(&[errors::error_kind(&e)])
            .inc();
        errors::store_error(e)
    }

    /// Whether the store talks to a Redis Cluster.
    pub fn is_clustered(&self) -> bool {
        self.connector.is_clustered()
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

    /// The key layout (shared with the control plane).
    pub fn layout(&self) -> &KeyLayout {
        &self.layout
    }

    /// How to reach the servers (the control plane subscribes with it).
    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// Deletes every key of `key`, whatever algorithm wrote it.
    async fn delete_all(&self, key: StoreKey<'_>) -> Result<(), StoreError> {
        let names: Vec<String> = crate::core::Algorithm::EVERY
            .into_iter()
            .flat_map(|a| self.layout.state_keys(key, a).to_vec())
            .collect();
        // All names share one hash tag, so one DEL works on a cluster too.
        self.metrics.redis_operations.with_label_values(&["del"]).inc();
        let _: i64 = self.pool.del(names).await.map_err(|e| self.failed(e))?;
        Ok(())
    }

    /// Closes the pool's connections, and every master's on a cluster.
    pub async fn quit(&self) {
        if let Some(shards) = &self.shards {
            shards.quit().await;
        }
        let _ = self.pool.quit().await;
    }

    /// The batcher, when checks are batched.
    fn batcher(&self) -> Option<&Batcher> {
        self.batcher
            .get_or_init(|| {
                (self.settings.batch && !self.is_clustered()).then(|| {
                    Batcher::start(
                        self.pool.clients(),
                        self.scripts.clone(),
                        self.time.clone(),
                        self.metrics.clone(),
                        false,
                    )
                })
            })
            .as_ref()
    }

    /// One script call, unbatched: on a cluster to the master of the keys'
    /// slot ([`Shards::evalsha`]), else on the next pooled connection.
    async fn evalsha<R: fred::types::FromValue>(
        &self,
        script: &fred::types::scripts::Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<R, FredError> {
        self.metrics.redis_operations.with_label_values(&["evalsha"]).inc();
        match &self.shards {
            Some(shards) => shards.evalsha(script, keys, args).await,
            None => script.evalsha_with_reload(self.pool.next(), keys, args).await,
        }
    }

    /// Each limit's five arguments of `lua/multi.lua` (algorithm, limit,
    /// window, emission interval, the number of its keys) and its keys,
    /// every key in the slot of `partition`.
    fn limit_args(
        &self,
        partition: &str,
        counters: &[(CounterKey<'_>, &Policy)],
        keys: &mut Vec<String>,
        args: &mut Vec<String>,
    ) {
        for (key, policy) in counters {
            let names = self.layout.counter_keys(partition, *key, policy.algorithm()).to_vec();
            let quota = policy.quota();
            for value in [
                scripts::multi_index(policy.algorithm()),
                quota.limit(),
                quota.window_us(),
                quota.emission_interval_us(),
                names.len() as u64,
            ] {
                args.push(value.to_string());
            }
            keys.extend(names);
        }
    }

    /// The lanes a check waits in to be sent with others: a standalone
    /// Redis's, or those of the master of its keys' slot on a cluster;
    /// `None` when checks are not batched.
    fn lanes(&self, first_key: &str) -> Option<Lanes<'_>> {
        if !self.settings.batch {
            return None;
        }
        let Some(shards) = &self.shards else {
            return self.batcher().map(Lanes::Standalone);
        };
        let master = shards.master(fred::util::redis_keyslot(first_key.as_bytes()))?;
        master.lanes(|clients| self.master_lanes(clients));
        Some(Lanes::Master(master))
    }

    /// A cluster master's lanes, one per connection of its pool.
    fn master_lanes(&self, clients: &[fred::clients::Client]) -> Batcher {
        Batcher::start(
            clients,
            self.scripts.clone(),
            self.time.clone(),
            self.metrics.clone(),
            true,
        )
    }

    /// `call`, a check queued in its lanes, bounded by the command timeout
    /// (the lane's command has fred's timeout; this bounds the wait in the
    /// queue before it, too). `Ok(None)`: the slot was redirected before
    /// the script ran, so the caller sends it again alone, redirected.
    async fn queued<R>(&self, call: impl Future<Output = Result<R, FredError>>) -> Result<Option<R>, StoreError> {
        match tokio::time::timeout(self.settings.command_timeout.0, call).await {
            Ok(Ok(reply)) => Ok(Some(reply)),
            Ok(Err(e)) if self.shards.is_some() && (e.is_moved() || e.is_ask()) => Ok(None),
            Ok(Err(e)) => {
                if let Some(shards) = &self.shards {
                    shards.saw(&e);
                }
                Err(self.failed(e))
            }
            Err(_) => {
                if let Some(shards) = &self.shards {
                    shards.stale();
                }
                Err(self.failed(FredError::new(ErrorKind::Timeout, "Request timed out.")))
            }
        }
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
        let keys = match self.lanes(&keys[0]) {
            Some(lanes) => match self
                .queued(
                    lanes
                        .get(|c| self.master_lanes(c))
                        .check(policy.algorithm(), keys, args),
                )
                .await?
            {
                Some(reply) => return decision_from_reply(&reply),
                None => self.layout.state_keys(key, policy.algorithm()).to_vec(),
            },
            None => keys,
        };
        let args = batch::single_args(args, self.time.argument());
        let reply: Vec<i64> = self
            .evalsha(self.scripts.get(policy.algorithm()), keys, args)
            .await
            .map_err(|e| self.failed(e))?;
        decision_from_reply(&reply)
    }
}

/// The decisions of a check of several limits, one reply per limit.
fn several_decided(replies: Vec<Vec<i64>>, limits: usize) -> Result<(bool, Vec<Decision>), StoreError> {
    if replies.len() != limits {
        return Err(StoreError {
            transient: false,
            message: format!("{} replies for {limits} limits", replies.len()),
        });
    }
    let decisions = replies
        .iter()
        .map(|reply| decision_from_reply(reply))
        .collect::<Result<Vec<Decision>, StoreError>>()?;
    Ok((decisions.iter().all(|d| d.allowed), decisions))
}

/// Where a check waits to be sent with others.
enum Lanes<'a> {
    Standalone(&'a Batcher),
    Master(Arc<shards::Master>),
}

impl Lanes<'_> {
    /// The lanes themselves (a master's were started by
    /// [`RedisStore::lanes`]; `start` makes them only if they were not).
    fn get(&self, start: impl FnOnce(&[fred::clients::Client]) -> Batcher) -> &Batcher {
        match self {
            Lanes::Standalone(batcher) => batcher,
            Lanes::Master(master) => master.lanes(start),
        }
    }
}

impl Store for RedisStore {
    /// One call of the multi-limit script (see `lua/multi.lua`), every key
    /// in the slot of `partition`, batched with the other such checks
    /// waiting (`lua/multi_batch.lua`; on a cluster, those of its slot).
    async fn check_all(
        &self,
        partition: &str,
        counters: &[(CounterKey<'_>, &Policy)],
        cost: Cost,
        consume: Consume,
    ) -> Result<(bool, Vec<Decision>), StoreError> {
        // The keys and the arguments of `lua/multi.lua`'s check (built
        // again for a check sent alone after a redirection).
        let call = || {
            let mut keys = Vec::with_capacity(counters.len() * 2);
            let mut args = Vec::with_capacity(4 + counters.len() * 5);
            args.push(cost.get().to_string());
            args.push(if consume == Consume::IfAllAllow { "1" } else { "0" }.to_owned());
            args.push(counters.len().to_string());
            self.limit_args(partition, counters, &mut keys, &mut args);
            (keys, args)
        };
        let (keys, args) = call();
        let (keys, mut args) = match keys.first().and_then(|first| self.lanes(first)) {
            Some(lanes) => {
                let lanes = lanes.get(|c| self.master_lanes(c));
                match self.queued(lanes.check_several(keys, args)).await? {
                    Some(replies) => return several_decided(replies, counters.len()),
                    None => call(),
                }
            }
            None => (keys, args),
        };
        args.insert(0, self.time.argument());
        let replies: Vec<Vec<i64>> = self
            .evalsha(self.scripts.multi(), keys, args)
            .await
            .map_err(|e| self.failed(e))?;
        several_decided(replies, counters.len())
    }
    async fn check(&self, key: StoreKey<'_>, policy: &Policy, cost: Cost) -> Result<Decision, StoreError> {
        self.run(key, policy, cost).await
    }

    /// See `once.rs`.
    async fn lease(
        &self,
        partition: &str,
        counters: &[(CounterKey<'_>, u64)],
        number: u64,
        units: u64,
        op: LeaseOp,
    ) -> Result<Option<Timestamp>, StoreError> {
        self.lease_call(partition, counters, number, units, op).await
    }

    /// See `once.rs`.
    async fn apply(
        &self,
        partition: &str,
        counters: &[(CounterKey<'_>, &Policy)],
        op: Op,
        once: Option<Once<'_>>,
    ) -> Result<Applied, StoreError> {
        self.once_call(partition, counters, op, once).await
    }

    async fn reset(&self, key: StoreKey<'_>) -> Result<(), StoreError> {
        self.delete_all(key).await
    }

    /// One `DEL` of every name each counter may have, whatever algorithm
    /// wrote it: all in the slot of `partition`, so it works on a cluster.
    async fn reset_all(&self, partition: &str, counters: &[CounterKey<'_>]) -> Result<(), StoreError> {
        let names: Vec<String> = counters
            .iter()
            .flat_map(|key| {
                crate::core::Algorithm::EVERY
                    .into_iter()
                    .flat_map(move |a| self.layout.counter_keys(partition, *key, a).to_vec())
            })
            .collect();
        self.metrics.redis_operations.with_label_values(&["del"]).inc();
        let _: i64 = self.pool.del(names).await.map_err(|e| self.failed(e))?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        RedisStore::ping(self).await
    }

    /// On a cluster, a master still in the slot map.
    fn has_shard(&self, shard: u32) -> bool {
        match &self.shards {
            Some(shards) => shards.masters().iter().any(|m| m.id() == shard),
            None => shard == 0,
        }
    }

    /// On a cluster, the master of the slot of `{rule:partition}`.
    fn shard(&self, rule: &str, partition: &str) -> u32 {
        match &self.shards {
            Some(shards) => shards.shard(self.layout.slot(rule, partition)),
            None => 0,
        }
    }

    fn update_gauges(&self, metrics: &Metrics) {
        let (size, connected) = self.pool_state();
        metrics.redis_pool_size.set(i64::try_from(size).unwrap_or(i64::MAX));
        metrics
            .redis_pool_connected
            .set(i64::try_from(connected).unwrap_or(i64::MAX));
    }

    async fn close(&self) {
        self.quit().await;
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
}
