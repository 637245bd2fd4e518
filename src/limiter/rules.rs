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
//! The hot path does two hash lookups and copies a [`Policy`]; nothing is
//! parsed or validated per request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::core::{Algorithm, Policy, PolicyError};
use crate::settings::{parse_duration, LimitSpec, Problem, Settings};

/// What a check gets when the store is unavailable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
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

    /// The policy of every tier, in tier order.
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

/// A field value and the path of the layer that set it.
#[derive(Clone)]
struct Layered<T> {
    value: T,
    path: String,
}

#[derive(Clone)]
struct Draft {
    algorithm: Layered<Algorithm>,
    limit: Layered<i64>,
    window: Layered<Duration>,
}

impl RuleSet {
    /// Resolves and validates the rule sections of `settings`, reporting
    /// every problem found (not just the first).
    pub fn from_settings(settings: &Settings) -> Result<RuleSet, Vec<Problem>> {
        let mut problems = Problems::default();

        // [defaults]
        let d = &settings.defaults;
        let algorithm = d.algorithm.parse::<Algorithm>().unwrap_or_else(|e| {
            problems.push(Problem::new("defaults.algorithm", e.to_string()));
            Algorithm::TokenBucket
        });
        let window = parse_duration(&d.window).unwrap_or_else(|e| {
            problems.push(Problem::new("defaults.window", e));
            Duration::from_secs(1)
        });
        let base = Draft {
            algorithm: Layered {
                value: algorithm,
                path: "defaults.algorithm".into(),
            },
            limit: Layered {
                value: d.limit,
                path: "defaults.limit".into(),
            },
            window: Layered {
                value: window,
                path: "defaults.window".into(),
            },
        };

        // Tier names: [tiers] plus the default tier, in a stable order
        // (the default tier first, then alphabetical).
        if let Err(e) = check_tier_name(&d.tier) {
            problems.push(Problem::new("defaults.tier", e));
        }
        let mut tiers: Vec<Arc<str>> = vec![Arc::from(d.tier.as_str())];
        for name in settings.tiers.keys() {
            if let Err(e) = check_tier_name(name) {
                problems.push(Problem::new(format!("tiers.{name}"), e));
            }
            if name != &d.tier {
                tiers.push(Arc::from(name.as_str()));
            }
        }
        let tier_index: HashMap<Arc<str>, usize> = tiers.iter().enumerate().map(|(i, t)| (t.clone(), i)).collect();

        // Tier defaults layered over [defaults].
        let tier_drafts: Vec<Draft> = tiers
            .iter()
            .map(|tier| match settings.tiers.get(tier.as_ref()) {
                Some(spec) => overlay(&base, spec, &format!("tiers.{tier}"), &mut problems),
                None => base.clone(),
            })
            .collect();

        let mut default_rule = build_rule(DEFAULT_RULE, &tiers, &tier_drafts, None, &mut problems);
        default_rule.shadow = d.shadow;

        let mut by_endpoint: HashMap<Arc<str>, usize> = HashMap::new();
        let mut rules = Vec::with_capacity(settings.rules.len());
        for (i, spec) in settings.rules.iter().enumerate() {
            let path = format!("rules[{i}]");
            let context = format!("endpoint {:?}", spec.endpoint);
            if let Err(e) = check_endpoint(&spec.endpoint) {
                problems.push(Problem::new(format!("{path}.endpoint"), e).with_context(context.clone()));
            }
            if let Some(&first) = by_endpoint.get(spec.endpoint.as_str()) {
                problems.push(
                    Problem::new(
                        format!("{path}.endpoint"),
                        format!("duplicate endpoint, already defined by rules[{first}]"),
                    )
                    .with_context(context.clone()),
                );
            }
            for tier in spec.tiers.keys() {
                if !tier_index.contains_key(tier.as_str()) {
                    let known = tiers.iter().map(|t| t.as_ref()).collect::<Vec<_>>().join(", ");
                    problems.push(
                        Problem::new(
                            format!("{path}.tiers.{tier}"),
                            format!("unknown tier {tier:?} (configured tiers: {known})"),
                        )
                        .with_context(context.clone()),
                    );
                }
            }
            let own = LimitSpec {
                algorithm: spec.algorithm.clone(),
                limit: spec.limit,
                window: spec.window.clone(),
            };
            let drafts: Vec<Draft> = tiers
                .iter()
                .zip(&tier_drafts)
                .map(|(tier, tier_draft)| {
                    let rule_draft = overlay(tier_draft, &own, &path, &mut problems);
                    match spec.tiers.get(tier.as_ref()) {
                        Some(t) => overlay(&rule_draft, t, &format!("{path}.tiers.{tier}"), &mut problems),
                        None => rule_draft,
                    }
                })
                .collect();
            let mut rule = build_rule(&spec.endpoint, &tiers, &drafts, Some(&context), &mut problems);
            rule.shadow = spec.shadow.unwrap_or(d.shadow);
            if let Some(mode) = &spec.failure_mode {
                match mode.parse::<FailureMode>() {
                    Ok(mode) => rule.failure_mode = Some(mode),
                    Err(e) => {
                        problems.push(Problem::new(format!("{path}.failure_mode"), e).with_context(context.clone()))
                    }
                }
            }
            by_endpoint.entry(rule.name.clone()).or_insert(rules.len());
            rules.push(rule);
        }

        if !problems.0.is_empty() {
            return Err(problems.0);
        }
        Ok(RuleSet {
            tiers,
            tier_index,
            default_tier: 0,
            default_rule,
            by_endpoint,
            rules,
        })
    }

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

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    /// Records a problem once, however many rule × tier pairs inherit it.
    fn push(&mut self, problem: Problem) {
        if !self
            .0
            .iter()
            .any(|p| p.field == problem.field && p.message == problem.message)
        {
            self.0.push(problem);
        }
    }
}

