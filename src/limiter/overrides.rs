//! Run-time limit overrides, set by operators through `/admin`.
//!
//! An [`OverrideRecord`] is what an operator wrote (and what is stored,
//! as JSON, in the shared store): a partial limit (`algorithm`, `limit`,
//! `window`) for
//! - a rule and one tier (`endpoint` + `tier`),
//! - a rule and every tier (`endpoint`, no `tier`), or
//! - one caller key under a rule, whatever its tier (`endpoint` + `key`),
//!
//! with an optional expiry. [`OverrideTable::build`] validates records
//! against the configured [`RuleSet`] exactly as the file is validated and
//! resolves each into one [`Policy`] per tier, so the hot path only looks
//! policies up. Precedence, most specific first: key override, rule × tier
//! override, rule override, configuration. Missing fields come from the
//! configured rule and tier.

use std::collections::HashMap;
use std::sync::Arc;

use crate::core::{Algorithm, Policy, Timestamp};
use crate::limiter::rules::{RuleSet, DEFAULT_RULE};
use crate::settings::parse_duration;
pub use crate::store::records::OverrideRecord;

/// Where an override applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Rule { rule: String, tier: Option<String> },
    Key { rule: String, key: String },
}

impl Target {
    /// A stable identifier, used as the record's field name in the store.
    pub fn id(&self) -> String {
        let parts: [&str; 3] = match self {
            Target::Rule { rule, tier } => ["rule", rule, tier.as_deref().unwrap_or("*")],
            Target::Key { rule, key } => ["key", rule, key],
        };
        serde_json::to_string(&parts).unwrap_or_default()
    }
}

/// An override that does not fit the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OverrideError {
    /// The request field at fault.
    pub field: &'static str,
    pub message: String,
}

fn err(field: &'static str, message: impl Into<String>) -> OverrideError {
    OverrideError {
        field,
        message: message.into(),
    }
}

impl OverrideRecord {
    /// The rule name (the endpoint, or the default rule).
    pub fn rule(&self) -> &str {
        self.endpoint.as_deref().unwrap_or(DEFAULT_RULE)
    }

    pub fn target(&self) -> Target {
        match &self.key {
            Some(key) => Target::Key {
                rule: self.rule().to_owned(),
                key: key.clone(),
            },
            None => Target::Rule {
                rule: self.rule().to_owned(),
                tier: self.tier.clone(),
            },
        }
    }

    pub fn is_live(&self, now: Timestamp) -> bool {
        self.expires_at_ms
            .is_none_or(|at| at.saturating_mul(1000) > now.as_micros())
    }

    /// Checks the record against `rules` and resolves one policy per tier.
    pub fn resolve(&self, rules: &RuleSet, max_key_bytes: usize) -> Result<Vec<(Arc<str>, Policy)>, OverrideError> {
        let rule = rules.rule(self.rule()).ok_or_else(|| {
            err(
                "endpoint",
                format!("no rule has endpoint {:?}; see GET /rules", self.rule()),
            )
        })?;
        if let Some(key) = &self.key {
            if key.is_empty() || key.len() > max_key_bytes {
                return Err(err("key", format!("key must be 1 to {max_key_bytes} bytes")));
            }
            if self.tier.is_some() {
                return Err(err(
                    "tier",
                    "a key override applies to every tier of the rule; omit tier",
                ));
            }
        }
        if let Some(tier) = &self.tier {
            if !rules.tiers().iter().any(|t| t.as_ref() == tier) {
                let known = rules.tiers().iter().map(|t| t.as_ref()).collect::<Vec<_>>().join(", ");
                return Err(err("tier", format!("unknown tier {tier:?}; configured tiers: {known}")));
            }
        }
        let sets_limit = self.algorithm.is_some() || self.limit.is_some() || self.window.is_some();
        if sets_limit && !rule.limits().is_empty() {
            return Err(err(
                "limit",
                format!(
                    "rule {:?} has several limits; overrides set shadow for it, not algorithm, limit or window",
                    self.rule()
                ),
            ));
        }
        if !sets_limit {
            if self.shadow.is_none() {
                return Err(err(
                    "limit",
                    "an override sets at least one of algorithm, limit, window, shadow",
                ));
            }
            return Ok(Vec::new()); // shadow alone: the policies stay as they are
        }
        let algorithm = match &self.algorithm {
            Some(name) => Some(name.parse::<Algorithm>().map_err(|e| err("algorithm", e.to_string()))?),
            None => None,
        };
        let limit = match self.limit {
            Some(limit) if limit < 1 => return Err(err("limit", "limit must be at least 1")),
            Some(limit) => Some(u64::try_from(limit).unwrap_or(u64::MAX)),
            None => None,
        };
        let window = match &self.window {
            Some(text) => Some(parse_duration(text).map_err(|e| err("window", e))?),
            None => None,
        };
        rule.policies()
            .filter(|(tier, _)| self.tier.as_deref().is_none_or(|t| t == tier.as_ref()))
            .map(|(tier, base)| {
                let policy = Policy::new(
                    algorithm.unwrap_or(base.algorithm()),
                    limit.unwrap_or(base.limit()),
                    window.unwrap_or(base.quota().window()),
                )
                .map_err(|e| err(e.field(), format!("{e} (tier {tier:?})")))?;
                Ok((tier.clone(), policy))
            })
            .collect()
    }
}

