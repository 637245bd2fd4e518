//! Reports, and checks with an id: both go to the store as one
//! [`Store::apply`] call, the id's record in the same atomic step as the
//! counters (see `crate::store`).
//!
//! A report ([`Limiter::report`]) charges every limit of its rule
//! unconditionally — even past the limit, a debt that time pays back — or
//! gives units back, never beyond full; its answer reads the limits as a
//! peek afterwards. A check with an id consumes at most once while the id
//! is remembered (the longest window of the rule's limits): a retry after
//! a lost answer is answered as a duplicate, allowed, consuming nothing.

use super::deny_cache::signature;
use super::lease::{Holder, LeaseToken};
use super::snapshot::Plan;
use super::verdict::{binding, Lease};
use super::{CheckRequest, Limiter, LimiterError, Reason, Verdict};
use crate::core::{Consume, Policy, Timestamp, Units};
use crate::store::{Applied, CounterKey, LeaseOp, Once, Op, Store, StoreError, StoreKey};
use crate::telemetry::StoreCall;

/// The longest id a caller may send, in bytes.
pub const MAX_ID_BYTES: usize = 128;

impl<S: Store> Limiter<S> {
    /// Charges `units` to every limit of `request`'s rule (a refund when
    /// negative), once per `request.id` when it has one. Lists and shadow
    /// mode do not apply: the work was done. A store that cannot apply it
    /// is an error (the caller may retry with the same id), never a guess.
    pub async fn report(&self, request: &CheckRequest, units: Units) -> Result<Verdict, LimiterError> {
        let request = &*self.kept(request);
        let snapshot = self.snapshots.load();
        let now = self.clock.now();
        let plan = snapshot.plan(request, now)?;
        let reason = if units.is_refund() {
            Reason::Refunded
        } else {
            Reason::Reported
        };
        let policies = policies(&plan);
        if let Some(policy) = policies.iter().find(|p| !p.algorithm().reports()) {
            return Err(LimiterError::ReportUnsupported {
                algorithm: policy.algorithm().as_str(),
                rule: plan.resolved.rule.clone(),
            });
        }
        let applied = self.apply(&plan, request, &policies, Op::Report(units)).await?;
        if units.is_refund() && !applied.duplicate {
            self.forget_denial(&plan, request);
        }
        let mut verdict = self.verdict(&plan, request, policies, applied, reason);
        // Accepted: the numbers say when the next unit fits.
        verdict.decision.allowed = true;
        Ok(verdict)
    }

    /// A check with an id (see the module's docs); the failure mode
    /// decides when the store cannot.
    pub(super) async fn check_once(&self, plan: &Plan<'_>, request: &CheckRequest, now: Timestamp) -> Verdict {
        let policies = policies(plan);
        let op = match leases(plan) {
            true => Op::Acquire {
                cost: request.cost,
                lease: self.leases.draw(),
            },
            false => Op::Check(request.cost),
        };
        match self.apply(plan, request, &policies, op).await {
            Ok(applied) => {
                let reason = Reason::stored(applied.allowed);
                let taken = applied.allowed && !applied.duplicate;
                let mut verdict = self.verdict(plan, request, policies.clone(), applied, reason);
                if let (true, Op::Acquire { cost, lease }) = (taken, op) {
                    verdict.lease = Some(token(plan, request, &policies, lease, cost.get()));
                }
                verdict
            }
            Err(e) => {
                let mode = plan.resolved.failure_mode;
                let mut verdict = if plan.resolved.limits.is_empty() {
                    let key = StoreKey {
                        rule: plan.resolved.rule,
                        key: request.key.as_str(),
                    };
                    let (decision, reason) = self.resilience.degrade(mode, key, &plan.policy, request.cost, now);
                    self.record(plan, request, decision, reason)
                } else {
                    let values = values(plan, request);
                    let counters = counters(plan, &values, &policies);
                    let (decisions, reason) =
                        self.resilience
                            .degrade_all(mode, &counters, request.cost, Consume::IfAllAllow, now);
                    let applied = Applied {
                        duplicate: false,
                        allowed: decisions.iter().all(|d| d.allowed),
                        decisions,
                    };
                    self.verdict(plan, request, policies, applied, reason)
                };
                verdict.store_error = Some(e.message);
                verdict
            }
        }
    }

