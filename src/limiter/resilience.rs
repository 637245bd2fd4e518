//! What happens when the store cannot decide: the circuit breaker around
//! every store call, and the failure mode that decides instead.
//!
//! A store call goes through the [`Breaker`]: after `breaker_failures`
//! transient failures in a row it opens, and checks stop waiting on a store
//! that is down; after `breaker_open_for` one probe is let through. A check
//! the store could not make is decided by its rule's [`FailureMode`]:
//! `open` allows, `closed` denies with [`Reason::FailClosed`], `local`
//! decides on this replica's own memory store with the limit divided by
//! `local_divisor`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tracing::Instrument;

use super::breaker::{Breaker, BreakerState, Permit};
use super::rules::FailureMode;
use super::verdict::Reason;
use crate::core::{Clock, Consume, Cost, Decision, Policy, Timestamp};
use crate::metrics::Metrics;
use crate::store::memory::MemoryStore;
use crate::store::{CounterKey, Store, StoreError, StoreKey};
use crate::telemetry::StoreCall;

/// How checks are decided when the store cannot decide.
#[derive(Debug, Clone, Copy)]
pub struct FailurePolicy {
    pub mode: FailureMode,
    pub local_divisor: u64,
    pub breaker_failures: u32,
    pub breaker_open_for: Duration,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            mode: FailureMode::Local,
            local_divisor: 1,
            breaker_failures: 5,
            breaker_open_for: Duration::from_secs(1),
        }
    }
}

/// The breakers, the failure policy and the local fallback store.
pub(super) struct Resilience {
    policy: FailurePolicy,
    /// The breaker of shard 0: the whole store, where one place holds
    /// every key (memory, a standalone Redis).
    breaker: Breaker,
    /// One breaker per other shard (a cluster's master, see
    /// [`Store::shard`]), made on its first call: one master failing opens
    /// its own breaker only.
    shards: DashMap<u32, Arc<Breaker>>,
    clock: Arc<dyn Clock>,
    /// Decides `local`-mode checks while the store is unavailable.
    fallback: MemoryStore<Arc<dyn Clock>>,
}

impl Resilience {
    pub(super) fn new(policy: FailurePolicy, clock: Arc<dyn Clock>) -> Resilience {
        Resilience {
            policy,
            breaker: Breaker::new(policy.breaker_failures, policy.breaker_open_for, clock.clone()),
            shards: DashMap::new(),
            clock: clock.clone(),
            fallback: MemoryStore::with_clock(clock),
        }
    }

    /// The failure mode of rules that set none.
    pub(super) fn mode(&self) -> FailureMode {
        self.policy.mode
    }

    /// The worst state of any breaker: open when one shard's is.
    pub(super) fn breaker_state(&self) -> BreakerState {
        let mut worst = self.breaker.state();
        for breaker in self.shards.iter() {
            let state = breaker.state();
            if state.gauge() > worst.gauge() {
                worst = state;
            }
        }
        worst
    }

    /// Drops the breakers of shards that no longer exist (a master replaced
    /// by its replica, or emptied by resharding): nothing calls them any
    /// more, and one left half-open would be reported forever.
    pub(super) fn retain_shards(&self, exists: impl Fn(u32) -> bool) {
        self.shards.retain(|shard, _| exists(*shard));
    }

    /// How many breakers are open (of shard 0 and the others).
    pub(super) fn breakers_open(&self) -> usize {
        let others = self.shards.iter().filter(|b| b.state() == BreakerState::Open).count();
        others + usize::from(self.breaker.state() == BreakerState::Open)
    }

