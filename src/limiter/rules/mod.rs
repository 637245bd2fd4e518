//! The effective rule table: `[defaults]`, `[tiers]` and `[[rules]]`
//! resolved into one [`Policy`] per rule × tier, validated once at load.
//!
//! Layers, lowest first: `[defaults]` → `[tiers.T]` → the rule's own
//! `algorithm`/`limit`/`window` → the rule's `tiers.T`. Each layer may set any
//! of the three fields; the most specific one wins. A request picks its rule
//! by exact `endpoint` (unknown or absent → the default rule) and its tier by
//! name (absent → `defaults.tier`; unknown → an error, since silently
//! downgrading a caller who names a tier would hide a misconfiguration).
//!
//! A rule may instead hold several named limits (`limits = [...]`), each
//! layered the same way over `[tiers.T]` and `[defaults]`, each counted per
//! the request's key or per one of its scopes ([`By`]); a check is allowed
//! only when every one allows. Such a rule has a partition: what every
//! counter of one check shares its Redis Cluster slot by.
//!
//! The hot path does two hash lookups and copies a [`Policy`]; nothing is
//! parsed or validated per request. Building the table is in `build.rs`,
//! and its rules with several limits in `named.rs`.

mod build;
mod named;

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::core::Policy;

/// What a check gets when the store is unavailable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Allow, `reason: "fail_open"`.
    Open,
    /// Deny with 503, `reason: "store_unavailable"`.
    Closed,
    /// Decide on this replica's own memory store until the store returns.
    #[default]
    Local,
}

impl FailureMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureMode::Open => "open",
            FailureMode::Closed => "closed",
            FailureMode::Local => "local",
        }
    }
}

impl std::str::FromStr for FailureMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(FailureMode::Open),
            "closed" => Ok(FailureMode::Closed),
            "local" => Ok(FailureMode::Local),
            other => Err(format!(
                "unknown failure mode {other:?} (expected open, closed or local)"
            )),
        }
    }
}

/// Name of the rule used for requests whose endpoint has no rule.
pub const DEFAULT_RULE: &str = "default";
/// Longest endpoint (rule name), in bytes.
pub const MAX_ENDPOINT_BYTES: usize = 256;
/// Longest tier name, in bytes.
pub const MAX_TIER_BYTES: usize = 64;
/// Longest limit or scope name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// The most limits one rule may hold (one check is one script call).
pub const MAX_LIMITS: usize = 8;

/// What a limit counts per.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum By {
    /// The request's `key`.
    Key,
    /// The value of this scope in the request's `scopes`.
    Scope(Arc<str>),
}

impl By {
    /// `key`, or the scope's name.
    pub fn as_str(&self) -> &str {
        match self {
            By::Key => "key",
            By::Scope(name) => name,
        }
    }
}

/// One of a rule's several limits: its name, what it counts per, and its
/// policy for every tier.
#[derive(Debug, Clone)]
pub struct NamedLimit {
    name: Arc<str>,
    by: By,
    /// Same order as [`RuleSet::tiers`].
    policies: Vec<Policy>,
}

impl NamedLimit {
    /// Unique within its rule; printable ASCII (it appears in headers).
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub fn by(&self) -> &By {
        &self.by
    }

    /// The policy of the tier at `tier_index` (in [`RuleSet::tiers`] order).
    pub fn policy(&self, tier_index: usize) -> &Policy {
        &self.policies[tier_index]
    }
}

/// One rule: a policy for every tier.
#[derive(Debug, Clone)]
pub struct Rule {
    name: Arc<str>,
    /// Same order as [`RuleSet::tiers`].
    policies: Vec<(Arc<str>, Policy)>,
    /// Overrides the service's failure mode.
    failure_mode: Option<FailureMode>,
    /// Evaluated without being enforced (see [`Rule::shadow`]).
    shadow: bool,
    /// Several limits, all or nothing; empty for a rule of one limit (its
    /// `policies`).
    limits: Vec<NamedLimit>,
    /// What the counters of one check share a slot by (rules with limits).
    partition: By,
}

