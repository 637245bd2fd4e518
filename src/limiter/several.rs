//! Checks of a rule with several limits: every limit's counter decided in
//! one store call, all or nothing — allowed only when every limit allows,
//! and then every counter consumes (see [`crate::core::multi`]).
//!
//! The counters are the rule's, one per limit and counted value (the key,
//! or a scope's value); every counter of a check shares the slot of the
//! rule's partition. The answer is the binding limit's
//! ([`super::verdict::binding`]), with every limit's part alongside.

use std::sync::Arc;

use super::deny_cache::signature;
use super::overrides::PolicySource;
use super::rules::{By, NamedLimit, Resolved};
use super::snapshot::Plan;
use super::verdict::{binding, LimitOutcome};
use super::{CheckRequest, Limiter, LimiterError, Reason, Verdict};
use crate::core::{Consume, Cost, Decision, Policy, Timestamp};
use crate::store::{CounterKey, Store};
use crate::telemetry::StoreCall;

/// The value `by` counts per in `request`: its key, or the value of one of
/// its scopes; a scope the request does not name is refused.
pub(super) fn value_of<'r>(by: &By, request: &'r CheckRequest, rule: &Arc<str>) -> Result<&'r str, LimiterError> {
    match by {
        By::Key => Ok(request.key.as_str()),
        By::Scope(scope) => request.scope(scope).ok_or_else(|| LimiterError::MissingScope {
            scope: scope.clone(),
            rule: rule.clone(),
        }),
    }
}

/// The value `by` counts per in `request`, or "" for a scope it does not
/// name (for requests the plan accepted, which name every scope their
/// rule counts by).
pub(super) fn value_or_empty<'r>(by: &By, request: &'r CheckRequest) -> &'r str {
    match by {
        By::Key => request.key.as_str(),
        By::Scope(scope) => request.scope(scope).unwrap_or_default(),
    }
}

/// Every limit's part of a verdict, in configuration order.
pub(super) fn outcomes(resolved: &Resolved<'_>, policies: Vec<Policy>, decisions: Vec<Decision>) -> Vec<LimitOutcome> {
    resolved
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
        .collect()
}

/// The counter of `limit` for the values `request` names.
fn counter<'a>(
    resolved: &Resolved<'a>,
    limit: &'a NamedLimit,
    request: &'a CheckRequest,
) -> Result<CounterKey<'a>, LimiterError> {
    Ok(CounterKey {
        rule: resolved.rule,
        limit: Some(limit.name()),
        value: value_of(limit.by(), request, resolved.rule)?,
    })
}

impl<S: Store> Limiter<S> {
    /// Decides `request` against every limit of its rule (a peek consumes
    /// nothing and asks about one unit).
    pub(super) async fn check_several(&self, plan: &Plan<'_>, request: &CheckRequest, now: Timestamp) -> Verdict {
        let resolved = &plan.resolved;
        // The plan refused requests that lack a scope their rule counts by.
        let value = |by: &By| value_or_empty(by, request);
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
        let partition = value(resolved.partition);
        // The deny cache answers a repeat of a denied check (not a peek,
        // which the cache neither asks nor tells).
        let cached = match (&self.deny_cache, request.peek) {
            (Some(cache), false) => {
                let values = counters.iter().map(|(key, _)| key.value);
                let signature = signature(values.chain(std::iter::once(partition)));
                match cache.lookup_all(resolved.rule, &signature, &policies, cost, now) {
                    Some(denied) => {
                        self.metrics.deny_cache_hits.inc();
                        Err(denied)
                    }
                    None => Ok(Some((cache, cache.ticket(now), signature))),
                }
            }
            _ => Ok(None),
        };
        let call = || self.store.check_all(partition, &counters, cost, consume);
        let (decisions, reason, store_error) = match cached {
            Err(denied) => (denied, Reason::Limited, None),
            Ok(remember) => match self
                .resilience
                .guard(
                    self.store.shard(resolved.rule, partition),
                    || StoreCall::new(resolved.rule, &policies),
                    call,
                    &self.metrics,
                )
                .await
            {
                Ok((allowed, decisions)) => {
                    if let Some((cache, ticket, signature)) = remember {
                        match allowed {
                            true => cache.forget(resolved.rule, &signature),
                            false => cache.insert_all(ticket, resolved.rule, &signature, &policies, cost, &decisions),
                        }
                    }
                    (decisions, Reason::stored(allowed), None)
                }
                Err(e) => {
                    let mode = resolved.failure_mode;
                    let (decisions, reason) = self.resilience.degrade_all(mode, &counters, cost, consume, now);
                    (decisions, reason, Some(e.message))
                }
            },
        };
        let limits = outcomes(resolved, policies, decisions);
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

    /// Every limit's state for the values `request` names, consuming
    /// nothing: one store call, as a peek, outside the circuit breaker and
    /// the stats (an operator's read is not a decision).
    pub(super) async fn inspect_several(
        &self,
        resolved: &Resolved<'_>,
        request: &CheckRequest,
    ) -> Result<Verdict, LimiterError> {
        let partition = value_of(resolved.partition, request, resolved.rule)?;
        let policies: Vec<Policy> = resolved
            .limits
            .iter()
            .map(|limit| *limit.policy(resolved.tier_index))
            .collect();
        let mut counters = Vec::with_capacity(policies.len());
        for (limit, policy) in resolved.limits.iter().zip(&policies) {
            counters.push((counter(resolved, limit, request)?, policy));
        }
        let (allowed, decisions) = self
            .store
            .check_all(partition, &counters, Cost::ONE, Consume::Never)
            .await?;
        let limits = outcomes(resolved, policies, decisions);
        let bound = &limits[binding(&limits, allowed)];
        Ok(Verdict {
            rule: resolved.rule.clone(),
            tier: resolved.tier.clone(),
            policy: bound.policy,
            decision: bound.decision,
            reason: Reason::stored(allowed),
            source: PolicySource::Config,
            store_error: None,
            limit_name: Some(bound.name.clone()),
            duplicate: false,
            lease: None,
            limits,
        })
    }

    /// Forgets the counters of every limit for the values `request` names,
    /// or of the one named `only`, in one store call.
    pub(super) async fn reset_several(
        &self,
        resolved: &Resolved<'_>,
        request: &CheckRequest,
        only: Option<&str>,
    ) -> Result<Vec<Arc<str>>, LimiterError> {
        let chosen: Vec<&NamedLimit> = match only {
            None => resolved.limits.iter().collect(),
            Some(name) => match resolved.limits.iter().find(|l| &**l.name() == name) {
                Some(limit) => vec![limit],
                None => {
                    let known: Vec<String> = resolved.limits.iter().map(|l| format!("{:?}", l.name())).collect();
                    return Err(LimiterError::UnknownLimit {
                        name: name.to_owned(),
                        rule: resolved.rule.clone(),
                        known: known.join(", "),
                    });
                }
            },
        };
        let partition = value_of(resolved.partition, request, resolved.rule)?;
        let counters = chosen
            .iter()
            .map(|limit| counter(resolved, limit, request))
            .collect::<Result<Vec<CounterKey<'_>>, LimiterError>>()?;
        self.store.reset_all(partition, &counters).await?;
        Ok(chosen.iter().map(|limit| limit.name().clone()).collect())
    }
}
