//! The one entry point handlers call: a parsed [`CheckRequest`] in, a
//! [`Verdict`] out. It knows nothing of HTTP; the store knows nothing of
//! rules.
//!
//! A check reads top to bottom in [`Limiter::check`]:
//!
//! 1. **plan** ([`snapshot`]): rule and tier ([`rules`]), block and allow
//!    lists ([`access`]), overrides ([`overrides`]) and the cost check, all
//!    from one immutable snapshot;
//! 2. **recall** ([`deny_cache`]): a denial known to hold is answered
//!    without the store;
//! 3. **store**, through the circuit breaker ([`resilience`]); when it
//!    cannot decide, the failure mode decides instead;
//! 4. **remember** the denial, and **record** the outcome ([`stats`] and
//!    the metrics).
//!
//! Besides checks: [`Limiter::inspect`] and [`Limiter::reset`] for the
//! admin API, [`Limiter::set_rules`] and [`Limiter::set_control`] to swap
//! in a new snapshot, and the upkeep the app runs in the background
//! ([`Limiter::sweep`], [`Limiter::close`]).

pub mod access;
pub mod breaker;
pub mod deny_cache;
pub mod hashing;
pub mod lease;
mod once;
pub mod overrides;
pub mod request;
pub mod resilience;
pub mod rules;
mod several;
pub mod snapshot;
pub mod stats;
pub mod verdict;

use std::ops::ControlFlow;
use std::sync::Arc;

pub use self::once::MAX_ID_BYTES;
pub use self::request::{CheckRequest, Key, KeyError, Protocol};
pub use self::resilience::FailurePolicy;
pub use self::rules::FailureMode;
pub use self::snapshot::{Dangling, Snapshot};
pub use self::verdict::{Lease, LimitOutcome, LimiterError, Reason, Verdict};

use self::breaker::BreakerState;
use self::deny_cache::{DenyCache, Ticket};
use self::hashing::KeyHasher;
use self::lease::LeaseNumbers;
use self::overrides::PolicySource;
use self::resilience::Resilience;
use self::rules::RuleSet;
use self::snapshot::{Plan, Snapshots};
use self::stats::Stats;
use crate::core::{Clock, Consume, Cost, Decision, Timestamp};
use crate::metrics::Metrics;
use crate::store::records::ControlState;
use crate::store::{AnyStore, CounterKey, Store, StoreError, StoreKey};

/// How a limiter is set up, besides its rules, store and clock.
#[derive(Debug, Clone)]
pub struct LimiterConfig {
    /// Longest accepted key, in bytes (list entries and key overrides too).
    pub max_key_bytes: usize,
    /// How many most-limited keys the stats track.
    pub top_keys: usize,
    /// How checks are decided when the store cannot decide.
    pub failure: FailurePolicy,
    /// Remember at most this many denials and answer them without the
    /// store (see [`deny_cache`]); `None` turns the cache off. Worth it
    /// when the store is remote.
    pub deny_cache: Option<usize>,
    /// How callers' keys are hashed before anything keeps them.
    pub keys: KeyHasher,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        LimiterConfig {
            max_key_bytes: 256,
            top_keys: 100,
            failure: FailurePolicy::default(),
            deny_cache: None,
            keys: KeyHasher::Off,
        }
    }
}

/// Rules, overrides, lists and a store.
pub struct Limiter<S = AnyStore> {
    snapshots: Snapshots,
    store: S,
    clock: Arc<dyn Clock>,
    max_key_bytes: usize,
    stats: Stats,
    metrics: Arc<Metrics>,
    resilience: Resilience,
    /// Denials known to hold, answered without the store.
    deny_cache: Option<DenyCache>,
    /// The numbers of the leases `concurrency` limits take.
    leases: LeaseNumbers,
    keys: KeyHasher,
}

impl<S: Store> Limiter<S> {
    pub fn new(rules: RuleSet, store: S, clock: Arc<dyn Clock>, config: LimiterConfig) -> Self {
        Limiter {
            snapshots: Snapshots::new(rules, config.max_key_bytes),
            store,
            max_key_bytes: config.max_key_bytes,
            stats: Stats::new(config.top_keys, clock.now()),
            metrics: Arc::new(Metrics::new()),
            resilience: Resilience::new(config.failure, clock.clone()),
            deny_cache: config.deny_cache.map(DenyCache::new),
            leases: LeaseNumbers::new(),
            keys: config.keys,
            clock,
        }
    }

