//! The operators' records, as they are stored: overrides and allow/block
//! list entries, and [`ControlState`], everything operators have set.
//!
//! These are plain data, serialised as JSON where the store is shared. What
//! they mean is the limiter's business: [`crate::limiter::overrides`]
//! validates and resolves overrides, [`crate::limiter::access`] parses list
//! entries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One override as written by an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideRecord {
    /// The rule's endpoint; `None` is the default rule.
    pub endpoint: Option<String>,
    /// Only this tier (rule overrides); `None` is every tier.
    pub tier: Option<String>,
    /// Only this caller key (key overrides).
    pub key: Option<String>,
    pub algorithm: Option<String>,
    pub limit: Option<i64>,
    pub window: Option<String>,
    /// Sets (`true`) or clears (`false`) shadow mode: evaluated, not
    /// enforced. Left out of the stored JSON when unset, so replicas that
    /// predate it still read the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<bool>,
    /// Unix time in milliseconds after which the override no longer applies.
    pub expires_at_ms: Option<u64>,
    pub created_at_ms: u64,
}

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
    pub const ALL: [ListKind; 2] = [ListKind::Allow, ListKind::Block];

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
    /// By [`crate::limiter::overrides::Target::id`].
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

    pub fn list_mut(&mut self, kind: ListKind) -> &mut BTreeMap<String, ListRecord> {
        match kind {
            ListKind::Allow => &mut self.allow,
            ListKind::Block => &mut self.block,
        }
    }
}
