//! The control plane: operators' overrides and allow/block lists, where they
//! are kept, and how every replica learns of a change.
//!
//! - With the memory store they live in this process ([`Control::Memory`]).
//! - With Redis they live in three hashes under the key prefix (one hash
//!   tag, so one cluster slot), survive restarts and are shared: every write
//!   is followed by a `PUBLISH` on the change channel; every replica
//!   subscribes, re-reads the hashes when notified, and also re-reads them
//!   every `admin.resync_interval`, so a missed message heals.
//!
//! The hot path never reads from here: changes are folded into the
//! limiter's snapshot ([`crate::limiter::Limiter::set_control`]).

pub mod redis;

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::overrides::OverrideRecord;
use crate::store::StoreError;

/// An allow- or block-list entry as written by an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListRecord {
    /// An exact key, an IP address, or a CIDR range (canonical form).
    pub entry: String,
    /// Unix time in milliseconds after which the entry no longer applies.
    pub expires_at_ms: Option<u64>,
    pub comment: Option<String>,
    pub created_at_ms: u64,
}

/// Which list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    Allow,
    Block,
}

impl ListKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Allow => "allow",
            ListKind::Block => "block",
        }
    }
}

/// Everything operators have set, by identifier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlState {
    /// By [`crate::overrides::Target::id`].
    pub overrides: BTreeMap<String, OverrideRecord>,
    /// By canonical entry.
    pub allow: BTreeMap<String, ListRecord>,
    pub block: BTreeMap<String, ListRecord>,
}

impl ControlState {
    pub fn list(&self, kind: ListKind) -> &BTreeMap<String, ListRecord> {
        match kind {
            ListKind::Allow => &self.allow,
            ListKind::Block => &self.block,
        }
    }

    fn list_mut(&mut self, kind: ListKind) -> &mut BTreeMap<String, ListRecord> {
        match kind {
            ListKind::Allow => &mut self.allow,
            ListKind::Block => &mut self.block,
        }
    }
}

/// Where the control state is kept.
pub enum Control {
    /// In this process: changes are local to the replica.
    Memory(Mutex<ControlState>),
    /// In Redis: shared by every replica.
    Redis(redis::RedisControl),
}

impl Control {
    pub fn memory() -> Control {
        Control::Memory(Mutex::new(ControlState::default()))
    }

    /// Whether changes reach other replicas.
    pub fn is_shared(&self) -> bool {
        matches!(self, Control::Redis(_))
    }

    /// Reads the whole state.
    pub async fn load(&self) -> Result<ControlState, StoreError> {
        match self {
            Control::Memory(state) => Ok(lock(state).clone()),
            Control::Redis(redis) => redis.load().await,
        }
    }

    /// Creates or replaces an override.
    pub async fn put_override(&self, id: &str, record: &OverrideRecord) -> Result<(), StoreError> {
        match self {
            Control::Memory(state) => {
                lock(state).overrides.insert(id.to_owned(), record.clone());
                Ok(())
            }
            Control::Redis(redis) => redis.put(redis.overrides_key(), id, record).await,
        }
    }

    /// Deletes an override; returns whether it existed.
    pub async fn delete_override(&self, id: &str) -> Result<bool, StoreError> {
        match self {
            Control::Memory(state) => Ok(lock(state).overrides.remove(id).is_some()),
            Control::Redis(redis) => redis.delete(redis.overrides_key(), id).await,
        }
    }

    /// Adds or replaces a list entry.
    pub async fn put_list(&self, kind: ListKind, record: &ListRecord) -> Result<(), StoreError> {
        match self {
            Control::Memory(state) => {
                lock(state).list_mut(kind).insert(record.entry.clone(), record.clone());
                Ok(())
            }
            Control::Redis(redis) => redis.put(redis.list_key(kind), &record.entry, record).await,
        }
    }

    /// Tells the other replicas that a key was reset, so they forget
    /// cached denials (nothing to tell when changes are local).
    pub async fn announce_reset(&self) {
        if let Control::Redis(redis) = self {
            redis.notify().await;
        }
    }

    /// Removes a list entry; returns whether it existed.
    pub async fn delete_list(&self, kind: ListKind, entry: &str) -> Result<bool, StoreError> {
        match self {
            Control::Memory(state) => Ok(lock(state).list_mut(kind).remove(entry).is_some()),
            Control::Redis(redis) => redis.delete(redis.list_key(kind), entry).await,
        }
    }
}

/// A poisoned lock only means a panic elsewhere; the map is still whole.
fn lock(state: &Mutex<ControlState>) -> std::sync::MutexGuard<'_, ControlState> {
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
