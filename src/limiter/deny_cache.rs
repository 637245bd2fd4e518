//! A replica-local cache of denials, so a key already over its limit is
//! answered without a store round trip — and answered exactly as the store
//! would have.
//!
//! Why it is exact: every algorithm's `retry_after` is a promise in both
//! directions (the property tests in `tests/algorithms/` hold it to the
//! microsecond): a cost denied at time `t` with `retry_after` `T` would be
//! denied at every moment before `t + T`, unless something gives capacity
//! back. Other callers and other replicas can only take capacity away, so
//! nothing they do can turn that denial into an allowance. Only three things
//! give capacity back, and each one invalidates the cache:
//!
//! - a reset of the key (`DELETE /admin/keys`), here or on another replica
//!   (announced on the admin change channel);
//! - a different policy for the key (a rules reload, an override set,
//!   changed or expired — an entry remembers its policy and only answers a
//!   check under the same one);
//! - the store losing its state (a Redis flush or restart without
//!   persistence): the cache then denies until `retry_after` like the old
//!   state would have, which never over-admits.
//!
//! Entries are keyed by rule and key and answer only the same cost (a
//! smaller cost may fit where the cached one did not; a larger one would
//! need a longer `retry_after` than the entry knows). When a smaller cost of
//! the key is allowed here, the entry is dropped, so on one replica a cached
//! denial reports the very numbers the store would. Consumption on *other*
//! replicas can push the true `retry_after` later than the cached one: the
//! decision stays exact (the entry expires and the store decides again) and
//! the reported `retry_after` is then early, never late. The deadline is
//! measured from a time read *before* the store was asked, so it can only
//! be early, never late, whatever the skew between this replica's clock and
//! the store's; a clock that steps back makes an entry a miss.
//!
//! A check with several limits is cached the same way, as one entry keyed
//! by its rule and the values its limits count (see [`signature`]), with
//! every limit's decision. The entry holds until the *earliest*
//! `retry_after` of the limits that denied, so every limit it reports
//! denying does deny, and the check with it. The limits that allowed are
//! reported as they stood at the denial; other callers sharing them (the
//! other users of an organisation) may have consumed since, which cannot
//! turn the denial into an allowance.
//!
//! Invalidation is by epoch: [`DenyCache::invalidate`] bumps it and clears
//! the map, an entry is only valid in the epoch it was inserted in, and an
//! insert carries the epoch read before its store call — so a denial the
//! store made before a reset, but which arrives after it, is never cached.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use crate::core::{Cost, Decision, Policy, Timestamp};

/// A denial as the store made it, and how long it holds: of one limit, or
/// of every limit of a check with several (one decision per limit).
#[derive(Debug, Clone)]
struct Entry {
    rule: Arc<str>,
    key: Box<str>,
    policies: Box<[Policy]>,
    cost: u64,
    /// When the store was asked (this replica's clock, read before asking).
    since: Timestamp,
    /// `since + retry_after`: until then the same check is denied.
    until: Timestamp,
    decisions: Box<[Decision]>,
    epoch: u64,
}

/// Denials by rule and key, bounded in size.
pub struct DenyCache {
    /// By a hash of (rule, key); an entry stores both to confirm a hit.
    entries: DashMap<u64, Entry>,
    hasher: std::collections::hash_map::RandomState,
    epoch: AtomicU64,
    max_entries: usize,
    /// About how many entries there are: `DashMap::len` locks every shard,
    /// too dear for a check that only wants to know whether to look. Kept
    /// exact by the single-key operations; a race with `invalidate` can
    /// leave it off by a few until the next sweep recounts, which only
    /// costs a lookup or skips caching one denial — never a wrong answer.
    count: AtomicUsize,
}

/// What a caller must carry from before its store call to [`DenyCache::insert`].
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    epoch: u64,
    since: Timestamp,
}

impl DenyCache {
    /// A cache that holds at most `max_entries` denials.
    pub fn new(max_entries: usize) -> DenyCache {
        DenyCache {
            entries: DashMap::new(),
            hasher: std::collections::hash_map::RandomState::new(),
            epoch: AtomicU64::new(0),
            max_entries,
            count: AtomicUsize::new(0),
        }
    }

    fn slot(&self, rule: &str, key: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        rule.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    }

    /// The denial the store would give `key` under `policy` for `cost` at
    /// `now`, when one is known; counted down to `now`.
    pub fn lookup(&self, rule: &str, key: &str, policy: &Policy, cost: Cost, now: Timestamp) -> Option<Decision> {
        if self.is_empty() {
            return None;
        }
        let entry = self.entries.get(&self.slot(rule, key))?;
        self.holds(&entry, rule, key, std::slice::from_ref(policy), cost, now)
            .then(|| counted_down(&entry, &entry.decisions[0], now))
    }

