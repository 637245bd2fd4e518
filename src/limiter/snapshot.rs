//! Everything a decision depends on besides the store, immutable: the
//! configured rules, the operators' overrides and the allow/block lists,
//! folded into one [`Snapshot`] behind an atomic pointer.
//!
//! A check loads the current snapshot once, so it never sees half of a
//! change; a reload or an admin change builds a new snapshot and swaps it
//! in. `Snapshot::plan` is everything a check decides before the store is
//! asked.

use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::{ArcSwap, Guard};

use super::access::{AccessList, ListEntry, ListItem};
use super::overrides::{OverrideError, OverrideTable, PolicySource, Target};
use super::request::CheckRequest;
use super::rules::{Resolved, RuleSet};
use super::verdict::{LimiterError, Reason};
use crate::core::{Decision, Policy, Timestamp};
use crate::store::records::{ControlState, ListKind};

/// Rules, overrides and lists, resolved.
pub struct Snapshot {
    pub rules: Arc<RuleSet>,
    pub overrides: OverrideTable,
    pub allow: AccessList,
    pub block: AccessList,
}

/// A control record that no longer fits the rules (e.g. after a reload).
#[derive(Debug, Clone)]
pub enum Dangling {
    Override(Target, OverrideError),
    ListEntry(ListKind, String, String),
}

/// What a check is decided under, before the store is asked.
pub(super) struct Plan<'s> {
    pub resolved: Resolved<'s>,
    pub policy: Policy,
    pub source: PolicySource,
    /// `Blocked` or `Allowlisted` when a list decides.
    pub listed: Option<Reason>,
    /// Evaluate without enforcing (the rule's setting, or an override's).
    pub shadow: bool,
}

impl Snapshot {
    /// Rule, tier, lists and overrides for `request`; refuses an unknown
    /// tier, and a cost above the limit (it could never fit) unless a list
    /// decides.
    pub(super) fn plan(&self, request: &CheckRequest, now: Timestamp) -> Result<Plan<'_>, LimiterError> {
        let resolved = self
            .rules
            .resolve(request.endpoint.as_deref(), request.tier.as_deref())?;
        let key = request.key.as_str();
        let scopes = resolved
            .limits
            .iter()
            .map(|l| l.by())
            .chain((!resolved.limits.is_empty()).then_some(resolved.partition));
        for by in scopes {
            super::several::value_of(by, request, resolved.rule)?;
        }
        let on = |list: &AccessList| !list.is_empty() && list.find(key, request.client_ip, now).is_some();
        let listed = if on(&self.block) {
            Some(Reason::Blocked)
        } else if on(&self.allow) {
            Some(Reason::Allowlisted)
        } else {
            None
        };
        let (policy, source) = self
            .overrides
            .lookup(resolved.rule, resolved.tier, key, now)
            .unwrap_or((resolved.policy, PolicySource::Config));
        let shadow = self
            .overrides
            .shadow(resolved.rule, resolved.tier, key, now)
            .unwrap_or(resolved.shadow);
        // A rule of several limits: the cost must fit the smallest.
        let smallest = resolved
            .limits
            .iter()
            .map(|l| l.policy(resolved.tier_index).limit())
            .min()
            .unwrap_or(policy.limit());
        if listed.is_none() && request.cost.get() > smallest {
            return Err(LimiterError::CostAboveLimit {
                cost: request.cost.get(),
                limit: smallest,
                rule: resolved.rule.clone(),
                tier: resolved.tier.clone(),
            });
        }
        Ok(Plan {
            resolved,
            policy,
            source,
            listed,
            shadow,
        })
    }
}

impl Plan<'_> {
    /// The decision for a listed key: nothing is consumed or counted.
    pub(super) fn listed_decision(&self, allowed: bool, now: Timestamp) -> Decision {
        let limit = self.policy.limit();
        Decision {
            allowed,
            limit,
            remaining: if allowed { limit } else { 0 },
            reset_after_us: 0,
            retry_after_us: 0,
            at: now,
        }
    }
}

/// What the current snapshot was built from.
struct Sources {
    rules: Arc<RuleSet>,
    control: ControlState,
}

/// The current snapshot, and the one way to replace it.
pub(super) struct Snapshots {
    current: ArcSwap<Snapshot>,
    sources: Mutex<Sources>,
    max_key_bytes: usize,
}

impl Snapshots {
    pub(super) fn new(rules: RuleSet, max_key_bytes: usize) -> Snapshots {
        let rules = Arc::new(rules);
        let control = ControlState::default();
        let (snapshot, _) = build(&rules, &control, max_key_bytes);
        Snapshots {
            current: ArcSwap::from_pointee(snapshot),
            sources: Mutex::new(Sources { rules, control }),
            max_key_bytes,
        }
    }

    /// The current snapshot, cheaply, for one check.
    pub(super) fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    pub(super) fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Replaces the configured rules; overrides and lists are re-resolved.
    pub(super) fn set_rules(&self, rules: RuleSet) -> (Arc<Snapshot>, Vec<Dangling>) {
        self.rebuild(|sources| sources.rules = Arc::new(rules))
    }

    /// Replaces the operators' overrides and lists; `None` when they are
    /// unchanged (as after most periodic resyncs).
    pub(super) fn set_control(&self, control: ControlState) -> Option<(Arc<Snapshot>, Vec<Dangling>)> {
        if self.sources.lock().unwrap_or_else(PoisonError::into_inner).control == control {
            return None;
        }
        Some(self.rebuild(|sources| sources.control = control))
    }

    fn rebuild(&self, change: impl FnOnce(&mut Sources)) -> (Arc<Snapshot>, Vec<Dangling>) {
        // One rebuild at a time, so two concurrent changes cannot each
        // publish a snapshot missing the other.
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut sources);
        let (snapshot, dangling) = build(&sources.rules, &sources.control, self.max_key_bytes);
        let snapshot = Arc::new(snapshot);
        self.current.store(snapshot.clone());
        (snapshot, dangling)
    }
}

fn build(rules: &Arc<RuleSet>, control: &ControlState, max_key_bytes: usize) -> (Snapshot, Vec<Dangling>) {
    let (overrides, problems) = OverrideTable::build(rules, control.overrides.values(), max_key_bytes);
    let mut dangling: Vec<Dangling> = problems.into_iter().map(|(t, e)| Dangling::Override(t, e)).collect();
    let mut list = |kind: ListKind| {
        let items = control
            .list(kind)
            .values()
            .filter_map(|record| match ListEntry::parse(&record.entry, max_key_bytes) {
                Ok(entry) => Some(ListItem {
                    entry,
                    expires_at: record
                        .expires_at_ms
                        .map(|ms| Timestamp::from_micros(ms.saturating_mul(1000))),
                    comment: record.comment.clone(),
                }),
                Err(e) => {
                    dangling.push(Dangling::ListEntry(kind, record.entry.clone(), e.to_string()));
                    None
                }
            })
            .collect();
        AccessList::new(items)
    };
    let allow = list(ListKind::Allow);
    let block = list(ListKind::Block);
    (
        Snapshot {
            rules: rules.clone(),
            overrides,
            allow,
            block,
        },
        dangling,
    )
}