/// `spec` over `below`; each field set in `spec` records `path.field`.
fn overlay(below: &Draft, spec: &LimitSpec, path: &str, problems: &mut Problems) -> Draft {
    let mut draft = below.clone();
    if let Some(name) = &spec.algorithm {
        let field = format!("{path}.algorithm");
        match name.parse::<Algorithm>() {
            Ok(value) => draft.algorithm = Layered { value, path: field },
            Err(e) => problems.push(Problem::new(field, e.to_string())),
        }
    }
    if let Some(value) = spec.limit {
        draft.limit = Layered {
            value,
            path: format!("{path}.limit"),
        };
    }
    if let Some(text) = &spec.window {
        let field = format!("{path}.window");
        match parse_duration(text) {
            Ok(value) => draft.window = Layered { value, path: field },
            Err(e) => problems.push(Problem::new(field, e)),
        }
    }
    draft
}

fn build_rule(
    name: &str,
    tiers: &[Arc<str>],
    drafts: &[Draft],
    context: Option<&str>,
    problems: &mut Problems,
) -> Rule {
    let policies = tiers
        .iter()
        .zip(drafts)
        .map(|(tier, draft)| {
            let policy = to_policy(draft).unwrap_or_else(|problem| {
                let problem = match context {
                    Some(c) => problem.with_context(format!("{c}, tier {tier:?}")),
                    None => problem.with_context(format!("tier {tier:?}")),
                };
                problems.push(problem);
                // Never used: a RuleSet with problems is not returned.
                Policy::new(Algorithm::FixedWindow, 1, Duration::from_secs(1)).expect("a valid fallback")
            });
            (tier.clone(), policy)
        })
        .collect();
    Rule {
        name: Arc::from(name),
        policies,
        failure_mode: None,
        shadow: false,
    }
}

fn to_policy(draft: &Draft) -> Result<Policy, Problem> {
    let limit = &draft.limit;
    if limit.value < 1 {
        return Err(Problem::new(limit.path.clone(), "must be at least 1"));
    }
    let limit_value = u64::try_from(limit.value).unwrap_or(u64::MAX);
    Policy::new(draft.algorithm.value, limit_value, draft.window.value).map_err(|e| {
        let path = match e {
            PolicyError::ZeroLimit | PolicyError::LimitTooLarge => &limit.path,
            _ if e.field() == "window" => &draft.window.path,
            // Limits that only this algorithm rejects: blame the limit, but
            // say which algorithm asked.
            _ => &limit.path,
        };
        let message = match e {
            PolicyError::RateTooHigh { .. } | PolicyError::LogTooLarge | PolicyError::CounterTooLarge { .. } => {
                format!("{e} (algorithm from {})", draft.algorithm.path)
            }
            _ => e.to_string(),
        };
        Problem::new(path.clone(), message)
    })
}

fn check_endpoint(endpoint: &str) -> Result<(), String> {
    if endpoint.is_empty() {
        return Err("must not be empty".into());
    }
    if endpoint.len() > MAX_ENDPOINT_BYTES {
        return Err(format!("must be at most {MAX_ENDPOINT_BYTES} bytes"));
    }
    if endpoint == DEFAULT_RULE {
        return Err(format!(
            "{DEFAULT_RULE:?} is the name of the default rule; set it under [defaults]"
        ));
    }
    if !endpoint.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err("must be printable ASCII (it is sent back in RateLimit headers)".into());
    }
    Ok(())
}

fn check_tier_name(tier: &str) -> Result<(), String> {
    if tier.is_empty() || tier.len() > MAX_TIER_BYTES {
        return Err(format!("tier names must be 1 to {MAX_TIER_BYTES} bytes"));
    }
    if !tier
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!("tier name {tier:?} may only hold letters, digits, '_' and '-'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