    /// The breaker of `shard`.
    fn breaker(&self, shard: u32) -> BreakerRef<'_> {
        if shard == 0 {
            return BreakerRef::Whole(&self.breaker);
        }
        if let Some(breaker) = self.shards.get(&shard) {
            return BreakerRef::Shard(breaker.clone());
        }
        let made = Breaker::new(
            self.policy.breaker_failures,
            self.policy.breaker_open_for,
            self.clock.clone(),
        );
        BreakerRef::Shard(self.shards.entry(shard).or_insert_with(|| Arc::new(made)).clone())
    }

    /// Drops fully restored keys of the local fallback store.
    pub(super) fn sweep(&self) -> usize {
        self.fallback.sweep()
    }

    /// One store check through the circuit breaker, timed.
    pub(super) async fn call<S: Store>(
        &self,
        store: &S,
        key: StoreKey<'_>,
        policy: &Policy,
        cost: Cost,
        metrics: &Metrics,
    ) -> Result<Decision, StoreError> {
        let shard = store.shard(key.rule, key.key);
        let what = || StoreCall::new(key.rule, [policy]);
        self.guard(shard, what, || store.check(key, policy, cost), metrics)
            .await
    }

    /// One store call through the circuit breaker, timed as a check, in a
    /// `store` span describing it (`what`, asked only when traces are
    /// exported and the request is sampled). The call's future is made here, once the breaker lets it through, and
    /// awaited where it is made (a future passed in would be held twice in
    /// this one's state).
    /// `shard` is the store's for the call's keys ([`Store::shard`]).
    pub(super) async fn guard<'w, T: Answer, F>(
        &self,
        shard: u32,
        what: impl FnOnce() -> StoreCall<'w>,
        call: impl FnOnce() -> F,
        metrics: &Metrics,
    ) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        if !crate::telemetry::exporting() || !crate::telemetry::in_sampled_trace() {
            return self.breaker_call(shard, call, metrics).await;
        }
        let span = what().span();
        let call = self.breaker_call(shard, call, metrics).instrument(span.clone());
        let (result, batch) = crate::telemetry::counting_batch(call).await;
        StoreCall::outcome(&span, result.as_ref().ok().map(Answer::allowed), batch);
        result
    }

    /// [`Resilience::guard`] without the span.
    async fn breaker_call<T, F>(&self, shard: u32, call: impl FnOnce() -> F, metrics: &Metrics) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, StoreError>>,
    {
        let breaker = self.breaker(shard);
        let permit = breaker.permit();
        if permit == Permit::Reject {
            self.publish(shard, &breaker, metrics);
            return Err(StoreError {
                transient: true,
                message: match shard {
                    0 => "circuit breaker open: the store failed repeatedly".to_owned(),
                    _ => "circuit breaker open: this key's shard of the store failed repeatedly".to_owned(),
                },
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
        let mut guard = ProbeGuard((permit == Permit::Probe).then_some(&*breaker));
        let started = Instant::now();
        let result = call().await;
        guard.0 = None;
        metrics
            .store_duration
            .with_label_values(&["check"])
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Err(e) if e.transient => breaker.on_failure(),
            _ => breaker.on_success(),
        }
        self.publish(shard, &breaker, metrics);
        result
    }

    /// Sets the breaker gauge: shard 0's state as it is; with shards, the
    /// worst of them, recounted only when this one is not closed (the
    /// scrape recounts too, see [`Resilience::update_gauges`]).
    fn publish(&self, shard: u32, breaker: &Breaker, metrics: &Metrics) {
        let state = breaker.state();
        if shard == 0 {
            metrics.breaker_state.set(state.gauge());
        } else if state != BreakerState::Closed || metrics.breaker_state.get() != 0 {
            self.update_gauges(metrics);
        }
    }

    /// The breaker gauges: the worst state, and how many are open.
    pub(super) fn update_gauges(&self, metrics: &Metrics) {
        metrics.breaker_state.set(self.breaker_state().gauge());
        metrics
            .breakers_open
            .set(i64::try_from(self.breakers_open()).unwrap_or(i64::MAX));
    }

    /// The answer to a peek the store could not make, by failure mode
    /// `mode` (the rule's, or else the default): `open` would allow,
    /// `closed` would not, `local` peeks at this replica's own counter.
    pub(super) fn degrade_peek(
        &self,
        mode: Option<FailureMode>,
        key: StoreKey<'_>,
        policy: &Policy,
        now: Timestamp,
    ) -> Decision {
        match mode.unwrap_or(self.policy.mode) {
            FailureMode::Local => {
                let local = self.local_policy(policy);
                let counters = [(CounterKey::single(key), &local)];
                let (_, decisions) = self.fallback.check_all_now(&counters, Cost::ONE, Consume::Never);
                decisions[0]
            }
            mode => {
                let (mut decision, _) = self.degrade(Some(mode), key, policy, Cost::ONE, now);
                decision.retry_after_us = 0;
                decision
            }
        }
    }

    /// The decisions of failure mode `mode` for a check of several limits
    /// the store could not make: `open` allows and `closed` denies every
    /// limit; `local` decides them all or nothing on this replica's own
    /// counters, each limit divided by `local_divisor`.
    pub(super) fn degrade_all(
        &self,
        mode: Option<FailureMode>,
        counters: &[(CounterKey<'_>, &Policy)],
        cost: Cost,
        consume: Consume,
        now: Timestamp,
    ) -> (Vec<Decision>, Reason) {
        match mode.unwrap_or(self.policy.mode) {
            FailureMode::Local => {
                let local: Vec<Policy> = counters.iter().map(|(_, p)| self.local_policy(p)).collect();
                let counters: Vec<(CounterKey<'_>, &Policy)> =
                    counters.iter().zip(&local).map(|((key, _), p)| (*key, p)).collect();
                let (allowed, mut decisions) = self.fallback.check_all_now(&counters, cost, consume);
                for decision in &mut decisions {
                    if decision.retry_after_us == u64::MAX {
                        // A cost above a divided limit: say "later", not "never".
                        decision.retry_after_us = 1_000_000;
                    }
                }
                let reason = if allowed {
                    Reason::LocalAllowed
                } else {
                    Reason::LocalLimited
                };
                (decisions, reason)
            }
            mode => {
                let mut reason = Reason::FailOpen;
                let decisions = counters
                    .iter()
                    .map(|(key, policy)| {
                        let single = StoreKey {
                            rule: key.rule,
                            key: key.value,
                        };
                        let (decision, r) = self.degrade(Some(mode), single, policy, cost, now);
                        reason = r;
                        decision
                    })
                    .collect();
                (decisions, reason)
            }
        }
    }

    /// The limit `local` mode enforces on this replica.
    fn local_policy(&self, policy: &Policy) -> Policy {
        let limit = policy.limit().div_ceil(self.policy.local_divisor.max(1)).max(1);
        Policy::new(policy.algorithm(), limit, policy.quota().window()).unwrap_or(*policy)
    }

    /// The decision of failure mode `mode` (the rule's, or else the
    /// default) for a check the store could not make.
    pub(super) fn degrade(
        &self,
        mode: Option<FailureMode>,
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
        match mode.unwrap_or(self.policy.mode) {
            FailureMode::Open => (unlimited(true, 0), Reason::FailOpen),
            FailureMode::Closed => (unlimited(false, 1_000_000), Reason::FailClosed),
            FailureMode::Local => {
                let local = self.local_policy(policy);
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
}

/// What a store call answered, as its span's outcome says it.
pub(super) trait Answer {
    /// Whether every counter allowed.
    fn allowed(&self) -> bool;
}

impl Answer for Decision {
    fn allowed(&self) -> bool {
        self.allowed
    }
}

impl Answer for (bool, Vec<Decision>) {
    fn allowed(&self) -> bool {
        self.0
    }
}

impl Answer for crate::store::Applied {
    fn allowed(&self) -> bool {
        self.allowed
    }
}

impl Answer for () {
    fn allowed(&self) -> bool {
        true
    }
}

/// A shard's breaker: shard 0's by reference, another's shared.
enum BreakerRef<'a> {
    Whole(&'a Breaker),
    Shard(Arc<Breaker>),
}

impl std::ops::Deref for BreakerRef<'_> {
    type Target = Breaker;

    fn deref(&self) -> &Breaker {
        match self {
            BreakerRef::Whole(breaker) => breaker,
            BreakerRef::Shard(breaker) => breaker,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ManualClock;

    #[tokio::test]
    async fn a_shard_breaker_opens_alone_and_goes_with_its_shard() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_micros(1_000_000)));
        let resilience = Resilience::new(FailurePolicy::default(), clock.clone());
        let metrics = Metrics::new();
        let what = || || StoreCall::new("default", []);
        let fail = || async {
            Err::<(), StoreError>(StoreError {
                transient: true,
                message: "down".into(),
            })
        };
        for _ in 0..FailurePolicy::default().breaker_failures {
            let _ = resilience.guard(7, what(), fail, &metrics).await;
        }
        assert_eq!(resilience.breaker_state(), BreakerState::Open);
        assert_eq!(resilience.breakers_open(), 1);
        let ok = || async { Ok::<(), StoreError>(()) };
        assert!(
            resilience.guard(8, what(), ok, &metrics).await.is_ok(),
            "another shard's calls go through"
        );
        assert!(
            resilience.guard(7, what(), ok, &metrics).await.is_err(),
            "the open shard's are refused"
        );
        // The shard is gone; its breaker, half-open once nothing calls it,
        // must not be reported.
        clock.advance(Duration::from_secs(10));
        assert_eq!(resilience.breaker_state(), BreakerState::HalfOpen);
        resilience.retain_shards(|shard| shard != 7);
        assert_eq!(resilience.breaker_state(), BreakerState::Closed);
    }
}