impl Rule {
    /// The rule's name: its endpoint, or [`DEFAULT_RULE`].
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// This rule's failure mode, if it overrides the service's.
    pub fn failure_mode(&self) -> Option<FailureMode> {
        self.failure_mode
    }

    /// Whether the rule is evaluated without being enforced: a check over
    /// its limit is allowed and consumes nothing (operators may change this
    /// at run time with an override).
    pub fn shadow(&self) -> bool {
        self.shadow
    }

    /// The rule's several limits, in configuration order; empty for a rule
    /// of one limit.
    pub fn limits(&self) -> &[NamedLimit] {
        &self.limits
    }

    /// What the counters of one check share a slot by.
    pub fn partition(&self) -> &By {
        &self.partition
    }

    /// The policy of every tier, in tier order (for a rule with several
    /// limits, its first limit's).
    pub fn policies(&self) -> impl Iterator<Item = (&Arc<str>, &Policy)> {
        self.policies.iter().map(|(tier, policy)| (tier, policy))
    }

    fn policy(&self, tier_index: usize) -> (&Arc<str>, &Policy) {
        let (tier, policy) = &self.policies[tier_index];
        (tier, policy)
    }
}

/// What a request resolved to.
#[derive(Debug, Clone, Copy)]
pub struct Resolved<'a> {
    pub rule: &'a Arc<str>,
    pub tier: &'a Arc<str>,
    pub policy: Policy,
    pub failure_mode: Option<FailureMode>,
    /// As configured; an override may change it.
    pub shadow: bool,
    /// The rule's several limits (empty for one limit, `policy`), with the
    /// tier's index to pick their policies by.
    pub limits: &'a [NamedLimit],
    pub tier_index: usize,
    pub partition: &'a By,
}

/// A request named a tier the configuration does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tier {tier:?}; configured tiers: {known}")]
pub struct UnknownTier {
    pub tier: String,
    pub known: String,
}

/// All rules, resolved.
#[derive(Debug, Clone)]
pub struct RuleSet {
    tiers: Vec<Arc<str>>,
    tier_index: HashMap<Arc<str>, usize>,
    default_tier: usize,
    default_rule: Rule,
    by_endpoint: HashMap<Arc<str>, usize>,
    rules: Vec<Rule>,
}