/// A resolved override: a policy per tier (none when it sets only
/// `shadow`) and shadow mode, until an expiry.
#[derive(Debug, Clone)]
struct Resolved {
    policies: HashMap<Arc<str>, Policy>,
    shadow: Option<bool>,
    expires_at: Option<Timestamp>,
}

impl Resolved {
    fn live(&self, tier: &str, now: Timestamp) -> Option<Policy> {
        if self.expires_at.is_some_and(|at| at <= now) {
            return None;
        }
        self.policies.get(tier).copied()
    }

    fn live_shadow(&self, now: Timestamp) -> Option<bool> {
        self.shadow.filter(|_| self.expires_at.is_none_or(|at| at > now))
    }
}

#[derive(Debug, Clone, Default)]
struct RuleOverrides {
    every_tier: Option<Resolved>,
    by_tier: HashMap<Arc<str>, Resolved>,
}

/// Every override, resolved for the hot path.
#[derive(Debug, Clone, Default)]
pub struct OverrideTable {
    rules: HashMap<Arc<str>, RuleOverrides>,
    keys: HashMap<Arc<str>, HashMap<Box<str>, Resolved>>,
    count: usize,
    /// How many records set `shadow`: none, and [`OverrideTable::shadow`]
    /// is not asked.
    shadows: usize,
}

/// Which layer decided a request's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySource {
    Config,
    RuleOverride,
    KeyOverride,
}

