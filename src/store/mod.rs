//! Where per-key state lives: the [`Store`] trait and its implementations.
//!
//! A store decides one check atomically: it reads the key's state, runs the
//! rule's algorithm and writes the new state, with no other check on the same
//! key in between. The store also owns time: the decision's `at` is the
//! store's clock, so that a store shared by several replicas can use one
//! clock for all of them.
//!
//! - [`memory::MemoryStore`]: in this process, exact for one replica.
//! - [`redis::RedisStore`]: in Redis or a Redis Cluster, shared by replicas.
//! - [`AnyStore`]: whichever of the two the configuration chose.
//!
//! The store also keeps the operators' records ([`records`]) in its
//! control plane ([`control::Control`]). A [`Backend`] is a store and its
//! control plane, made together, so that both always live in one place.

pub mod control;
pub mod memory;
pub mod records;
pub mod redis;

use std::future::Future;
use std::sync::Arc;

use self::control::Control;
use self::memory::MemoryStore;
use self::redis::control::RedisControl;
use self::redis::RedisStore;
use crate::core::{Clock, Consume, Cost, Decision, Policy, Timestamp, Units};
use crate::metrics::Metrics;

/// The identity of one counter: a rule and a caller's key.
///
/// Tiers are not part of it: a caller moving to another tier keeps its
/// counter, judged by the new tier's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StoreKey<'a> {
    pub rule: &'a str,
    pub key: &'a str,
}

/// The identity of one counter of a check decided all at once
/// ([`Store::check_all`]): the rule, the limit's name within it, and the
/// value it counts per (the caller's key, or the value of one of the
/// request's scopes).
///
/// A limit without a name is a rule's only limit written in the short form
/// (`limit`/`window` on the rule): its counter is the one a single check
/// ([`Store::check`]) of `StoreKey { rule, key: value }` decides, so a peek
/// reads exactly what checks consume. Counters of named limits are named
/// apart from every such counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CounterKey<'a> {
    pub rule: &'a str,
    pub limit: Option<&'a str>,
    pub value: &'a str,
}

impl<'a> CounterKey<'a> {
    /// The counter of a rule's only, unnamed limit for `key`.
    pub fn single(key: StoreKey<'a>) -> CounterKey<'a> {
        CounterKey {
            rule: key.rule,
            limit: None,
            value: key.key,
        }
    }
}

/// A store could not decide.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    /// True when retrying later may succeed (timeouts, lost connections);
    /// false for errors that will repeat (a script the server rejects).
    pub transient: bool,
    pub message: String,
}

/// What [`Store::apply`] does to a rule's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A check of this cost, all or nothing, consuming when every counter
    /// allows (as [`Store::check_all`] with [`Consume::IfAllAllow`]).
    Check(Cost),
    /// A report: every counter charged (or refunded) unconditionally, see
    /// [`crate::core::report_all`].
    Report(Units),
    /// A check whose `concurrency` counters take lease `lease` (a number
    /// the caller chose, never 0) when it consumes.
    Acquire { cost: Cost, lease: u64 },
}

/// What [`Store::lease`] does to a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOp {
    /// Ends it.
    Release,
    /// Extends it by each counter's lease lifetime from now.
    Renew,
}

/// The id that makes a call idempotent: applied once while its record
/// lives (`ttl_us`), in the slot of the call's partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Once<'a> {
    pub id: &'a str,
    pub ttl_us: u64,
}

/// What [`Store::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The id was already applied: nothing changed, and `decisions` are a
    /// peek (one unit, nothing consumed).
    pub duplicate: bool,
    /// Whether every counter allows: the check's outcome, or for a report
    /// (and a duplicate) whether one more unit would be allowed now.
    pub allowed: bool,
    /// Each counter's decision, in order.
    pub decisions: Vec<Decision>,
}

