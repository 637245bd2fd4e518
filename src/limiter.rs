//! The one entry point handlers call: a parsed [`CheckRequest`] in, a
//! [`Verdict`] out.
//!
//! The limiter holds an immutable [`Snapshot`] of everything a decision
//! depends on besides the store — the configured rules, the operators'
//! overrides and the allow/block lists — behind an atomic pointer. A check
//! loads the current snapshot once, so it never sees half of a change;
//! reloads and admin changes build a new snapshot and swap it in. For each
//! request: block list, allow list, rule and tier, overrides, cost check,
//! store. It knows nothing of HTTP; the store knows nothing of rules.
//!
//! When the store cannot decide (an error, a timeout, or the circuit
//! breaker open), the rule's failure mode decides instead: `open` allows,
//! `closed` denies with [`Reason::FailClosed`], `local` decides on this
//! replica's own memory store with the limit divided by `local_divisor`.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use crate::access::{AccessList, ListEntry, ListItem};
use crate::breaker::{Breaker, Permit};
use crate::control::{ControlState, ListKind};
use crate::core::{Clock, Cost, Decision, Policy, Timestamp};
use crate::deny_cache::DenyCache;
use crate::metrics::Metrics;
use crate::overrides::{OverrideError, OverrideTable, PolicySource, Target};
use crate::rules::{Resolved, RuleSet, UnknownTier};
use crate::settings::FailureMode;
use crate::stats::{Outcome, Stats};
use crate::store::memory::MemoryStore;
use crate::store::{Store, StoreError, StoreKey};

/// The caller's identity for limiting: non-empty and bounded in length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

/// Why a string is not a [`Key`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key must not be empty")]
    Empty,
    #[error("key is {len} bytes; the maximum is {max}")]
    TooLong { len: usize, max: usize },
}

impl Key {
    pub fn parse(key: String, max_bytes: usize) -> Result<Key, KeyError> {
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        if key.len() > max_bytes {
            return Err(KeyError::TooLong {
                len: key.len(),
                max: max_bytes,
            });
        }
        Ok(Key(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One parsed `/check` request.
#[derive(Debug, Clone)]
pub struct CheckRequest {
    pub key: Key,
    pub endpoint: Option<String>,
    pub tier: Option<String>,
    pub cost: Cost,
    /// The end user's address, matched against IP entries of the lists.
    pub client_ip: Option<IpAddr>,
}

/// Why a check was decided the way it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Allowed,
    Limited,
    Allowlisted,
    Blocked,
    /// The store failed; the failure mode `open` allowed.
    FailOpen,
    /// The store failed; the failure mode `closed` denied.
    FailClosed,
    /// The store failed; this replica's local store allowed.
    LocalAllowed,
    /// The store failed; this replica's local store denied.
    LocalLimited,
}

impl Reason {
    /// The `reason` of the `/check` response.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::FailClosed => "store_unavailable",
            other => other.decision(),
        }
    }

    /// The `decision` label of the request metric.
    pub fn decision(self) -> &'static str {
        match self {
            Reason::Allowed => "allowed",
            Reason::Limited => "limited",
            Reason::Allowlisted => "allowlisted",
            Reason::Blocked => "blocked",
            Reason::FailOpen => "fail_open",
            Reason::FailClosed => "fail_closed",
            Reason::LocalAllowed => "local_allowed",
            Reason::LocalLimited => "local_limited",
        }
    }

    /// Whether the store's failure decided this check.
    pub fn degraded(self) -> bool {
        matches!(
            self,
            Reason::FailOpen | Reason::FailClosed | Reason::LocalAllowed | Reason::LocalLimited
        )
    }

    fn outcome(self) -> Option<Outcome> {
        match self {
            Reason::Allowed | Reason::LocalAllowed => Some(Outcome::Allowed),
            Reason::Limited | Reason::LocalLimited => Some(Outcome::Limited),
            Reason::Allowlisted => Some(Outcome::Allowlisted),
            Reason::Blocked => Some(Outcome::Blocked),
            Reason::FailOpen | Reason::FailClosed => None,
        }
    }
}

/// A decision with what it was decided under.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub rule: Arc<str>,
    pub tier: Arc<str>,
    pub policy: Policy,
    pub decision: Decision,
    pub reason: Reason,
    pub source: PolicySource,
    /// Set when the store failed: what it said.
    pub store_error: Option<String>,
}

