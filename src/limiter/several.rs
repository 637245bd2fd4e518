//! Checks of a rule with several limits: every limit's counter decided in
//! one store call, all or nothing — allowed only when every limit allows,
//! and then every counter consumes (see [`crate::core::multi`]).
//!
//! The counters are the rule's, one per limit and counted value (the key,
//! or a scope's value); every counter of a check shares the slot of the
//! rule's partition. The answer is the binding limit's
//! ([`super::verdict::binding`]), with every limit's part alongside.

use super::rules::By;
use super::snapshot::Plan;
use super::verdict::{binding, LimitOutcome};
use super::{CheckRequest, Limiter, Reason, Verdict};
use crate::core::{Consume, Cost, Policy, Timestamp};
use crate::store::{CounterKey, Store};

impl<S: Store> Limiter<S> {
    /// Decides `request` against every limit of its rule (a peek consumes
    /// nothing and asks about one unit).
    pub(super) async fn check_several(&self, plan: &Plan<'_>, request: &CheckRequest, now: Timestamp) -> Verdict {
        let resolved = &plan.resolved;
        // The plan refused requests that lack a scope their rule counts by.
        let value = |by: &By| match by {
            By::Key => request.key.as_str(),
            By::Scope(scope) => request.scope(scope).unwrap_or_default(),
        };
        let policies: Vec<Policy> = resolved
            .limits
            .iter()
            .map(|limit| *limit.policy(resolved.tier_index))
            .collect();
        let counters: Vec<(CounterKey<'_>, &Policy)> = resolved
            .limits
            .iter()
            .zip(&policies)
            .map(|(limit, policy)| {
                let key = CounterKey {
                    rule: resolved.rule,
                    limit: Some(limit.name()),
                    value: value(limit.by()),
                };
                (key, policy)
            })
            .collect();
        let (cost, consume) = match request.peek {
            true => (Cost::ONE, Consume::Never),
            false => (request.cost, Consume::IfAllAllow),
        };
        let call = || {
            self.store
                .check_all(value(resolved.partition), &counters, cost, consume)
        };
        let (decisions, reason, store_error) = match self.resilience.guard(call, &self.metrics).await {
            Ok((allowed, decisions)) => (decisions, Reason::stored(allowed), None),
            Err(e) => {
                let mode = resolved.failure_mode;
                let (decisions, reason) = self.resilience.degrade_all(mode, &counters, cost, consume, now);
                (decisions, reason, Some(e.message))
            }
        };
        let limits: Vec<LimitOutcome> = resolved
            .limits
            .iter()
            .zip(policies)
            .zip(decisions)
            .map(|((limit, policy), decision)| LimitOutcome {
                name: limit.name().clone(),
                by: limit.by().clone(),
                policy,
                decision,
            })
            .collect();
        let allowed = limits.iter().all(|limit| limit.decision.allowed);
        let bound = &limits[binding(&limits, allowed)];
        let reason = if request.peek { Reason::Peek } else { reason };
        let mut verdict = self.record(plan, request, bound.decision, reason);
        verdict.policy = bound.policy;
        verdict.limit_name = Some(bound.name.clone());
        verdict.store_error = store_error;
        verdict.limits = limits;
        verdict
    }
}
