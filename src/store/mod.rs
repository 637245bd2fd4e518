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

pub mod memory;
pub mod redis;

use std::future::Future;

use crate::core::{Cost, Decision, Policy};

/// The identity of one counter: a rule and a caller's key.
///
/// Tiers are not part of it: a caller moving to another tier keeps its
/// counter, judged by the new tier's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StoreKey<'a> {
    pub rule: &'a str,
    pub key: &'a str,
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

    /// Forgets `key`'s state, whatever algorithm wrote it.
    fn reset(&self, key: StoreKey<'_>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether the store can decide now (readiness).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(Ok(()))
    }

    /// Refreshes store gauges (connections) before a scrape.
    fn update_gauges(&self, _metrics: &crate::metrics::Metrics) {}

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
    Memory(memory::MemoryStore),
    Redis(Box<redis::RedisStore>),
}

impl Store for AnyStore {
    async fn check(&self, key: StoreKey<'_>, policy: &Policy, cost: Cost) -> Result<Decision, StoreError> {
        match self {
            AnyStore::Memory(store) => Ok(store.check_now(key, policy, cost)),
            AnyStore::Redis(store) => store.check(key, policy, cost).await,
        }
    }

    async fn reset(&self, key: StoreKey<'_>) -> Result<(), StoreError> {
        match self {
            AnyStore::Memory(store) => store.reset(key).await,
            AnyStore::Redis(store) => store.reset(key).await,
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match self {
            AnyStore::Memory(_) => Ok(()),
            AnyStore::Redis(store) => store.ping().await,
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

    fn update_gauges(&self, metrics: &crate::metrics::Metrics) {
        if let AnyStore::Redis(store) = self {
            let (size, connected) = store.pool_state();
            metrics.redis_pool_size.set(i64::try_from(size).unwrap_or(i64::MAX));
            metrics
                .redis_pool_connected
                .set(i64::try_from(connected).unwrap_or(i64::MAX));
        }
    }
}