    /// Records decisions and store timings in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Decides `request`, consuming its cost when allowed.
    pub async fn check(&self, request: &CheckRequest) -> Result<Verdict, LimiterError> {
        let request = self.kept(request);
        self.check_kept(&request).await
    }

    /// `request` with its key as it is kept: hashed when `[keys] hash` is
    /// on (see [`hashing`]), else as sent.
    fn kept<'r>(&self, request: &'r CheckRequest) -> std::borrow::Cow<'r, CheckRequest> {
        match self.keys.key(&request.key) {
            None => std::borrow::Cow::Borrowed(request),
            Some(key) => {
                let mut kept = request.clone();
                kept.key = key;
                std::borrow::Cow::Owned(kept)
            }
        }
    }

    /// An operator's key (an override's, a list entry's) as it is kept.
    pub fn kept_key(&self, raw: &str) -> String {
        self.keys.hash(raw)
    }

    /// [`Limiter::check`] of a request whose key is already as kept.
    async fn check_kept(&self, request: &CheckRequest) -> Result<Verdict, LimiterError> {
        let snapshot = self.snapshots.load();
        let now = self.clock.now();
        let plan = snapshot.plan(request, now)?;
        // The rarer paths are boxed, so that their futures do not make every
        // single-limit check's future larger.
        // A check with an id, or one that takes a lease, is one store call
        // that also keeps the id or the lease.
        if !request.peek && plan.listed.is_none() && (request.id.is_some() || once::leases(&plan)) {
            return Ok(Box::pin(self.check_once(&plan, request, now)).await);
        }
        if !plan.resolved.limits.is_empty() && plan.listed.is_none() {
            return Ok(Box::pin(self.check_several(&plan, request, now)).await);
        }
        if request.peek {
            return Ok(Box::pin(self.peek(&plan, request, now)).await);
        }
        if let Some(reason) = plan.listed {
            let decision = plan.listed_decision(reason == Reason::Allowlisted, now);
            return Ok(self.record(&plan, request, decision, reason));
        }
        let key = StoreKey {
            rule: plan.resolved.rule,
            key: request.key.as_str(),
        };
        let ticket = match self.recall(&plan, key, request.cost, now) {
            ControlFlow::Break(denied) => return Ok(self.record(&plan, request, denied, Reason::Limited)),
            ControlFlow::Continue(ticket) => ticket,
        };
        let stored = self
            .resilience
            .call(&self.store, key, &plan.policy, request.cost, &self.metrics);
        match stored.await {
            Ok(decision) => {
                self.remember(ticket, &plan, key, request.cost, &decision);
                Ok(self.record(&plan, request, decision, Reason::stored(decision.allowed)))
            }
            Err(e) => {
                let mode = plan.resolved.failure_mode;
                let (decision, reason) = self.resilience.degrade(mode, key, &plan.policy, request.cost, now);
                let mut verdict = self.record(&plan, request, decision, reason);
                verdict.store_error = Some(e.message);
                Ok(verdict)
            }
        }
    }

    /// A peek: whether a cost-1 check would be allowed now, and the
    /// numbers as they stand; nothing is consumed, and the deny cache is
    /// neither asked nor told.
    async fn peek(&self, plan: &Plan<'_>, request: &CheckRequest, now: Timestamp) -> Verdict {
        if let Some(reason) = plan.listed {
            let decision = plan.listed_decision(reason == Reason::Allowlisted, now);
            return self.record(plan, request, decision, Reason::Peek);
        }
        let key = StoreKey {
            rule: plan.resolved.rule,
            key: request.key.as_str(),
        };
        let counters = [(CounterKey::single(key), &plan.policy)];
        let peeked = || self.store.check_all("", &counters, Cost::ONE, Consume::Never);
        let shard = self.store.shard(key.rule, key.key);
        let what = || crate::telemetry::StoreCall::new(key.rule, [&plan.policy]);
        match self.resilience.guard(shard, what, peeked, &self.metrics).await {
            Ok((_, decisions)) => self.record(plan, request, decisions[0], Reason::Peek),
            Err(e) => {
                let mode = plan.resolved.failure_mode;
                let decision = self.resilience.degrade_peek(mode, key, &plan.policy, now);
                let mut verdict = self.record(plan, request, decision, Reason::Peek);
                verdict.store_error = Some(e.message);
                verdict
            }
        }
    }

    /// Before the store is asked: a cached denial that holds (the answer),
    /// or the ticket to remember the store's answer with.
    fn recall(
        &self,
        plan: &Plan<'_>,
        key: StoreKey<'_>,
        cost: Cost,
        now: Timestamp,
    ) -> ControlFlow<Decision, Option<Ticket>> {
        let Some(cache) = &self.deny_cache else {
            return ControlFlow::Continue(None);
        };
        match cache.lookup(key.rule, key.key, &plan.policy, cost, now) {
            Some(denied) => {
                self.metrics.deny_cache_hits.inc();
                ControlFlow::Break(denied)
            }
            None => ControlFlow::Continue(Some(cache.ticket(now))),
        }
    }

    /// After the store answered: remember its denial, or forget an older
    /// one when a cost was allowed.
    fn remember(&self, ticket: Option<Ticket>, plan: &Plan<'_>, key: StoreKey<'_>, cost: Cost, decision: &Decision) {
        let (Some(cache), Some(ticket)) = (&self.deny_cache, ticket) else {
            return;
        };
        if decision.allowed {
            cache.forget(key.rule, key.key);
        } else {
            cache.insert(ticket, plan.resolved.rule, key.key, &plan.policy, cost, decision);
        }
    }

    /// Counts the outcome (stats and metrics) and shapes the verdict; a
    /// shadow rule's denial becomes [`Reason::ShadowLimited`] here.
    fn record(&self, plan: &Plan<'_>, request: &CheckRequest, decision: Decision, reason: Reason) -> Verdict {
        let (rule, tier) = (plan.resolved.rule, plan.resolved.tier);
        let reason = if plan.shadow { reason.shadowed() } else { reason };
        match reason {
            Reason::Limited => {
                self.stats.record_limited(rule, request.key.as_str());
                self.metrics.exceeded.with_label_values(&[rule, tier]).inc();
            }
            // Which keys a rule would limit, were it enforced.
            Reason::ShadowLimited => self.stats.record_limited(rule, request.key.as_str()),
            _ => {}
        }
        if let Some(outcome) = reason.outcome() {
            self.stats.record(rule, tier, outcome);
        }
        self.metrics
            .requests
            .with_label_values(&[rule, tier, reason.decision(), request.protocol.as_str()])
            .inc();
        Verdict {
            rule: rule.clone(),
            tier: tier.clone(),
            policy: plan.policy,
            decision,
            reason,
            source: plan.source,
            store_error: None,
            limits: Vec::new(),
            limit_name: None,
            duplicate: false,
            lease: None,
        }
    }

    /// Refuses `request` as [`Limiter::check`] would before asking the
    /// store (an unknown tier, a cost above the limit), consuming nothing.
    pub fn validate(&self, request: &CheckRequest) -> Result<(), LimiterError> {
        self.snapshots.load().plan(request, self.clock.now()).map(|_| ())
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
        let kept: Vec<std::borrow::Cow<'_, CheckRequest>> = requests.iter().map(|r| self.kept(r)).collect();
        for (i, request) in kept.iter().enumerate() {
            self.validate(request).map_err(|e| (i, e))?;
        }
        let checks = futures_util::future::join_all(kept.iter().map(|request| self.check_kept(request)));
        Ok(self.store.together(checks).await)
    }

    /// A key's current state under its effective policy, consuming nothing:
    /// `request` names the key, the rule (`endpoint`), the tier and, for a
    /// rule with several limits, the scopes they count by; its cost is not
    /// used. A rule with several limits answers every limit.
    pub async fn inspect(&self, request: &CheckRequest) -> Result<Verdict, LimiterError> {
        let request = &*self.kept(request);
        let snapshot = self.snapshots.load();
        let resolved = snapshot
            .rules
            .resolve(request.endpoint.as_deref(), request.tier.as_deref())?;
        if !resolved.limits.is_empty() {
            return Box::pin(self.inspect_several(&resolved, request)).await;
        }
        let key = &request.key;
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
            reason: Reason::stored(decision.allowed),
            source,
            store_error: None,
            limits: Vec::new(),
            limit_name: None,
            duplicate: false,
            lease: None,
        })
    }

    /// Forgets a key's state under a rule: it starts full again. Of a rule
    /// with several limits, every limit's counter for the values `request`
    /// names (its key and scopes), or only the one named `limit`; a rule's
    /// only limit is named after the rule. Returns the rule and the limits
    /// reset.
    pub async fn reset(
        &self,
        request: &CheckRequest,
        limit: Option<&str>,
    ) -> Result<(Arc<str>, Vec<Arc<str>>), LimiterError> {
        let request = &*self.kept(request);
        let snapshot = self.snapshots.load();
        let resolved = snapshot.rules.resolve(request.endpoint.as_deref(), None)?;
        let rule = resolved.rule.clone();
        let names = if resolved.limits.is_empty() {
            if let Some(name) = limit.filter(|name| *name != &*rule) {
                return Err(LimiterError::UnknownLimit {
                    name: name.to_owned(),
                    known: format!("{rule:?}"),
                    rule,
                });
            }
            let store_key = StoreKey {
                rule: resolved.rule,
                key: request.key.as_str(),
            };
            self.store.reset(store_key).await?;
            vec![rule.clone()]
        } else {
            self.reset_several(&resolved, request, limit).await?
        };
        self.invalidate_denials();
        Ok((rule, names))
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshots.load_full()
    }

    /// Replaces the configured rules (a reload); overrides are re-resolved.
    pub fn set_rules(&self, rules: RuleSet) -> Vec<Dangling> {
        let (_, dangling) = self.snapshots.set_rules(rules);
        self.published();
        dangling
    }

    /// Replaces the operators' overrides and lists (nothing happens when
    /// they are unchanged, as after most periodic resyncs).
    pub fn set_control(&self, control: ControlState) -> Vec<Dangling> {
        let Some((_, dangling)) = self.snapshots.set_control(control) else {
            return Vec::new();
        };
        self.published();
        dangling
    }

    /// A new snapshot is in force: count its entries, and forget cached
    /// denials (a new policy can give capacity back).
    fn published(&self) {
        let snapshot = self.snapshots.load();
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
        self.invalidate_denials();
    }

    /// Forgets every cached denial: another replica reset a key or changed
    /// a policy.
    pub fn invalidate_denials(&self) {
        if let Some(cache) = &self.deny_cache {
            cache.invalidate();
            self.metrics.deny_cache_entries.set(0);
        }
    }

    /// Drops what has run out: fully restored keys of the memory stores
    /// (the primary one, when it is in memory, and the local fallback) and
    /// cached denials past their `retry_after`. Returns how many.
    pub fn sweep(&self) -> usize {
        let mut dropped = self.resilience.sweep() + self.store.sweep();
        if let Some(cache) = &self.deny_cache {
            dropped += cache.sweep(self.clock.now());
            self.metrics.deny_cache_entries.set(gauge_value(cache.len()));
        }
        dropped
    }

    /// Whether the store can decide now (readiness).
    pub async fn ping_store(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }

    /// Refreshes the store's gauges before a scrape.
    pub fn refresh_gauges(&self) {
        self.store.update_gauges(&self.metrics);
        self.resilience.retain_shards(|shard| self.store.has_shard(shard));
        self.resilience.update_gauges(&self.metrics);
    }

    /// Closes the store's connections (at shutdown).
    pub async fn close(&self) {
        self.store.close().await;
    }

    /// The worst state of the store's breakers (of the shards that exist).
    pub fn breaker_state(&self) -> BreakerState {
        self.resilience.retain_shards(|shard| self.store.has_shard(shard));
        self.resilience.breaker_state()
    }

    /// The failure mode of rules that set none.
    pub fn failure_mode(&self) -> FailureMode {
        self.resilience.mode()
    }

    pub fn deny_cache(&self) -> Option<&DenyCache> {
        self.deny_cache.as_ref()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The limiter's clock (the one expiries are checked against).
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn max_key_bytes(&self) -> usize {
        self.max_key_bytes
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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
        let config = LimiterConfig {
            top_keys: 16,
            ..LimiterConfig::default()
        };
        Limiter::new(rules, MemoryStore::new(), Arc::new(SystemClock), config)
    }

    fn request(key: &str, cost: u64) -> CheckRequest {
        CheckRequest::new(Key::parse(key.to_owned(), 256).unwrap(), Cost::new(cost).unwrap())
    }

    #[tokio::test]
    async fn cost_above_the_limit_is_refused_before_the_store() {
        let limiter = limiter("[defaults]\nlimit = 3\n");
        let err = limiter.check(&request("k", 4)).await.unwrap_err();
        assert!(
            matches!(err, LimiterError::CostAboveLimit { cost: 4, limit: 3, .. }),
            "{err}"
        );
        assert!(limiter.store.is_empty(), "nothing was stored");
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
        let key = request("k", 1);
        for _ in 0..3 {
            let v = limiter.inspect(&key).await.unwrap();
            assert_eq!((v.decision.remaining, v.decision.allowed), (1, true));
        }
        let (rule, limits) = limiter.reset(&key, None).await.unwrap();
        assert_eq!((rule.as_ref(), limits.len()), ("default", 1));
        assert_eq!(limiter.inspect(&key).await.unwrap().decision.remaining, 3);
        assert!(matches!(
            limiter.reset(&key, Some("burst")).await,
            Err(LimiterError::UnknownLimit { .. })
        ));
    }

    #[tokio::test]
    async fn lists_and_overrides_apply_from_the_next_check() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_micros(1_700_000_000_000_000)));
        let settings = Settings::from_toml("[defaults]\nlimit = 1\nwindow = \"1h\"\n").unwrap();
        let limiter = Limiter::new(
            RuleSet::from_settings(&settings).unwrap(),
            MemoryStore::with_clock(clock.clone()),
            clock.clone(),
            LimiterConfig {
                top_keys: 16,
                ..LimiterConfig::default()
            },
        );
        let mut control = ControlState::default();
        let now_ms = clock.now().as_micros() / 1000;
        let list = |entry: &str, expires: Option<u64>| crate::store::records::ListRecord {
            entry: entry.into(),
            expires_at_ms: expires,
            comment: None,
            created_at_ms: now_ms,
        };
        control.block.insert("bad".into(), list("bad", None));
        control
            .allow
            .insert("10.0.0.0/8".into(), list("10.0.0.0/8", Some(now_ms + 1000)));
        let record = crate::limiter::overrides::OverrideRecord {
            endpoint: None,
            tier: None,
            key: Some("vip".into()),
            algorithm: None,
            limit: Some(5),
            window: None,
            shadow: None,
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

    /// A store that is down.
    struct Down;

    impl Store for Down {
        async fn check(&self, _: StoreKey<'_>, _: &crate::core::Policy, _: Cost) -> Result<Decision, StoreError> {
            Err(StoreError {
                transient: true,
                message: "down".into(),
            })
        }

        async fn reset(&self, _: StoreKey<'_>) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_peek_the_store_cannot_answer_follows_the_failure_mode_and_consumes_nothing() {
        let settings = Settings::from_toml("[defaults]\nlimit = 2\nwindow = \"1h\"\n").unwrap();
        for (mode, allowed) in [
            (FailureMode::Open, true),
            (FailureMode::Closed, false),
            (FailureMode::Local, true),
        ] {
            let config = LimiterConfig {
                failure: FailurePolicy {
                    mode,
                    ..FailurePolicy::default()
                },
                ..LimiterConfig::default()
            };
            let limiter = Limiter::new(
                RuleSet::from_settings(&settings).unwrap(),
                Down,
                Arc::new(SystemClock),
                config,
            );
            let mut peek = request("k", 1);
            peek.peek = true;
            for _ in 0..3 {
                let v = limiter.check(&peek).await.unwrap();
                assert_eq!((v.reason, v.decision.allowed), (Reason::Peek, allowed), "{mode:?}");
                assert!(v.store_error.is_some());
            }
            if mode == FailureMode::Local {
                // Checks decided locally consume; the peeks before did not.
                assert_eq!(
                    limiter.check(&request("k", 1)).await.unwrap().reason,
                    Reason::LocalAllowed
                );
                assert_eq!(limiter.check(&peek).await.unwrap().decision.remaining, 1);
            }
        }
    }
}
