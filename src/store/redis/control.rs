//! The control state in Redis: three hashes and a change channel, named by
//! [`super::keys::KeyLayout`] (see there for the layout).
//!
//! Records whose expiry has passed are removed by whichever replica reads
//! them first; until then the hot path ignores them by their expiry.

use std::collections::BTreeMap;
use std::sync::Arc;

use fred::prelude::{ClientLike, EventInterface, HashesInterface, Pool, PubsubInterface};
use fred::types::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::connection::Connector;
use super::errors::store_error;
use super::keys::KeyLayout;
use super::RedisStore;
use crate::core::Timestamp;
use crate::metrics::Metrics;
use crate::store::records::{ControlState, ListKind, ListRecord, OverrideRecord};
use crate::store::StoreError;

/// Overrides and lists in Redis.
pub struct RedisControl {
    pool: Pool,
    connector: Connector,
    metrics: Arc<Metrics>,
    layout: KeyLayout,
    /// Sentinel failovers followed by the store, when there are sentinels.
    switches: Option<tokio::sync::watch::Receiver<u64>>,
}

/// A failed admin command, saying what it was doing.
fn failed(what: &str, e: fred::error::Error) -> StoreError {
    let e = store_error(e);
    StoreError {
        transient: e.transient,
        message: format!("{what}: {}", e.message),
    }
}

impl RedisControl {
    /// Shares `store`'s connection pool, servers and key layout.
    pub fn new(store: &RedisStore) -> RedisControl {
        RedisControl {
            pool: store.pool().clone(),
            connector: store.connector().clone(),
            metrics: store.metrics().clone(),
            layout: store.layout().clone(),
            switches: store.sentinel_switches(),
        }
    }

    pub async fn load(&self) -> Result<ControlState, StoreError> {
        Ok(ControlState {
            overrides: self.read(&self.layout.overrides()).await?,
            allow: self.read(&self.layout.list(ListKind::Allow)).await?,
            block: self.read(&self.layout.list(ListKind::Block)).await?,
        })
    }

    pub async fn put_override(&self, id: &str, record: &OverrideRecord) -> Result<(), StoreError> {
        self.put(&self.layout.overrides(), id, record).await
    }

    pub async fn delete_override(&self, id: &str) -> Result<bool, StoreError> {
        self.delete(&self.layout.overrides(), id).await
    }

    pub async fn put_list(&self, kind: ListKind, record: &ListRecord) -> Result<(), StoreError> {
        self.put(&self.layout.list(kind), &record.entry, record).await
    }

    pub async fn delete_list(&self, kind: ListKind, entry: &str) -> Result<bool, StoreError> {
        self.delete(&self.layout.list(kind), entry).await
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
            .map_err(|e| failed("reading admin state", e))?;
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

    async fn put<T: Serialize>(&self, hash: &str, field: &str, record: &T) -> Result<(), StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError {
            transient: false,
            message: format!("encoding admin record: {e}"),
        })?;
        self.count("hset");
        let _: Value = self
            .pool
            .hset(hash, (field, json))
            .await
            .map_err(|e| failed("writing admin state", e))?;
        self.notify().await;
        Ok(())
    }

    async fn delete(&self, hash: &str, field: &str) -> Result<bool, StoreError> {
        self.count("hdel");
        let removed: i64 = self
            .pool
            .hdel(hash, field)
            .await
            .map_err(|e| failed("writing admin state", e))?;
        if removed > 0 {
            self.notify().await;
        }
        Ok(removed > 0)
    }

    /// Removes records whose expiry has passed (any replica may do this).
    pub async fn purge_expired(&self, state: &ControlState, now: Timestamp) {
        let expired = |at: Option<u64>| at.is_some_and(|ms| ms.saturating_mul(1000) <= now.as_micros());
        let mut removed = 0;
        let overrides = self.layout.overrides();
        for (id, record) in &state.overrides {
            if expired(record.expires_at_ms) && self.pool.hdel::<i64, _, _>(&overrides, id).await.unwrap_or(0) > 0 {
                removed += 1;
            }
        }
        for kind in ListKind::ALL {
            let hash = self.layout.list(kind);
            for (entry, record) in state.list(kind) {
                if expired(record.expires_at_ms) && self.pool.hdel::<i64, _, _>(&hash, entry).await.unwrap_or(0) > 0 {
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
        let channel = self.layout.changes_channel();
        if let Err(e) = self.pool.next().publish::<i64, _, _>(channel, "changed").await {
            tracing::warn!(error = %e, "could not publish an admin change; replicas will resync");
        }
    }

    /// Subscribes to the change channel; every message (and every
    /// reconnection) sends `()` on the returned receiver.
    pub async fn subscribe(&self) -> Result<mpsc::Receiver<()>, StoreError> {
        let subscriber = self
            .connector
            .subscriber()
            .await
            .map_err(|e| failed("subscribing to admin changes", e))?;
        subscriber
            .subscribe(self.layout.changes_channel())
            .await
            .map_err(|e| failed("subscribing to admin changes", e))?;
        let (tx, rx) = mpsc::channel(16);
        let mut messages = subscriber.message_rx();
        let mut reconnects = subscriber.reconnect_rx();
        let _resubscribe = subscriber.manage_subscriptions();
        // After a Sentinel failover the subscriber moves to the new master
        // too, where the other replicas now publish.
        let mut switches = self.switches.clone();
        tokio::spawn(async move {
            loop {
                // A lagging receiver missed messages: that is a change too.
                let event = tokio::select! {
                    message = messages.recv() => !matches!(message, Err(RecvError::Closed)),
                    reconnect = reconnects.recv() => !matches!(reconnect, Err(RecvError::Closed)),
                    Some(Ok(())) = async {
                        match switches.as_mut() {
                            Some(switches) => Some(switches.changed().await),
                            None => std::future::pending().await,
                        }
                    } => {
                        let _ = subscriber.force_reconnection().await;
                        true
                    }
                };
                if !event || tx.try_send(()).is_err() && tx.is_closed() {
                    break;
                }
            }
        });
        Ok(rx)
    }
}
