//! The one entry point handlers call: a parsed [`CheckRequest`] in, a
//! [`Verdict`] out.
//!
//! The limiter resolves the rule and tier, refuses costs that could never
//! fit, and asks the store. It knows nothing of HTTP; the store knows nothing
//! of rules.

use std::sync::Arc;

use crate::core::{Cost, Decision, Policy};
use crate::rules::{RuleSet, UnknownTier};
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
}

/// A decision with what it was decided under.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub rule: Arc<str>,
    pub tier: Arc<str>,
    pub policy: Policy,
    pub decision: Decision,
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

/// Rules plus a store.
pub struct Limiter<S> {
    rules: RuleSet,
    store: S,
}

impl<S: Store> Limiter<S> {
    pub fn new(rules: RuleSet, store: S) -> Self {
        Limiter { rules, store }
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Decides `request`, consuming its cost when allowed.
    pub async fn check(&self, request: &CheckRequest) -> Result<Verdict, LimiterError> {
        let resolved = self
            .rules
            .resolve(request.endpoint.as_deref(), request.tier.as_deref())?;
        if request.cost.get() > resolved.policy.limit() {
            return Err(LimiterError::CostAboveLimit {
                cost: request.cost.get(),
                limit: resolved.policy.limit(),
                rule: resolved.rule.clone(),
                tier: resolved.tier.clone(),
            });
        }
        let key = StoreKey {
            rule: resolved.rule,
            key: request.key.as_str(),
        };
        let decision = self.store.check(key, &resolved.policy, request.cost).await?;
        Ok(Verdict {
            rule: resolved.rule.clone(),
            tier: resolved.tier.clone(),
            policy: resolved.policy,
            decision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;
    use crate::store::memory::MemoryStore;

    fn limiter(toml: &str) -> Limiter<MemoryStore> {
        let settings = Settings::from_toml(toml).unwrap();
        Limiter::new(RuleSet::from_settings(&settings).unwrap(), MemoryStore::new())
    }

    fn request(key: &str, cost: u64) -> CheckRequest {
        CheckRequest {
            key: Key::parse(key.to_owned(), 256).unwrap(),
            endpoint: None,
            tier: None,
            cost: Cost::new(cost).unwrap(),
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
    }
}