    /// Forgets this replica's cached denial of `request`'s counters: a
    /// refund may free capacity before its `retry_after`. (Other replicas
    /// learn of it through the change channel, see `POST /report`.)
    fn forget_denial(&self, plan: &Plan<'_>, request: &CheckRequest) {
        let Some(cache) = &self.deny_cache else {
            return;
        };
        if plan.resolved.limits.is_empty() {
            cache.forget(plan.resolved.rule, request.key.as_str());
        } else {
            let values = values(plan, request);
            let partition = partition(plan, request);
            cache.forget(plan.resolved.rule, &signature(values.into_iter().chain([partition])));
        }
    }

    /// Ends the lease of `token` on every counter that holds it; whether
    /// it was held (an unknown or expired lease is not an error).
    pub async fn release(&self, token: &str) -> Result<bool, LimiterError> {
        let lease = LeaseToken::decode(token).ok_or(LimiterError::BadLease)?;
        let counters = holders(&lease);
        let released = self
            .store
            .lease(&lease.partition, &counters, lease.number, lease.units, LeaseOp::Release)
            .await?;
        Ok(released.is_some())
    }

    /// Extends the lease of `token` by its lifetime from now on every
    /// counter that holds it: the microseconds until it expires, or `None`
    /// when it is no longer held (released, or expired).
    pub async fn renew(&self, token: &str) -> Result<Option<u64>, LimiterError> {
        let lease = LeaseToken::decode(token).ok_or(LimiterError::BadLease)?;
        let counters = holders(&lease);
        let renewed = self
            .store
            .lease(&lease.partition, &counters, lease.number, lease.units, LeaseOp::Renew)
            .await?;
        let now = self.clock.now();
        Ok(renewed.map(|at| at.as_micros().saturating_sub(now.as_micros())))
    }

    /// One [`Store::apply`] of `op` on the counters of `request`'s rule,
    /// through the circuit breaker of their shard.
    async fn apply(
        &self,
        plan: &Plan<'_>,
        request: &CheckRequest,
        policies: &[Policy],
        op: Op,
    ) -> Result<Applied, StoreError> {
        let values = values(plan, request);
        let counters = counters(plan, &values, policies);
        let partition = partition(plan, request);
        // An id is remembered for the rule's longest window.
        let ttl_us = policies.iter().map(|p| p.quota().window_us()).max().unwrap_or(1);
        let once = request.id.as_deref().map(|id| Once { id, ttl_us });
        let shard = self.store.shard(plan.resolved.rule, partition);
        let call = || self.store.apply(partition, &counters, op, once);
        let what = || StoreCall::new(plan.resolved.rule, policies);
        self.resilience.guard(shard, what, call, &self.metrics).await
    }

    /// The verdict of an applied call: the binding limit's numbers, every
    /// limit's part for a rule with several, and whether it was a
    /// duplicate (then allowed, as the first call was, with the numbers
    /// as they stand).
    fn verdict(
        &self,
        plan: &Plan<'_>,
        request: &CheckRequest,
        policies: Vec<Policy>,
        applied: Applied,
        reason: Reason,
    ) -> Verdict {
        let Applied {
            duplicate,
            allowed,
            mut decisions,
        } = applied;
        if duplicate && reason == Reason::Allowed {
            for decision in &mut decisions {
                decision.allowed = true;
                decision.retry_after_us = 0;
            }
        }
        if plan.resolved.limits.is_empty() {
            let mut verdict = self.record(plan, request, decisions[0], reason);
            verdict.duplicate = duplicate;
            return verdict;
        }
        let limits = super::several::outcomes(&plan.resolved, policies, decisions);
        let bound = &limits[binding(&limits, allowed)];
        let mut verdict = self.record(plan, request, bound.decision, reason);
        verdict.policy = bound.policy;
        verdict.limit_name = Some(bound.name.clone());
        verdict.limits = limits;
        verdict.duplicate = duplicate;
        verdict
    }
}

