//! The control plane: where the operators' overrides and allow/block lists
//! are kept, and how every replica learns of a change.
//!
//! - With the memory backend they live in this process.
//! - With Redis they live in three hashes under the key prefix (one hash
//!   tag, so one cluster slot), survive restarts and are shared: every write
//!   is followed by a `PUBLISH` on the change channel; every replica
//!   subscribes, re-reads the hashes when notified, and also re-reads them
//!   every `admin.resync_interval`, so a missed message heals
//!   ([`super::redis::control`]).
//!
//! A [`Control`] is only made together with its store, by
//! [`super::Backend`], so the two always live in the same place. The hot
//! path never reads from here: changes are folded into the limiter's
//! snapshot ([`crate::limiter::Limiter::set_control`]).

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;

use super::records::{ControlState, ListKind, ListRecord, OverrideRecord};
use super::redis::control::RedisControl;
use super::StoreError;
use crate::core::Timestamp;

/// Where the control state is kept.
pub struct Control(Plane);

enum Plane {
    /// In this process: changes are local to the replica.
    Memory(Mutex<ControlState>),
    /// In Redis: shared by every replica.
    Redis(Box<RedisControl>),
}

impl Control {
    pub(super) fn memory() -> Control {
        Control(Plane::Memory(Mutex::new(ControlState::default())))
    }

    pub(super) fn redis(control: RedisControl) -> Control {
        Control(Plane::Redis(Box::new(control)))
    }

    /// Whether changes reach other replicas.
    pub fn is_shared(&self) -> bool {
        matches!(self.0, Plane::Redis(_))
    }

    /// Reads the whole state.
    pub async fn load(&self) -> Result<ControlState, StoreError> {
        match &self.0 {
            Plane::Memory(state) => Ok(lock(state).clone()),
            Plane::Redis(redis) => redis.load().await,
        }
    }

    /// Creates or replaces an override.
    pub async fn put_override(&self, id: &str, record: &OverrideRecord) -> Result<(), StoreError> {
        match &self.0 {
            Plane::Memory(state) => {
                lock(state).overrides.insert(id.to_owned(), record.clone());
                Ok(())
            }
            Plane::Redis(redis) => redis.put_override(id, record).await,
        }
    }

    /// Deletes an override; returns whether it existed.
    pub async fn delete_override(&self, id: &str) -> Result<bool, StoreError> {
        match &self.0 {
            Plane::Memory(state) => Ok(lock(state).overrides.remove(id).is_some()),
            Plane::Redis(redis) => redis.delete_override(id).await,
        }
    }

    /// Adds or replaces a list entry.
    pub async fn put_list(&self, kind: ListKind, record: &ListRecord) -> Result<(), StoreError> {
        match &self.0 {
            Plane::Memory(state) => {
                lock(state).list_mut(kind).insert(record.entry.clone(), record.clone());
                Ok(())
            }
            Plane::Redis(redis) => redis.put_list(kind, record).await,
        }
    }

    /// Removes a list entry; returns whether it existed.
    pub async fn delete_list(&self, kind: ListKind, entry: &str) -> Result<bool, StoreError> {
        match &self.0 {
            Plane::Memory(state) => Ok(lock(state).list_mut(kind).remove(entry).is_some()),
            Plane::Redis(redis) => redis.delete_list(kind, entry).await,
        }
    }

    /// Tells the other replicas that a key was reset, so they forget
    /// cached denials (nothing to tell when changes are local).
    pub async fn announce_reset(&self) {
        if let Plane::Redis(redis) = &self.0 {
            redis.notify().await;
        }
    }

    /// Removes records whose expiry has passed (any replica may do this;
    /// in memory, expired records are only ignored).
    pub async fn purge_expired(&self, state: &ControlState, now: Timestamp) {
        if let Plane::Redis(redis) = &self.0 {
            redis.purge_expired(state, now).await;
        }
    }

    /// A receiver that gets `()` on every change made by another replica
    /// (and on every reconnection, after which some may have been missed);
    /// `Ok(None)` when changes are local, so there is nothing to follow.
    pub async fn subscribe(&self) -> Result<Option<mpsc::Receiver<()>>, StoreError> {
        match &self.0 {
            Plane::Memory(_) => Ok(None),
            Plane::Redis(redis) => redis.subscribe().await.map(Some),
        }
    }
}

/// A poisoned lock only means a panic elsewhere; the map is still whole.
fn lock(state: &Mutex<ControlState>) -> MutexGuard<'_, ControlState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}