/// Atomic check-and-update of rate-limit state.
pub trait Store: Send + Sync + 'static {
    /// Decides a request of `cost` on `key` under `policy`, consuming the
    /// cost when allowed.
    fn check(
        &self,
        key: StoreKey<'_>,
        policy: &Policy,
        cost: Cost,
    ) -> impl Future<Output = Result<Decision, StoreError>> + Send;

    /// Decides `cost` against every counter at once, all or nothing (see
    /// [`crate::core::multi`]): every counter consumes it when every one
    /// allows and `consume` permits, otherwise none changes. Returns
    /// whether every counter allows, and each counter's decision in order.
    /// `partition` names the slot all counters of named limits share.
    ///
    /// A consuming call names only counters of named limits: an unnamed
    /// limit's counter is consumed by [`Store::check`] alone (a call with
    /// [`Consume::Never`] may read it).
    fn check_all(
        &self,
        partition: &str,
        counters: &[(CounterKey<'_>, &Policy)],
        cost: Cost,
        consume: Consume,
    ) -> impl Future<Output = Result<(bool, Vec<Decision>), StoreError>> + Send {
        let _ = (partition, counters, cost, consume);
        std::future::ready(Err(StoreError {
            transient: false,
            message: "this store cannot decide several limits at once".to_owned(),
        }))
    }

    /// A report on every counter, or a check of them, applied at most once
    /// per `once.id` while its record lives: atomically with the record,
    /// so two calls with one id on two replicas apply once. A report's
    /// id is kept whenever it is applied; a check's only when it consumed
    /// (a denied check may be retried with its id). Counters are as for
    /// [`Store::check_all`], except that a rule's only, unnamed limit may
    /// be named (its counter is then consumed as [`Store::check`] would);
    /// `partition` is the key of such a rule.
    fn apply(
        &self,
        partition: &str,
        counters: &[(CounterKey<'_>, &Policy)],
        op: Op,
        once: Option<Once<'_>>,
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send {
        let _ = (partition, counters, op, once);
        std::future::ready(Err(StoreError {
            transient: false,
            message: "this store cannot apply reports or ids".to_owned(),
        }))
    }

    /// Releases or renews lease `number` of `units` on every `concurrency`
    /// counter (each with its lease lifetime in µs), all in the slot of
    /// `partition`. A release answers `Some(now)` when any counter held
    /// the lease unexpired, else `None` (released already, or expired). A
    /// renewal answers the new expiry when every counter held it, else
    /// `None` (then it renews none).
    fn lease(
        &self,
        partition: &str,
        counters: &[(CounterKey<'_>, u64)],
        number: u64,
        units: u64,
        op: LeaseOp,
    ) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send {
        let _ = (partition, counters, number, units, op);
        std::future::ready(Err(StoreError {
            transient: false,
            message: "this store keeps no leases".to_owned(),
        }))
    }

    /// Forgets `key`'s state, whatever algorithm wrote it.
    fn reset(&self, key: StoreKey<'_>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets the state of every counter (of a check with several limits,
    /// all in the slot of `partition`), whatever algorithm wrote it, at
    /// once: no check of them runs in between.
    fn reset_all(
        &self,
        partition: &str,
        counters: &[CounterKey<'_>],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = (partition, counters);
        std::future::ready(Err(StoreError {
            transient: false,
            message: "this store cannot reset several limits at once".to_owned(),
        }))
    }

    /// Which part of the store decides the checks of `rule` whose keys are
    /// tagged with `partition` (a single check's key, or the partition of
    /// a check of several limits): a Redis Cluster's master, so that the
    /// limiter keeps a circuit breaker per master. 0 where one place holds
    /// every key.
    fn shard(&self, rule: &str, partition: &str) -> u32 {
        let _ = (rule, partition);
        0
    }

    /// Whether `shard` (see [`Store::shard`]) is still part of the store.
    fn has_shard(&self, shard: u32) -> bool {
        shard == 0
    }

    /// Whether the store can decide now (readiness).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(Ok(()))
    }

    /// Refreshes store gauges (connections) before a scrape.
    fn update_gauges(&self, _metrics: &Metrics) {}

    /// Drops state that has fully expired, where the store does not do so
    /// itself; returns how many keys.
    fn sweep(&self) -> usize {
        0
    }

    /// Closes connections (at shutdown).
    fn close(&self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// Runs `checks` (several [`Store::check`]s, as for `/check/batch`) so
    /// that the store may send them together; by default as they are.
    fn together<F>(&self, checks: F) -> impl Future<Output = F::Output> + Send
    where
        F: Future + Send,
    {
        checks
    }
}

/// The store the configuration chose.
pub enum AnyStore {
    Memory(MemoryStore<Arc<dyn Clock>>),
    Redis(Box<RedisStore>),
}

impl Store for AnyStore {
    async fn check(&self, key: StoreKey<'_>, policy: &Policy, cost: Cost) -> Result<Decision, StoreError> {
        match self {
            AnyStore::Memory(store) => Ok(store.check_now(key, policy, cost)),
            // Boxed: the Redis call's future is large, and would otherwise
            // make every check's future as large, on the memory store too.
            AnyStore::Redis(store) => Box::pin(store.check(key, policy, cost)).await,
        }
    }

    async fn check_all(
        &self,
        partition: &str,
        counters: &[(CounterKey<'_>, &Policy)],
        cost: Cost,
        consume: Consume,
    ) -> Result<(bool, Vec<Decision>), StoreError> {
        match self {
            AnyStore::Memory(store) => Ok(store.check_all_now(counters, cost, consume)),
            AnyStore::Redis(store) => Box::pin(store.check_all(partition, counters, cost, consume)).await,
        }
    }

    async fn apply(
        &self,
        partition: &str,
        counters: &[(CounterKey<'_>, &Policy)],
        op: Op,
        once: Option<Once<'_>>,
    ) -> Result<Applied, StoreError> {
        match self {
            AnyStore::Memory(store) => Ok(store.apply_now(partition, counters, op, once)),
            AnyStore::Redis(store) => Box::pin(store.apply(partition, counters, op, once)).await,
        }
    }

    async fn lease(
        &self,
        partition: &str,
        counters: &[(CounterKey<'_>, u64)],
        number: u64,
        units: u64,
        op: LeaseOp,
    ) -> Result<Option<Timestamp>, StoreError> {
        match self {
            AnyStore::Memory(store) => Ok(store.lease_now(counters, number, units, op)),
            AnyStore::Redis(store) => Box::pin(store.lease(partition, counters, number, units, op)).await,
        }
    }

    async fn reset(&self, key: StoreKey<'_>) -> Result<(), StoreError> {
        match self {
            AnyStore::Memory(store) => store.reset(key).await,
            AnyStore::Redis(store) => store.reset(key).await,
        }
    }

    async fn reset_all(&self, partition: &str, counters: &[CounterKey<'_>]) -> Result<(), StoreError> {
        match self {
            AnyStore::Memory(store) => {
                store.reset_all_now(counters);
                Ok(())
            }
            AnyStore::Redis(store) => Box::pin(store.reset_all(partition, counters)).await,
        }
    }

    fn shard(&self, rule: &str, partition: &str) -> u32 {
        match self {
            AnyStore::Memory(_) => 0,
            AnyStore::Redis(store) => store.shard(rule, partition),
        }
    }

    fn has_shard(&self, shard: u32) -> bool {
        match self {
            AnyStore::Memory(_) => shard == 0,
            AnyStore::Redis(store) => store.has_shard(shard),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match self {
            AnyStore::Memory(_) => Ok(()),
            AnyStore::Redis(store) => Store::ping(store.as_ref()).await,
        }
    }

    fn together<F>(&self, checks: F) -> impl Future<Output = F::Output> + Send
    where
        F: Future + Send,
    {
        match self {
            AnyStore::Memory(_) => futures_util::future::Either::Left(checks),
            AnyStore::Redis(store) => futures_util::future::Either::Right(store.together(checks)),
        }
    }

    fn update_gauges(&self, metrics: &Metrics) {
        if let AnyStore::Redis(store) = self {
            store.update_gauges(metrics);
        }
    }

    fn sweep(&self) -> usize {
        match self {
            AnyStore::Memory(store) => store.sweep(),
            AnyStore::Redis(_) => 0, // Redis expires keys itself.
        }
    }

    async fn close(&self) {
        if let AnyStore::Redis(store) = self {
            store.quit().await;
        }
    }
}

/// A store and its control plane, made together: counters and operators'
/// records in this process, or both in the same Redis.
pub struct Backend {
    store: AnyStore,
    control: Control,
}

impl Backend {
    /// Both in this process; the store reads time from `clock`.
    pub fn memory(clock: Arc<dyn Clock>) -> Backend {
        Backend {
            store: AnyStore::Memory(MemoryStore::with_clock(clock)),
            control: Control::memory(),
        }
    }

    /// Both in the Redis `store` is connected to.
    pub fn redis(store: RedisStore) -> Backend {
        let control = Control::redis(RedisControl::new(&store));
        Backend {
            store: AnyStore::Redis(Box::new(store)),
            control,
        }
    }

    /// Whether the store is shared by replicas (a remote store, where
    /// remembering denials saves round trips).
    pub fn is_shared(&self) -> bool {
        self.control.is_shared()
    }

    /// The store, for the limiter, and the control plane, for the admin API.
    pub fn into_parts(self) -> (AnyStore, Control) {
        (self.store, self.control)
    }
}