/// Whether the plan's rule has a `concurrency` limit (its allowed checks
/// take a lease).
pub(super) fn leases(plan: &Plan<'_>) -> bool {
    match plan.resolved.limits.is_empty() {
        true => plan.policy.algorithm().leases(),
        false => plan
            .resolved
            .limits
            .iter()
            .any(|limit| limit.policy(plan.resolved.tier_index).algorithm().leases()),
    }
}

/// The token of lease `number` of `units`, held by every `concurrency`
/// counter of the plan's rule for `request`.
fn token(plan: &Plan<'_>, request: &CheckRequest, policies: &[Policy], number: u64, units: u64) -> Lease {
    let values = values(plan, request);
    let names: Vec<Option<String>> = match plan.resolved.limits.is_empty() {
        true => vec![None],
        false => plan
            .resolved
            .limits
            .iter()
            .map(|l| Some(l.name().to_string()))
            .collect(),
    };
    let holders: Vec<Holder> = names
        .into_iter()
        .zip(values)
        .zip(policies)
        .filter(|(_, policy)| policy.algorithm().leases())
        .map(|((limit, value), policy)| Holder {
            limit,
            value: value.to_owned(),
            ttl_us: policy.quota().window_us(),
        })
        .collect();
    let expires_in_us = holders.iter().map(|h| h.ttl_us).min().unwrap_or(0);
    let token = LeaseToken {
        number,
        units,
        rule: plan.resolved.rule.to_string(),
        partition: partition(plan, request).to_owned(),
        holders,
    };
    Lease {
        token: token.encode(),
        expires_in_us,
    }
}

/// The counters of a lease's token, with its lifetime on each.
fn holders(lease: &LeaseToken) -> Vec<(CounterKey<'_>, u64)> {
    lease
        .holders
        .iter()
        .map(|h| {
            let key = CounterKey {
                rule: &lease.rule,
                limit: h.limit.as_deref(),
                value: &h.value,
            };
            (key, h.ttl_us)
        })
        .collect()
}

/// The policy of every limit of the plan's rule: its only one (with any
/// override), or each of its several for the request's tier.
fn policies(plan: &Plan<'_>) -> Vec<Policy> {
    if plan.resolved.limits.is_empty() {
        return vec![plan.policy];
    }
    plan.resolved
        .limits
        .iter()
        .map(|limit| *limit.policy(plan.resolved.tier_index))
        .collect()
}

/// The value each limit counts per (the plan refused requests that lack a
/// scope their rule counts by).
fn values<'r>(plan: &Plan<'_>, request: &'r CheckRequest) -> Vec<&'r str> {
    if plan.resolved.limits.is_empty() {
        return vec![request.key.as_str()];
    }
    plan.resolved
        .limits
        .iter()
        .map(|limit| super::several::value_or_empty(limit.by(), request))
        .collect()
}

/// The counters of the call: a rule's only, unnamed one, or one per limit.
fn counters<'a>(plan: &'a Plan<'_>, values: &[&'a str], policies: &'a [Policy]) -> Vec<(CounterKey<'a>, &'a Policy)> {
    if plan.resolved.limits.is_empty() {
        let key = StoreKey {
            rule: plan.resolved.rule,
            key: values[0],
        };
        return vec![(CounterKey::single(key), &policies[0])];
    }
    plan.resolved
        .limits
        .iter()
        .zip(values)
        .zip(policies)
        .map(|((limit, value), policy)| {
            let key = CounterKey {
                rule: plan.resolved.rule,
                limit: Some(limit.name()),
                value,
            };
            (key, policy)
        })
        .collect()
}

/// The slot every key of the call shares: a single-limit rule's key, or
/// the rule's partition.
fn partition<'r>(plan: &Plan<'_>, request: &'r CheckRequest) -> &'r str {
    if plan.resolved.limits.is_empty() {
        return request.key.as_str();
    }
    super::several::value_or_empty(plan.resolved.partition, request)
}
