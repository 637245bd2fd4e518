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

use super::snapshot::Plan;
use super::verdict::binding;
use super::{CheckRequest, Limiter, LimiterError, Reason, Verdict};
use crate::core::{Consume, Policy, Timestamp, Units};
use crate::store::{Applied, CounterKey, Once, Op, Store, StoreError, StoreKey};

/// The longest id a caller may send, in bytes.
pub const MAX_ID_BYTES: usize = 128;

impl<S: Store> Limiter<S> {
    /// Charges `units` to every limit of `request`'s rule (a refund when
    /// negative), once per `request.id` when it has one. Lists and shadow
    /// mode do not apply: the work was done. A store that cannot apply it
    /// is an error (the caller may retry with the same id), never a guess.
    pub async fn report(&self, request: &CheckRequest, units: Units) -> Result<Verdict, LimiterError> {
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
        let mut verdict = self.verdict(&plan, request, policies, applied, reason);
        // Accepted: the numbers say when the next unit fits.
        verdict.decision.allowed = true;
        Ok(verdict)
    }

    /// A check with an id (see the module's docs); the failure mode
    /// decides when the store cannot.
    pub(super) async fn check_once(&self, plan: &Plan<'_>, request: &CheckRequest, now: Timestamp) -> Verdict {
        let policies = policies(plan);
        match self.apply(plan, request, &policies, Op::Check(request.cost)).await {
            Ok(applied) => {
                let reason = Reason::stored(applied.allowed);
                self.verdict(plan, request, policies, applied, reason)
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
        self.resilience.guard(shard, call, &self.metrics).await
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