impl OverrideTable {
    /// Resolves `records` against `rules`. Records that no longer fit (a
    /// rule or tier removed by a reload) are returned as problems and left
    /// out.
    pub fn build<'a>(
        rules: &RuleSet,
        records: impl IntoIterator<Item = &'a OverrideRecord>,
        max_key_bytes: usize,
    ) -> (OverrideTable, Vec<(Target, OverrideError)>) {
        let mut table = OverrideTable::default();
        let mut problems = Vec::new();
        for record in records {
            let policies = match record.resolve(rules, max_key_bytes) {
                Ok(policies) => policies,
                Err(e) => {
                    problems.push((record.target(), e));
                    continue;
                }
            };
            table.shadows += usize::from(record.shadow.is_some());
            let resolved = Resolved {
                policies: policies.into_iter().collect(),
                shadow: record.shadow,
                expires_at: record
                    .expires_at_ms
                    .map(|ms| Timestamp::from_micros(ms.saturating_mul(1000))),
            };
            let rule: Arc<str> = Arc::from(record.rule());
            match (&record.key, &record.tier) {
                (Some(key), _) => {
                    table
                        .keys
                        .entry(rule)
                        .or_default()
                        .insert(key.as_str().into(), resolved);
                }
                (None, Some(tier)) => {
                    table
                        .rules
                        .entry(rule)
                        .or_default()
                        .by_tier
                        .insert(Arc::from(tier.as_str()), resolved);
                }
                (None, None) => table.rules.entry(rule).or_default().every_tier = Some(resolved),
            }
            table.count += 1;
        }
        (table, problems)
    }

    /// The policy for `key` under `rule` and `tier`, if an override applies.
    pub fn lookup(&self, rule: &str, tier: &str, key: &str, now: Timestamp) -> Option<(Policy, PolicySource)> {
        if let Some(policy) = self
            .keys
            .get(rule)
            .and_then(|keys| keys.get(key))
            .and_then(|r| r.live(tier, now))
        {
            return Some((policy, PolicySource::KeyOverride));
        }
        let overrides = self.rules.get(rule)?;
        overrides
            .by_tier
            .get(tier)
            .and_then(|r| r.live(tier, now))
            .or_else(|| overrides.every_tier.as_ref().and_then(|r| r.live(tier, now)))
            .map(|policy| (policy, PolicySource::RuleOverride))
    }

    /// Shadow mode for `key` under `rule` and `tier`, if an override sets
    /// it: the most specific live override that says.
    pub fn shadow(&self, rule: &str, tier: &str, key: &str, now: Timestamp) -> Option<bool> {
        if self.shadows == 0 {
            return None;
        }
        let by_key = self.keys.get(rule).and_then(|keys| keys.get(key));
        let by_rule = self.rules.get(rule);
        let by_tier = by_rule.and_then(|r| r.by_tier.get(tier));
        let every_tier = by_rule.and_then(|r| r.every_tier.as_ref());
        [by_key, by_tier, every_tier]
            .into_iter()
            .flatten()
            .find_map(|r| r.live_shadow(now))
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn len(&self) -> usize {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    fn rules() -> RuleSet {
        let s = Settings::from_toml(
            "[defaults]\ntier = \"free\"\nlimit = 10\nwindow = \"1m\"\n[tiers]\npro = { limit = 100 }\n\
             [[rules]]\nendpoint = \"GET /a\"\nalgorithm = \"fixed_window\"\nlimit = 5\n",
        )
        .unwrap();
        RuleSet::from_settings(&s).unwrap()
    }

    fn record(endpoint: Option<&str>, tier: Option<&str>, key: Option<&str>, limit: i64) -> OverrideRecord {
        OverrideRecord {
            endpoint: endpoint.map(Into::into),
            tier: tier.map(Into::into),
            key: key.map(Into::into),
            algorithm: None,
            limit: Some(limit),
            window: None,
            shadow: None,
            expires_at_ms: None,
            created_at_ms: 0,
        }
    }

    const NOW: Timestamp = Timestamp::from_micros(1_700_000_000_000_000);

    #[test]
    fn precedence_is_key_then_tier_then_rule() {
        let records = [
            record(Some("GET /a"), None, None, 7),
            record(Some("GET /a"), Some("pro"), None, 70),
            record(Some("GET /a"), None, Some("org:acme"), 5000),
        ];
        let (table, problems) = OverrideTable::build(&rules(), &records, 256);
        assert!(problems.is_empty());
        let limit = |tier, key| table.lookup("GET /a", tier, key, NOW).map(|(p, s)| (p.limit(), s));
        assert_eq!(limit("free", "org:acme"), Some((5000, PolicySource::KeyOverride)));
        assert_eq!(limit("pro", "org:acme"), Some((5000, PolicySource::KeyOverride)));
        assert_eq!(limit("pro", "org:x"), Some((70, PolicySource::RuleOverride)));
        assert_eq!(limit("free", "org:x"), Some((7, PolicySource::RuleOverride)));
        assert_eq!(table.lookup("default", "free", "org:acme", NOW), None);
        // Missing fields come from the configured rule.
        let (policy, _) = table.lookup("GET /a", "free", "org:x", NOW).unwrap();
        assert_eq!(policy.algorithm(), Algorithm::FixedWindow);
    }

    #[test]
    fn expired_overrides_fall_through() {
        let mut tier = record(Some("GET /a"), Some("pro"), None, 70);
        tier.expires_at_ms = Some(NOW.as_micros() / 1000);
        let records = [tier, record(Some("GET /a"), None, None, 7)];
        let (table, _) = OverrideTable::build(&rules(), &records, 256);
        assert_eq!(table.lookup("GET /a", "pro", "k", NOW).unwrap().0.limit(), 7);
        let before = Timestamp::from_micros(NOW.as_micros() - 1000);
        assert_eq!(table.lookup("GET /a", "pro", "k", before).unwrap().0.limit(), 70);
        assert!(!records[0].is_live(NOW) && records[0].is_live(before));
    }

    #[test]
    fn invalid_records_name_their_field() {
        let rules = rules();
        let field = |r: OverrideRecord| r.resolve(&rules, 256).unwrap_err().field;
        assert_eq!(field(record(Some("GET /nope"), None, None, 1)), "endpoint");
        assert_eq!(field(record(None, Some("gold"), None, 1)), "tier");
        assert_eq!(field(record(None, Some("pro"), Some("k"), 1)), "tier");
        assert_eq!(field(record(None, None, Some(""), 1)), "key");
        assert_eq!(field(record(None, None, None, 0)), "limit");
        let mut r = record(None, None, None, 1);
        r.window = Some("soon".into());
        assert_eq!(field(r), "window");
        let mut r = record(None, None, None, 1);
        r.algorithm = Some("leaky".into());
        assert_eq!(field(r), "algorithm");
        let mut r = record(None, None, None, 1);
        r.limit = None;
        assert_eq!(field(r), "limit");
        let mut r = record(None, None, None, 2_000_000);
        r.window = Some("1s".into());
        assert_eq!(field(r), "limit", "token bucket faster than 1/µs");
    }

    #[test]
    fn targets_have_distinct_ids() {
        let a = record(Some("a"), None, Some("b:c"), 1).target().id();
        let b = record(Some("a:b"), None, Some("c"), 1).target().id();
        let c = record(Some("a"), None, None, 1).target().id();
        let d = record(Some("a"), Some("*"), None, 1).target().id();
        assert_eq!(a, r#"["key","a","b:c"]"#);
        assert!(a != b && b != c && !c.is_empty() && c == r#"["rule","a","*"]"#);
        assert_eq!(c, d, "tier names cannot contain '*', so this cannot clash in practice");
    }
}
