//! The control state in Redis: three hashes and a change channel.
//!
//! ```text
//! <prefix>:{admin}:overrides   field = override id,  value = JSON OverrideRecord
//! <prefix>:{admin}:allow       field = entry,        value = JSON ListRecord
//! <prefix>:{admin}:block       field = entry,        value = JSON ListRecord
//! <prefix>:admin:changed       pub/sub channel; any message means "re-read"
//! ```
//!
//! The `{admin}` hash tag keeps the three hashes in one cluster slot.
//! Records whose expiry has passed are removed by whichever replica reads
//! them first; until then the hot path ignores them by their expiry.

use std::collections::BTreeMap;

use fred::prelude::{EventInterface, HashesInterface, Pool, PubsubInterface};
use fred::types::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use std::sync::Arc;

use super::{ControlState, ListKind, ListRecord};
use crate::core::Timestamp;
use crate::metrics::Metrics;
use crate::store::redis::RedisStore;
use crate::store::StoreError;

/// Overrides and lists in Redis.
pub struct RedisControl {
    pool: Pool,
    metrics: Arc<Metrics>,
    overrides: String,
    allow: String,
    block: String,
    channel: String,
}

fn store_error(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError {
        transient: true,
        message: format!("{what}: {e}"),
    }
}

impl RedisControl {
    /// Shares `store`'s connection pool and key prefix.
    pub fn new(store: &RedisStore) -> RedisControl {
        let prefix = store.key_prefix();
        RedisControl {
            pool: store.pool().clone(),
            metrics: store.metrics().clone(),
            overrides: format!("{prefix}:{{admin}}:overrides"),
            allow: format!("{prefix}:{{admin}}:allow"),
            block: format!("{prefix}:{{admin}}:block"),
            channel: format!("{prefix}:admin:changed"),
        }
    }

    pub fn overrides_key(&self) -> &str {
        &self.overrides
    }

    pub fn list_key(&self, kind: ListKind) -> &str {
        match kind {
            ListKind::Allow => &self.allow,
            ListKind::Block => &self.block,
        }
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    pub async fn load(&self) -> Result<ControlState, StoreError> {
        Ok(ControlState {
            overrides: self.read(&self.overrides).await?,
            allow: self.read(&self.allow).await?,
            block: self.read(&self.block).await?,
        })
    }

    fn count(&self, op: &str) {
        self.metrics.redis_operations.with_label_values(&[op]).inc();
    }

    async fn read<T: DeserializeOwned>(&self, hash: &str) -> Result<BTreeMap<String, T>, StoreError> {
        self.count("hgetall");
        let fields: BTreeMap<String, String> = self
            .pool
            .hgetall(hash)
            .await
            .map_err(|e| store_error("reading admin state", e))?;
        let mut records = BTreeMap::new();
        for (field, json) in fields {
            match serde_json::from_str(&json) {
                Ok(record) => {
                    records.insert(field, record);
                }
                Err(e) => tracing::warn!(hash, field, error = %e, "ignoring an unreadable admin record"),
            }
        }
        Ok(records)
    }

    pub async fn put<T: Serialize>(&self, hash: &str, field: &str, record: &T) -> Result<(), StoreError> {
        let json = serde_json::to_string(record).map_err(|e| store_error("encoding admin record", e))?;
        self.count("hset");
        let _: Value = self
            .pool
            .hset(hash, (field, json))
            .await
            .map_err(|e| store_error("writing admin state", e))?;
        self.notify().await;
        Ok(())
    }

    pub async fn delete(&self, hash: &str, field: &str) -> Result<bool, StoreError> {
        self.count("hdel");
        let removed: i64 = self
            .pool
            .hdel(hash, field)
            .await
            .map_err(|e| store_error("writing admin state", e))?;
        if removed > 0 {
            self.notify().await;
        }
        Ok(removed > 0)
    }

    /// Removes records whose expiry has passed (any replica may do this).
    pub async fn purge_expired(&self, state: &ControlState, now: Timestamp) {
        let expired = |at: Option<u64>| at.is_some_and(|ms| ms.saturating_mul(1000) <= now.as_micros());
        let mut removed = 0;
        for (id, record) in &state.overrides {
            if expired(record.expires_at_ms) && self.pool.hdel::<i64, _, _>(&self.overrides, id).await.unwrap_or(0) > 0
            {
                removed += 1;
            }
        }
        for kind in [ListKind::Allow, ListKind::Block] {
            for (entry, record) in state.list(kind) {
                let list: &ListRecord = record;
                if expired(list.expires_at_ms)
                    && self
                        .pool
                        .hdel::<i64, _, _>(self.list_key(kind), entry)
                        .await
                        .unwrap_or(0)
                        > 0
                {
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed expired admin entries");
        }
    }

    /// Tells every replica to re-read and to forget cached denials. A lost
    /// message is healed by the periodic resync (a cached denial by its
    /// `retry_after`), so a failure here is only logged.
    pub async fn notify(&self) {
        self.count("publish");
        if let Err(e) = self.pool.next().publish::<i64, _, _>(&self.channel, "changed").await {
            tracing::warn!(error = %e, "could not publish an admin change; replicas will resync");
        }
    }

    /// Subscribes to the change channel; every message (and every
    /// reconnection) sends `()` on the returned receiver.
    pub async fn subscribe(&self, store: &RedisStore) -> Result<mpsc::Receiver<()>, StoreError> {
        let subscriber = store
            .subscriber()
            .await
            .map_err(|e| store_error("subscribing to admin changes", e))?;
        subscriber
            .subscribe(self.channel.clone())
            .await
            .map_err(|e| store_error("subscribing to admin changes", e))?;
        let (tx, rx) = mpsc::channel(16);
        let mut messages = subscriber.message_rx();
        let mut reconnects = subscriber.reconnect_rx();
        let _resubscribe = subscriber.manage_subscriptions();
        tokio::spawn(async move {
            // Keep the subscriber alive as long as the task runs.
            let _subscriber = subscriber;
            loop {
                // A lagging receiver missed messages: that is a change too.
                let event = tokio::select! {
                    message = messages.recv() => !matches!(message, Err(RecvError::Closed)),
                    reconnect = reconnects.recv() => !matches!(reconnect, Err(RecvError::Closed)),
                };
                if !event || tx.try_send(()).is_err() && tx.is_closed() {
                    break;
                }
            }
        });
        Ok(rx)
    }
}