/// How checks are decided when the store cannot decide.
#[derive(Debug, Clone, Copy)]
pub struct FailurePolicy {
    pub mode: FailureMode,
    pub local_divisor: u64,
    pub breaker_failures: u32,
    pub breaker_open_for: std::time::Duration,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            mode: FailureMode::Local,
            local_divisor: 1,
            breaker_failures: 5,
            breaker_open_for: std::time::Duration::from_secs(1),
        }
    }
}

/// Why the limiter could not decide.
#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error(transparent)]
    UnknownTier(#[from] UnknownTier),
    #[error("cost {cost} exceeds the limit {limit} of rule {rule:?}, tier {tier:?}: it could never be allowed")]
    CostAboveLimit {
        cost: u64,
        limit: u64,
        rule: Arc<str>,
        tier: Arc<str>,
    },
    #[error("store unavailable: {0}")]
    Store(#[from] StoreError),
}

/// Everything a decision depends on besides the store, immutable.
pub struct Snapshot {
    pub rules: Arc<RuleSet>,
    pub overrides: OverrideTable,
    pub allow: AccessList,
    pub block: AccessList,
}

/// What the current snapshot was built from.
struct Sources {
    rules: Arc<RuleSet>,
    control: ControlState,
}

/// A control record that no longer fits the rules (e.g. after a reload).
#[derive(Debug, Clone)]
pub enum Dangling {
    Override(Target, OverrideError),
    ListEntry(ListKind, String, String),
}

/// Rules, overrides, lists and a store.
pub struct Limiter<S> {
    snapshot: ArcSwap<Snapshot>,
    sources: Mutex<Sources>,
    store: S,
    clock: Arc<dyn Clock>,
    max_key_bytes: usize,
    stats: Stats,
    metrics: Arc<Metrics>,
    failure: FailurePolicy,
    breaker: Breaker,
    /// Decides `local`-mode checks while the store is unavailable.
    fallback: MemoryStore<Arc<dyn Clock>>,
    /// Denials known to hold, answered without the store.
    deny_cache: Option<DenyCache>,
}

impl<S: Store> Limiter<S> {
    pub fn new(rules: RuleSet, store: S, clock: Arc<dyn Clock>, max_key_bytes: usize, top_keys: usize) -> Self {
        let rules = Arc::new(rules);
        let control = ControlState::default();
        let (snapshot, _) = build(&rules, &control, max_key_bytes);
        let now = clock.now();
        Limiter {
            snapshot: ArcSwap::from_pointee(snapshot),
            sources: Mutex::new(Sources { rules, control }),
            store,
            max_key_bytes,
            stats: Stats::new(top_keys, now),
            metrics: Arc::new(Metrics::new()),
            failure: FailurePolicy::default(),
            breaker: Breaker::new(5, std::time::Duration::from_secs(1), clock.clone()),
            fallback: MemoryStore::with_clock(clock.clone()),
            deny_cache: None,
            clock,
        }
    }

    /// Answers checks of keys known to be over their limit without the
    /// store, remembering at most `max_entries` denials (see
    /// [`crate::deny_cache`]). Worth it when the store is remote.
    pub fn with_deny_cache(mut self, max_entries: usize) -> Self {
        self.deny_cache = Some(DenyCache::new(max_entries));
        self
    }

    pub fn deny_cache(&self) -> Option<&DenyCache> {
        self.deny_cache.as_ref()
    }

    /// Forgets every cached denial: another replica reset a key or changed
    /// a policy.
    pub fn invalidate_denials(&self) {
        if let Some(cache) = &self.deny_cache {
            cache.invalidate();
            self.metrics.deny_cache_entries.set(0);
        }
    }

    /// Drops cached denials that have run out; returns how many.
    pub fn sweep_deny_cache(&self) -> usize {
        let Some(cache) = &self.deny_cache else {
            return 0;
        };
        let dropped = cache.sweep(self.clock.now());
        self.metrics.deny_cache_entries.set(gauge_value(cache.len()));
        dropped
    }

    /// Sets how checks are decided when the store cannot decide.
    pub fn with_failure_policy(mut self, failure: FailurePolicy) -> Self {
        self.breaker = Breaker::new(failure.breaker_failures, failure.breaker_open_for, self.clock.clone());
        self.failure = failure;
        self
    }

    pub fn failure_policy(&self) -> &FailurePolicy {
        &self.failure
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Drops fully restored keys of the local fallback store.
    pub fn sweep_fallback(&self) -> usize {
        self.fallback.sweep()
    }

    /// Records decisions and store timings in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn max_key_bytes(&self) -> usize {
        self.max_key_bytes
    }

    /// Replaces the configured rules (a reload); overrides are re-resolved.
    pub fn set_rules(&self, rules: RuleSet) -> Vec<Dangling> {
        self.rebuild(|sources| sources.rules = Arc::new(rules))
    }

    /// Replaces the operators' overrides and lists (nothing happens when
    /// they are unchanged, as after most periodic resyncs).
    pub fn set_control(&self, control: ControlState) -> Vec<Dangling> {
        {
            let sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
            if sources.control == control {
                return Vec::new();
            }
        }
        self.rebuild(|sources| sources.control = control)
    }

    fn rebuild(&self, change: impl FnOnce(&mut Sources)) -> Vec<Dangling> {
        // One rebuild at a time, so two concurrent changes cannot each
        // publish a snapshot missing the other.
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut sources);
        let (snapshot, dangling) = build(&sources.rules, &sources.control, self.max_key_bytes);
        let entries = &self.metrics.control_entries;
        entries
            .with_label_values(&["override"])
            .set(gauge_value(snapshot.overrides.len()));
        entries
            .with_label_values(&["allow"])
            .set(gauge_value(snapshot.allow.len()));
        entries
            .with_label_values(&["block"])
            .set(gauge_value(snapshot.block.len()));
        self.snapshot.store(Arc::new(snapshot));
        // A new policy can give capacity back: cached denials no longer hold.
        self.invalidate_denials();
        dangling
    }

    /// Decides `request`, consuming its cost when allowed.
    pub async fn check(&self, request: &CheckRequest) -> Result<Verdict, LimiterError> {
        let snapshot = self.snapshot.load();
        let now = self.clock.now();
        let Plan {
            resolved,
            policy,
            source,
            listed,
        } = plan(&snapshot, request, now)?;
        let key = request.key.as_str();
        let verdict = |decision: Decision, reason: Reason| Verdict {
            rule: resolved.rule.clone(),
            tier: resolved.tier.clone(),
            policy,
            decision,
            reason,
            source,
            store_error: None,
        };
        if let Some(reason) = listed {
            self.record(resolved.rule, resolved.tier, reason);
            let allowed = reason == Reason::Allowlisted;
            return Ok(verdict(listed_decision(&policy, allowed, now), reason));
        }
        let store_key = StoreKey {
            rule: resolved.rule,
            key,
        };
        let ticket = match &self.deny_cache {
            Some(cache) => {
                if let Some(decision) = cache.lookup(resolved.rule, key, &policy, request.cost, now) {
                    self.metrics.deny_cache_hits.inc();
                    self.count_limited(resolved.rule, resolved.tier, key);
                    return Ok(verdict(decision, Reason::Limited));
                }
                Some(cache.ticket(now))
            }
            None => None,
        };
        let decision = match self.call_store(store_key, &policy, request.cost).await {
            Ok(decision) => decision,
            Err(e) => {
                let mode = resolved.failure_mode.unwrap_or(self.failure.mode);
                let (decision, reason) = self.degrade(mode, store_key, &policy, request.cost, now);
                self.record(resolved.rule, resolved.tier, reason);
                let mut v = verdict(decision, reason);
                v.store_error = Some(e.message);
                return Ok(v);
            }
        };
        if decision.allowed {
            if let Some(cache) = &self.deny_cache {
                cache.forget(resolved.rule, key);
            }
            self.record(resolved.rule, resolved.tier, Reason::Allowed);
            return Ok(verdict(decision, Reason::Allowed));
        }
        if let (Some(cache), Some(ticket)) = (&self.deny_cache, ticket) {
            cache.insert(ticket, resolved.rule, key, &policy, request.cost, &decision);
        }
        self.count_limited(resolved.rule, resolved.tier, key);
        Ok(verdict(decision, Reason::Limited))
    }

    fn count_limited(&self, rule: &str, tier: &str, key: &str) {
        self.stats.record_limited(rule, key);
        self.metrics.exceeded.with_label_values(&[rule, tier]).inc();
        self.record(rule, tier, Reason::Limited);
    }

    /// Refuses `request` as [`Limiter::check`] would before asking the
    /// store (an unknown tier, a cost above the limit), consuming nothing.
    pub fn validate(&self, request: &CheckRequest) -> Result<(), LimiterError> {
        plan(&self.snapshot.load(), request, self.clock.now()).map(|_| ())
    }

    /// Decides several requests at once: their store calls are in flight
    /// together, grouped by [`Store::together`] (one round trip's wait for
    /// all of them). When one of them would be refused, none is decided and
    /// the error comes with its index. A request that fails anyway (the
    /// rules reloaded in between) fails alone.
    pub async fn check_batch(
        &self,
        requests: &[CheckRequest],
    ) -> Result<Vec<Result<Verdict, LimiterError>>, (usize, LimiterError)> {
        for (i, request) in requests.iter().enumerate() {
            self.validate(request).map_err(|e| (i, e))?;
        }
        let checks = futures_util::future::join_all(requests.iter().map(|request| self.check(request)));
        Ok(self.store.together(checks).await)
    }

    /// One store round trip through the circuit breaker, timed.
    async fn call_store(&self, key: StoreKey<'_>, policy: &Policy, cost: Cost) -> Result<Decision, StoreError> {
        let permit = self.breaker.permit();
        if permit == Permit::Reject {
            self.metrics.breaker_state.set(self.breaker.state().gauge());
            return Err(StoreError {
                transient: true,
                message: "circuit breaker open: the store failed repeatedly".to_owned(),
            });
        }
        // A probe abandoned mid-flight (its request cancelled) must free the
        // half-open slot, or the breaker would never close.
        struct ProbeGuard<'a>(Option<&'a Breaker>);
        impl Drop for ProbeGuard<'_> {
            fn drop(&mut self) {
                if let Some(breaker) = self.0 {
                    breaker.release_probe();
                }
            }
        }
        let mut guard = ProbeGuard((permit == Permit::Probe).then_some(&self.breaker));
        let started = std::time::Instant::now();
        let result = self.store.check(key, policy, cost).await;
        guard.0 = None;
        self.metrics
            .store_duration
            .with_label_values(&["check"])
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Err(e) if e.transient => self.breaker.on_failure(),
            _ => self.breaker.on_success(),
        }
        self.metrics.breaker_state.set(self.breaker.state().gauge());
        result
    }

    /// The decision of failure mode `mode` for a check the store could not make.
    fn degrade(
        &self,
        mode: FailureMode,
        key: StoreKey<'_>,
        policy: &Policy,
        cost: Cost,
        now: Timestamp,
    ) -> (Decision, Reason) {
        let unlimited = |allowed: bool, retry_after_us: u64| Decision {
            allowed,
            limit: policy.limit(),
            remaining: if allowed { policy.limit() } else { 0 },
            reset_after_us: 0,
            retry_after_us,
            at: now,
        };
        match mode {
            FailureMode::Open => (unlimited(true, 0), Reason::FailOpen),
            FailureMode::Closed => (unlimited(false, 1_000_000), Reason::FailClosed),
            FailureMode::Local => {
                let limit = policy.limit().div_ceil(self.failure.local_divisor.max(1)).max(1);
                let local = Policy::new(policy.algorithm(), limit, policy.quota().window()).unwrap_or(*policy);
                let mut decision = self.fallback.check_now(key, &local, cost);
                if decision.retry_after_us == u64::MAX {
                    // A cost above the divided limit: say "later", not "never".
                    decision.retry_after_us = 1_000_000;
                }
                let reason = if decision.allowed {
                    Reason::LocalAllowed
                } else {
                    Reason::LocalLimited
                };
                (decision, reason)
            }
        }
    }

    fn record(&self, rule: &str, tier: &str, reason: Reason) {
        if let Some(outcome) = reason.outcome() {
            self.stats.record(rule, tier, outcome);
        }
        self.metrics
            .requests
            .with_label_values(&[rule, tier, reason.decision()])
            .inc();
    }

    /// A key's current state under its effective policy, consuming nothing.
    pub async fn inspect(
        &self,
        endpoint: Option<&str>,
        tier: Option<&str>,
        key: &Key,
    ) -> Result<Verdict, LimiterError> {
        let snapshot = self.snapshot.load();
        let resolved = snapshot.rules.resolve(endpoint, tier)?;
        let now = self.clock.now();
        let (policy, source) = snapshot
            .overrides
            .lookup(resolved.rule, resolved.tier, key.as_str(), now)
            .unwrap_or((resolved.policy, PolicySource::Config));
        // A cost above the limit never fits and never consumes: the store
        // reports the state as it is.
        let probe = Cost::new(policy.limit() + 1).unwrap_or(Cost::ONE);
        let store_key = StoreKey {
            rule: resolved.rule,
            key: key.as_str(),
        };
        let mut decision = self.store.check(store_key, &policy, probe).await?;
        decision.allowed = decision.remaining > 0;
        decision.retry_after_us = 0;
        Ok(Verdict {
            rule: resolved.rule.clone(),
            tier: resolved.tier.clone(),
            policy,
            decision,
            reason: if decision.allowed {
                Reason::Allowed
            } else {
                Reason::Limited
            },
            source,
            store_error: None,
        })
    }

    /// Forgets a key's state under a rule: it starts full again.
    pub async fn reset(&self, endpoint: Option<&str>, key: &Key) -> Result<Arc<str>, LimiterError> {
        let snapshot = self.snapshot.load();
        let resolved = snapshot.rules.resolve(endpoint, None)?;
        let store_key = StoreKey {
            rule: resolved.rule,
            key: key.as_str(),
        };
        self.store.reset(store_key).await?;
        self.invalidate_denials();
        Ok(resolved.rule.clone())
    }
}