    /// The denial of a check with several limits (`key` names the values
    /// they count, see [`signature`]), every limit's decision counted down
    /// to `now`. The limits that did not deny report their numbers as they
    /// stood at the denial: other checks may have consumed from them since.
    pub fn lookup_all(
        &self,
        rule: &str,
        key: &str,
        policies: &[Policy],
        cost: Cost,
        now: Timestamp,
    ) -> Option<Vec<Decision>> {
        if self.is_empty() {
            return None;
        }
        let entry = self.entries.get(&self.slot(rule, key))?;
        self.holds(&entry, rule, key, policies, cost, now).then(|| {
            entry
                .decisions
                .iter()
                .map(|decision| counted_down(&entry, decision, now))
                .collect()
        })
    }

    fn holds(&self, entry: &Entry, rule: &str, key: &str, policies: &[Policy], cost: Cost, now: Timestamp) -> bool {
        entry.epoch == self.epoch.load(Ordering::Acquire)
            && &*entry.rule == rule
            && &*entry.key == key
            && *entry.policies == *policies
            && entry.cost == cost.get()
            && entry.since <= now
            && now < entry.until
    }

    /// Read before asking the store; hand to [`DenyCache::insert`] after.
    pub fn ticket(&self, now: Timestamp) -> Ticket {
        Ticket {
            epoch: self.epoch.load(Ordering::Acquire),
            since: now,
        }
    }

    /// Remembers the store's denial `decision` of `cost` for `key`.
    pub fn insert(&self, ticket: Ticket, rule: &Arc<str>, key: &str, policy: &Policy, cost: Cost, decision: &Decision) {
        self.insert_all(
            ticket,
            rule,
            key,
            std::slice::from_ref(policy),
            cost,
            std::slice::from_ref(decision),
        );
    }