impl RuleSet {
    /// Picks the rule for `endpoint` and the policy for `tier`.
    pub fn resolve(&self, endpoint: Option<&str>, tier: Option<&str>) -> Result<Resolved<'_>, UnknownTier> {
        let rule = endpoint
            .and_then(|e| self.by_endpoint.get(e))
            .map_or(&self.default_rule, |&i| &self.rules[i]);
        let tier_index = match tier {
            None => self.default_tier,
            Some(name) => *self.tier_index.get(name).ok_or_else(|| UnknownTier {
                tier: name.to_owned(),
                known: self.tiers.iter().map(|t| t.as_ref()).collect::<Vec<_>>().join(", "),
            })?,
        };
        let (tier, policy) = rule.policy(tier_index);
        Ok(Resolved {
            rule: &rule.name,
            tier,
            policy: *policy,
            failure_mode: rule.failure_mode,
            shadow: rule.shadow,
            limits: &rule.limits,
            tier_index,
            partition: &rule.partition,
        })
    }

    /// The rule named `name` (an endpoint, or [`DEFAULT_RULE`]).
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        if name == DEFAULT_RULE {
            return Some(&self.default_rule);
        }
        self.by_endpoint.get(name).map(|&i| &self.rules[i])
    }

    /// The default rule first, then the configured rules in file order.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        std::iter::once(&self.default_rule).chain(&self.rules)
    }

    /// Every tier name, the default tier first.
    pub fn tiers(&self) -> &[Arc<str>] {
        &self.tiers
    }

    pub fn default_tier(&self) -> &Arc<str> {
        &self.tiers[self.default_tier]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Algorithm;
    use crate::settings::{Problem, Settings};
    use std::time::Duration;

    fn ruleset(toml: &str) -> Result<RuleSet, Vec<Problem>> {
        let settings = Settings::from_toml(toml).expect("settings parse");
        RuleSet::from_settings(&settings)
    }

    fn problems(toml: &str) -> Vec<String> {
        ruleset(toml).unwrap_err().iter().map(ToString::to_string).collect()
    }

    const EXAMPLE: &str = r#"
        [defaults]
        algorithm = "token_bucket"
        tier = "free"
        limit = 100
        window = "10s"

        [tiers]
        free = { limit = 100, window = "10s" }
        pro = { limit = 1000, window = "10s" }
        enterprise = { limit = 10000, window = "10s" }

        [[rules]]
        endpoint = "GET /api/public"
        algorithm = "sliding_window_log"
        limit = 10
        window = "1m"

        [[rules]]
        endpoint = "POST /login"
        algorithm = "fixed_window"
        limit = 5
        window = "60s"
        tiers.pro = { limit = 50 }
    "#;

    #[test]
    fn layers_resolve_most_specific_first() {
        let rules = ruleset(EXAMPLE).unwrap();
        let r = rules.resolve(None, None).unwrap();
        assert_eq!((r.rule.as_ref(), r.tier.as_ref()), ("default", "free"));
        assert_eq!(r.policy.limit(), 100);
        assert_eq!(r.policy.algorithm(), Algorithm::TokenBucket);

        let r = rules.resolve(Some("GET /nothing"), Some("pro")).unwrap();
        assert_eq!(r.rule.as_ref(), "default");
        assert_eq!(r.policy.limit(), 1000);

        let r = rules.resolve(Some("POST /login"), Some("pro")).unwrap();
        assert_eq!(r.policy.limit(), 50);
        assert_eq!(r.policy.algorithm(), Algorithm::FixedWindow);
        assert_eq!(r.policy.quota().window(), Duration::from_secs(60));

        let r = rules.resolve(Some("POST /login"), Some("enterprise")).unwrap();
        assert_eq!(r.policy.limit(), 5, "the rule's own limit beats the tier default");

        let r = rules.resolve(Some("GET /api/public"), None).unwrap();
        assert_eq!(r.policy.algorithm(), Algorithm::SlidingWindowLog);
        assert_eq!(r.policy.quota().window(), Duration::from_secs(60));
    }

    #[test]
    fn unknown_tier_is_an_error_listing_the_known_ones() {
        let rules = ruleset(EXAMPLE).unwrap();
        let err = rules.resolve(None, Some("gold")).unwrap_err();
        assert_eq!(err.tier, "gold");
        assert_eq!(err.known, "free, enterprise, pro");
    }

    #[test]
    fn rule_order_and_tiers_are_stable() {
        let rules = ruleset(EXAMPLE).unwrap();
        let names: Vec<_> = rules.rules().map(|r| r.name().to_string()).collect();
        assert_eq!(names, ["default", "GET /api/public", "POST /login"]);
        assert_eq!(rules.default_tier().as_ref(), "free");
    }

    #[test]
    fn a_tier_that_changes_the_algorithm() {
        let rules = ruleset("[tiers]\npro = { algorithm = \"gcra\", limit = 10 }\n").unwrap();
        let r = rules.resolve(None, Some("pro")).unwrap();
        assert_eq!(r.policy.algorithm(), Algorithm::Gcra);
        assert_eq!(r.policy.limit(), 10);
        let r = rules.resolve(None, None).unwrap();
        assert_eq!(
            (r.tier.as_ref(), r.policy.algorithm()),
            ("default", Algorithm::TokenBucket)
        );
    }

    #[test]
    fn every_problem_names_its_field() {
        let p = problems(
            r#"
            [defaults]
            algorithm = "leaky"
            [tiers]
            pro = { limit = 0 }
            [[rules]]
            endpoint = "GET /a"
            window = "0s"
            [[rules]]
            endpoint = "GET /a"
            [[rules]]
            endpoint = "POST /b"
            tiers.gold = { limit = 3 }
            [[rules]]
            endpoint = "POST /c"
            limit = -4
            "#,
        );
        let joined = p.join("\n");
        for needle in [
            "defaults.algorithm: unknown algorithm \"leaky\"",
            "tiers.pro.limit",
            "rules[0].window (endpoint \"GET /a\"",
            "rules[1].endpoint (endpoint \"GET /a\"): duplicate endpoint, already defined by rules[0]",
            "rules[2].tiers.gold (endpoint \"POST /b\"): unknown tier \"gold\"",
            "rules[3].limit (endpoint \"POST /c\", tier \"default\"): must be at least 1",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in:\n{joined}");
        }
        assert_eq!(
            p.iter().filter(|l| l.starts_with("tiers.pro.limit")).count(),
            1,
            "reported once:\n{joined}"
        );
    }

    #[test]
    fn algorithm_specific_limits_blame_the_limit() {
        let p = problems("[[rules]]\nendpoint = \"GET /log\"\nalgorithm = \"sliding_window_log\"\nlimit = 1000000\n");
        assert!(p[0].starts_with("rules[0].limit"), "{p:?}");
        assert!(p[0].contains("rules[0].algorithm"), "{p:?}");
        let p = problems("[defaults]\nwindow = \"1s\"\nlimit = 2000000\n");
        assert!(p[0].starts_with("defaults.limit"), "{p:?}");
    }

    #[test]
    fn bad_names_are_rejected() {
        let p = problems("[[rules]]\nendpoint = \"\"\n[[rules]]\nendpoint = \"default\"\n[[rules]]\nendpoint = \"GET /caf\u{e9}\"\n[tiers]\n\"pro plan\" = { limit = 3 }\n");
        let joined = p.join("\n");
        assert!(joined.contains("rules[0].endpoint"), "{joined}");
        assert!(joined.contains("rules[1].endpoint"), "{joined}");
        assert!(joined.contains("rules[2].endpoint"), "{joined}");
        assert!(joined.contains("tiers.pro plan"), "{joined}");
    }

    #[test]
    fn rules_may_override_the_failure_mode() {
        let rules = ruleset("[[rules]]\nendpoint = \"POST /pay\"\nfailure_mode = \"closed\"\n").unwrap();
        assert_eq!(
            rules.resolve(Some("POST /pay"), None).unwrap().failure_mode,
            Some(FailureMode::Closed)
        );
        assert_eq!(rules.resolve(None, None).unwrap().failure_mode, None);
        let p = problems("[[rules]]\nendpoint = \"x\"\nfailure_mode = \"maybe\"\n");
        assert!(p[0].starts_with("rules[0].failure_mode"), "{p:?}");
    }

    #[test]
    fn the_default_tier_need_not_be_listed() {
        let rules = ruleset("[defaults]\ntier = \"basic\"\nlimit = 7\n[tiers]\npro = { limit = 70 }\n").unwrap();
        assert_eq!(
            rules.tiers().iter().map(|t| t.as_ref()).collect::<Vec<_>>(),
            ["basic", "pro"]
        );
        assert_eq!(rules.resolve(None, None).unwrap().policy.limit(), 7);
    }

    const SEVERAL: &str = r#"
        [defaults]
        limit = 100
        window = "1m"
        [tiers]
        pro = { limit = 1000 }
        [[rules]]
        endpoint = "POST /api/chat"
        limits = [
          { name = "burst", algorithm = "token_bucket", limit = 10, window = "1s" },
          { name = "daily", algorithm = "fixed_window", limit = 10000, window = "1d", tiers.pro = { limit = 100000 } },
          { name = "org", by = "org", algorithm = "sliding_window_counter", limit = 1000, window = "1m" },
        ]
    "#;

    #[test]
    fn several_limits_layer_per_limit_and_partition_by_their_scope() {
        let rules = ruleset(SEVERAL).unwrap();
        let r = rules.resolve(Some("POST /api/chat"), Some("pro")).unwrap();
        let limits: Vec<(&str, &str, Algorithm, u64)> = r
            .limits
            .iter()
            .map(|l| {
                let p = l.policy(r.tier_index);
                (l.name().as_ref(), l.by().as_str(), p.algorithm(), p.limit())
            })
            .collect();
        assert_eq!(
            limits,
            [
                ("burst", "key", Algorithm::TokenBucket, 10),
                ("daily", "key", Algorithm::FixedWindow, 100_000),
                ("org", "org", Algorithm::SlidingWindowCounter, 1000),
            ]
        );
        assert_eq!(r.partition, &By::Scope("org".into()));
        let free = rules.resolve(Some("POST /api/chat"), None).unwrap();
        assert_eq!(free.limits[1].policy(free.tier_index).limit(), 10_000);
        // A rule of one limit has none of these.
        let one = rules.resolve(None, None).unwrap();
        assert!(one.limits.is_empty());
        assert_eq!(one.partition, &By::Key);
    }

    #[test]
    fn the_defaults_limits_serve_the_default_rule_and_rules_without_their_own() {
        let rules = ruleset(
            r#"
            [defaults]
            limits = [{ name = "second", limit = 5, window = "1s" }, { name = "hour", limit = 100, window = "1h" }]
            [[rules]]
            endpoint = "GET /inherits"
            [[rules]]
            endpoint = "GET /own"
            limit = 7
            "#,
        )
        .unwrap();
        assert_eq!(rules.resolve(None, None).unwrap().limits.len(), 2);
        assert_eq!(rules.resolve(Some("GET /inherits"), None).unwrap().limits.len(), 2);
        let own = rules.resolve(Some("GET /own"), None).unwrap();
        assert!(own.limits.is_empty());
        assert_eq!(own.policy.limit(), 7);
    }

    #[test]
    fn several_limits_are_validated_naming_the_field() {
        let p = problems(
            r#"
            [[rules]]
            endpoint = "a"
            limits = [
              { name = "x", limit = 1, window = "1s" },
              { name = "x", limit = 1, window = "soon" },
              { name = "bad name", by = "o:rg", limit = 0, tiers.gold = { limit = 1 } },
            ]
            [[rules]]
            endpoint = "b"
            limit = 3
            limits = [{ name = "y", limit = 1 }]
            [[rules]]
            endpoint = "c"
            limits = [{ name = "u", by = "user", limit = 1 }, { name = "o", by = "org", limit = 1 }]
            [[rules]]
            endpoint = "d"
            limits = []
            [[rules]]
            endpoint = "e"
            partition = "org"
            "#,
        );
        for field in [
            "rules[0].limits[1].name",
            "rules[0].limits[1].window",
            "rules[0].limits[2].name",
            "rules[0].limits[2].by",
            "rules[0].limits[2].limit",
            "rules[0].limits[2].tiers.gold",
            "rules[1].limits",
            "rules[2].partition",
            "rules[3].limits",
            "rules[4].partition",
        ] {
            assert!(p.iter().any(|line| line.starts_with(field)), "{field} not in {p:#?}");
        }
        // Two scopes with the partition named: fine.
        ruleset(
            r#"
            [[rules]]
            endpoint = "c"
            partition = "org"
            limits = [{ name = "u", by = "user", limit = 1 }, { name = "o", by = "org", limit = 1 }]
            "#,
        )
        .unwrap();
    }
}