/// What a check is decided under, before the store is asked.
struct Plan<'s> {
    resolved: Resolved<'s>,
    policy: Policy,
    source: PolicySource,
    /// `Blocked` or `Allowlisted` when a list decides.
    listed: Option<Reason>,
}

/// Rule, tier, lists and overrides for `request`; refuses an unknown tier,
/// and a cost above the limit (it could never fit) unless a list decides.
fn plan<'s>(snapshot: &'s Snapshot, request: &CheckRequest, now: Timestamp) -> Result<Plan<'s>, LimiterError> {
    let resolved = snapshot
        .rules
        .resolve(request.endpoint.as_deref(), request.tier.as_deref())?;
    let key = request.key.as_str();
    let on = |list: &AccessList| !list.is_empty() && list.find(key, request.client_ip, now).is_some();
    let listed = if on(&snapshot.block) {
        Some(Reason::Blocked)
    } else if on(&snapshot.allow) {
        Some(Reason::Allowlisted)
    } else {
        None
    };
    let (policy, source) = snapshot
        .overrides
        .lookup(resolved.rule, resolved.tier, key, now)
        .unwrap_or((resolved.policy, PolicySource::Config));
    if listed.is_none() && request.cost.get() > policy.limit() {
        return Err(LimiterError::CostAboveLimit {
            cost: request.cost.get(),
            limit: policy.limit(),
            rule: resolved.rule.clone(),
            tier: resolved.tier.clone(),
        });
    }
    Ok(Plan {
        resolved,
        policy,
        source,
        listed,
    })
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The decision for a listed key: nothing is consumed or counted.
fn listed_decision(policy: &Policy, allowed: bool, now: Timestamp) -> Decision {
    Decision {
        allowed,
        limit: policy.limit(),
        remaining: if allowed { policy.limit() } else { 0 },
        reset_after_us: 0,
        retry_after_us: 0,
        at: now,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{ManualClock, SystemClock};
    use crate::settings::Settings;
    use crate::store::memory::MemoryStore;

    fn limiter(toml: &str) -> Limiter<MemoryStore> {
        let settings = Settings::from_toml(toml).unwrap();
        let rules = RuleSet::from_settings(&settings).unwrap();
        Limiter::new(rules, MemoryStore::new(), Arc::new(SystemClock), 256, 16)
    }

    fn request(key: &str, cost: u64) -> CheckRequest {
        CheckRequest {
            key: Key::parse(key.to_owned(), 256).unwrap(),
            endpoint: None,
            tier: None,
            cost: Cost::new(cost).unwrap(),
            client_ip: None,
        }
    }

    #[test]
    fn keys_are_bounded() {
        assert_eq!(Key::parse(String::new(), 4), Err(KeyError::Empty));
        assert_eq!(Key::parse("abcde".into(), 4), Err(KeyError::TooLong { len: 5, max: 4 }));
        assert_eq!(Key::parse("abcd".into(), 4).unwrap().as_str(), "abcd");
    }

    #[tokio::test]
    async fn cost_above_the_limit_is_refused_before_the_store() {
        let limiter = limiter("[defaults]\nlimit = 3\n");
        let err = limiter.check(&request("k", 4)).await.unwrap_err();
        assert!(
            matches!(err, LimiterError::CostAboveLimit { cost: 4, limit: 3, .. }),
            "{err}"
        );
        assert!(limiter.store().is_empty(), "nothing was stored");
        assert!(limiter.check(&request("k", 3)).await.unwrap().decision.allowed);
    }

    #[tokio::test]
    async fn unknown_tier_is_refused() {
        let limiter = limiter("");
        let mut req = request("k", 1);
        req.tier = Some("gold".into());
        assert!(matches!(limiter.check(&req).await, Err(LimiterError::UnknownTier(_))));
    }

    #[tokio::test]
    async fn verdict_names_rule_and_tier() {
        let limiter = limiter("[[rules]]\nendpoint = \"GET /x\"\nlimit = 2\n");
        let mut req = request("k", 1);
        req.endpoint = Some("GET /x".into());
        let v = limiter.check(&req).await.unwrap();
        assert_eq!(
            (v.rule.as_ref(), v.tier.as_ref(), v.decision.limit),
            ("GET /x", "default", 2)
        );
        assert_eq!((v.reason, v.source), (Reason::Allowed, PolicySource::Config));
    }

    #[tokio::test]
    async fn inspect_consumes_nothing_and_reset_restores() {
        let limiter = limiter("[defaults]\nlimit = 3\nwindow = \"1h\"\n");
        limiter.check(&request("k", 2)).await.unwrap();
        let key = Key::parse("k".into(), 256).unwrap();
        for _ in 0..3 {
            let v = limiter.inspect(None, None, &key).await.unwrap();
            assert_eq!((v.decision.remaining, v.decision.allowed), (1, true));
        }
        assert_eq!(limiter.reset(None, &key).await.unwrap().as_ref(), "default");
        assert_eq!(limiter.inspect(None, None, &key).await.unwrap().decision.remaining, 3);
    }

    #[tokio::test]
    async fn lists_and_overrides_apply_from_the_next_check() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_micros(1_700_000_000_000_000)));
        let settings = Settings::from_toml("[defaults]\nlimit = 1\nwindow = \"1h\"\n").unwrap();
        let limiter = Limiter::new(
            RuleSet::from_settings(&settings).unwrap(),
            MemoryStore::with_clock(clock.clone()),
            clock.clone(),
            256,
            16,
        );
        let mut control = ControlState::default();
        let now_ms = clock.now().as_micros() / 1000;
        let list = |entry: &str, expires: Option<u64>| crate::control::ListRecord {
            entry: entry.into(),
            expires_at_ms: expires,
            comment: None,
            created_at_ms: now_ms,
        };
        control.block.insert("bad".into(), list("bad", None));
        control
            .allow
            .insert("10.0.0.0/8".into(), list("10.0.0.0/8", Some(now_ms + 1000)));
        let record = crate::overrides::OverrideRecord {
            endpoint: None,
            tier: None,
            key: Some("vip".into()),
            algorithm: None,
            limit: Some(5),
            window: None,
            expires_at_ms: None,
            created_at_ms: now_ms,
        };
        control.overrides.insert(record.target().id(), record);
        assert!(limiter.set_control(control).is_empty());

        let v = limiter.check(&request("bad", 1)).await.unwrap();
        assert_eq!((v.decision.allowed, v.reason), (false, Reason::Blocked));
        let mut from_lan = request("someone", 1);
        from_lan.client_ip = Some("10.1.2.3".parse().unwrap());
        for _ in 0..3 {
            let v = limiter.check(&from_lan).await.unwrap();
            assert_eq!((v.decision.allowed, v.reason), (true, Reason::Allowlisted));
        }
        for _ in 0..5 {
            let v = limiter.check(&request("vip", 1)).await.unwrap();
            assert_eq!((v.decision.allowed, v.source), (true, PolicySource::KeyOverride));
        }
        assert!(!limiter.check(&request("vip", 1)).await.unwrap().decision.allowed);
        // The allow entry expires after a second: the address is limited again.
        clock.advance(std::time::Duration::from_secs(1));
        assert_eq!(limiter.check(&from_lan).await.unwrap().reason, Reason::Allowed);
        assert_eq!(limiter.check(&from_lan).await.unwrap().reason, Reason::Limited);
        let view = limiter.stats().view(10);
        let limited: Vec<(&str, u64)> = view.top_limited.iter().map(|t| (t.key.as_str(), t.count)).collect();
        assert_eq!(limited, [("someone", 1), ("vip", 1)]);
    }
}