    /// Remembers the store's denial of a check with several limits (one
    /// decision per limit, `key` as for [`DenyCache::lookup_all`]): it
    /// holds until the earliest `retry_after` of the limits that denied, so
    /// that while it holds, every limit it reports denying does deny. (A
    /// single limit's denial is the case of one.)
    pub fn insert_all(
        &self,
        ticket: Ticket,
        rule: &Arc<str>,
        key: &str,
        policies: &[Policy],
        cost: Cost,
        decisions: &[Decision],
    ) {
        let retry = decisions
            .iter()
            .filter(|d| !d.allowed)
            .map(|d| d.retry_after_us)
            .min()
            .unwrap_or(0);
        if retry == 0 || retry == u64::MAX || policies.len() != decisions.len() {
            return;
        }
        if ticket.epoch != self.epoch.load(Ordering::Acquire) {
            return; // invalidated while the store was deciding
        }
        let slot = self.slot(rule, key);
        if self.len() >= self.max_entries && !self.entries.contains_key(&slot) {
            return; // full: the sweeper makes room
        }
        let replaced = self.entries.insert(
            slot,
            Entry {
                rule: rule.clone(),
                key: key.into(),
                policies: policies.into(),
                cost: cost.get(),
                since: ticket.since,
                until: ticket.since.plus(retry),
                decisions: decisions.into(),
                epoch: ticket.epoch,
            },
        );
        if replaced.is_none() {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Forgets the denial of `key` under `rule`, if any: this replica just
    /// had a smaller cost allowed, which moved the denied cost's
    /// `retry_after` later than the entry says.
    pub fn forget(&self, rule: &str, key: &str) {
        if !self.is_empty() && self.entries.remove(&self.slot(rule, key)).is_some() {
            let _ = self
                .count
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| Some(c.saturating_sub(1)));
        }
    }

    /// Forgets every denial: after a reset, a policy change, or a
    /// notification that another replica made one.
    pub fn invalidate(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
        self.count.store(self.entries.len(), Ordering::Relaxed);
    }

    /// Drops entries that no longer deny anything; returns how many.
    pub fn sweep(&self, now: Timestamp) -> usize {
        let before = self.entries.len();
        let epoch = self.epoch.load(Ordering::Acquire);
        self.entries
            .retain(|_, e| e.epoch == epoch && e.since <= now && now < e.until);
        self.entries.shrink_to_fit();
        let after = self.entries.len();
        self.count.store(after, Ordering::Relaxed);
        before.saturating_sub(after)
    }

    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One decision of `entry` counted down from when the store was asked to
/// `now`: a denying limit's `retry_after` ends where its own did.
fn counted_down(entry: &Entry, decision: &Decision, now: Timestamp) -> Decision {
    let elapsed = now.since(entry.since);
    let mut decision = *decision;
    if !decision.allowed {
        decision.retry_after_us = entry.since.plus(decision.retry_after_us).since(now);
    }
    decision.reset_after_us = decision
        .reset_after_us
        .saturating_sub(elapsed)
        .max(decision.retry_after_us);
    decision.at = decision.at.plus(elapsed);
    decision
}

/// The identity of a check with several limits within its rule: the value
/// each limit counts per, in order, and the partition's, each prefixed by
/// its length so that no two lists of values share one.
pub fn signature<'v>(values: impl Iterator<Item = &'v str>) -> String {
    let mut s = String::new();
    for value in values {
        s.push_str(itoa::Buffer::new().format(value.len()));
        s.push(':');
        s.push_str(value);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Algorithm;
    use std::time::Duration;

    fn policy(limit: u64) -> Policy {
        Policy::new(Algorithm::TokenBucket, limit, Duration::from_secs(10)).unwrap()
    }

    fn denial(at: u64, retry: u64) -> Decision {
        Decision {
            allowed: false,
            limit: 10,
            remaining: 0,
            reset_after_us: 10_000_000,
            retry_after_us: retry,
            at: Timestamp::from_micros(at),
        }
    }

    fn t(us: u64) -> Timestamp {
        Timestamp::from_micros(us)
    }

    #[test]
    fn a_denial_holds_until_its_retry_after_and_counts_down() {
        let cache = DenyCache::new(16);
        let rule: Arc<str> = "r".into();
        let p = policy(10);
        let ticket = cache.ticket(t(1_000));
        cache.insert(ticket, &rule, "k", &p, Cost::ONE, &denial(1_200, 1_000_000));
        let hit = cache.lookup("r", "k", &p, Cost::ONE, t(501_000)).expect("denied still");
        assert!(!hit.allowed);
        assert_eq!(
            hit.retry_after_us, 500_000,
            "measured from the ticket, not the store's time"
        );
        assert_eq!(hit.reset_after_us, 9_500_000);
        assert_eq!(hit.at, t(501_200));
        assert!(cache.lookup("r", "k", &p, Cost::ONE, t(1_000_999)).is_some());
        assert!(
            cache.lookup("r", "k", &p, Cost::ONE, t(1_001_000)).is_none(),
            "expired at until"
        );
    }

    #[test]
    fn only_the_same_rule_key_policy_and_cost_hit() {
        let cache = DenyCache::new(16);
        let rule: Arc<str> = "r".into();
        let p = policy(10);
        cache.insert(cache.ticket(t(0)), &rule, "k", &p, Cost::ONE, &denial(0, 1_000));
        assert!(cache.lookup("r", "k", &p, Cost::ONE, t(1)).is_some());
        assert!(cache.lookup("r2", "k", &p, Cost::ONE, t(1)).is_none());
        assert!(cache.lookup("r", "k2", &p, Cost::ONE, t(1)).is_none());
        assert!(cache.lookup("r", "k", &policy(11), Cost::ONE, t(1)).is_none());
        assert!(cache.lookup("r", "k", &p, Cost::new(2).unwrap(), t(1)).is_none());
    }

    #[test]
    fn a_clock_stepping_back_is_a_miss() {
        let cache = DenyCache::new(16);
        let rule: Arc<str> = "r".into();
        let p = policy(10);
        cache.insert(cache.ticket(t(1_000)), &rule, "k", &p, Cost::ONE, &denial(1_000, 1_000));
        assert!(cache.lookup("r", "k", &p, Cost::ONE, t(999)).is_none());
    }

    #[test]
    fn invalidation_wins_over_a_denial_in_flight() {
        let cache = DenyCache::new(16);
        let rule: Arc<str> = "r".into();
        let p = policy(10);
        let before_reset = cache.ticket(t(0));
        cache.insert(cache.ticket(t(0)), &rule, "other", &p, Cost::ONE, &denial(0, 1_000));
        cache.invalidate();
        assert!(cache.lookup("r", "other", &p, Cost::ONE, t(1)).is_none());
        cache.insert(before_reset, &rule, "k", &p, Cost::ONE, &denial(0, 1_000));
        assert!(
            cache.lookup("r", "k", &p, Cost::ONE, t(1)).is_none(),
            "decided before the reset"
        );
        cache.insert(cache.ticket(t(0)), &rule, "k", &p, Cost::ONE, &denial(0, 1_000));
        assert!(cache.lookup("r", "k", &p, Cost::ONE, t(1)).is_some());
    }

    #[test]
    fn allowances_and_never_fitting_costs_are_not_cached() {
        let cache = DenyCache::new(16);
        let rule: Arc<str> = "r".into();
        let p = policy(10);
        let mut allowed = denial(0, 0);
        allowed.allowed = true;
        cache.insert(cache.ticket(t(0)), &rule, "a", &p, Cost::ONE, &allowed);
        cache.insert(cache.ticket(t(0)), &rule, "b", &p, Cost::ONE, &denial(0, u64::MAX));
        assert!(cache.is_empty());
    }

    #[test]
    fn bounded_and_swept() {
        let cache = DenyCache::new(2);
        let rule: Arc<str> = "r".into();
        let p = policy(10);
        for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
            cache.insert(
                cache.ticket(t(0)),
                &rule,
                key,
                &p,
                Cost::ONE,
                &denial(0, 100 * (i as u64 + 1)),
            );
        }
        assert_eq!(cache.len(), 2, "a full cache takes no new key");
        assert_eq!(cache.sweep(t(150)), 1, "a expired");
        assert_eq!(cache.len(), 1);
        cache.insert(cache.ticket(t(150)), &rule, "c", &p, Cost::ONE, &denial(150, 100));
        assert_eq!(cache.len(), 2);
    }
}
