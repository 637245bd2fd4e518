//! Building the rule table from the settings: the layers of each limit
//! resolved and validated, every problem reported with its field path.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::named::several;
use super::{By, FailureMode, Rule, RuleSet, DEFAULT_RULE, MAX_ENDPOINT_BYTES, MAX_TIER_BYTES};
use crate::core::{Algorithm, Policy, PolicyError};
use crate::settings::{parse_duration, LimitSpec, Problem, Settings};

/// A field value and the path of the layer that set it.
#[derive(Clone)]
struct Layered<T> {
    value: T,
    path: String,
}

#[derive(Clone)]
pub(super) struct Draft {
    algorithm: Layered<Algorithm>,
    limit: Layered<i64>,
    window: Layered<Duration>,
    lease_ttl: Layered<Duration>,
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
        let lease_ttl = parse_duration(&d.lease_ttl).unwrap_or_else(|e| {
            problems.push(Problem::new("defaults.lease_ttl", e));
            Duration::from_secs(30)
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
            lease_ttl: Layered {
                value: lease_ttl,
                path: "defaults.lease_ttl".into(),
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

        let layers = Layers {
            tiers: &tiers,
            tier_index: &tier_index,
            tier_drafts: &tier_drafts,
        };
        let mut default_rule = match &d.limits {
            Some(specs) => several(
                DEFAULT_RULE,
                specs,
                None,
                "defaults",
                "defaults.partition",
                None,
                &layers,
                &mut problems,
            ),
            None => build_rule(DEFAULT_RULE, &tiers, &tier_drafts, None, &mut problems),
        };
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
            let own = LimitSpec {
                algorithm: spec.algorithm.clone(),
                limit: spec.limit,
                window: spec.window.clone(),
                lease_ttl: spec.lease_ttl.clone(),
            };
            let own_set = own.algorithm.is_some()
                || own.limit.is_some()
                || own.window.is_some()
                || own.lease_ttl.is_some()
                || !spec.tiers.is_empty();
            let partition_path = format!("{path}.partition");
            let partition = spec.partition.as_deref();
            let mut rule = match (&spec.limits, &d.limits) {
                (Some(specs), _) => {
                    if own_set {
                        problems.push(
                            Problem::new(
                                format!("{path}.limits"),
                                "a rule with limits sets algorithm, limit, window and tiers in each of its limits",
                            )
                            .with_context(context.clone()),
                        );
                    }
                    several(
                        &spec.endpoint,
                        specs,
                        partition,
                        &path,
                        &partition_path,
                        Some(&context),
                        &layers,
                        &mut problems,
                    )
                }
                // A rule that sets no limit of its own has the defaults' limits.
                (None, Some(specs)) if !own_set => several(
                    &spec.endpoint,
                    specs,
                    partition,
                    "defaults",
                    &partition_path,
                    Some(&context),
                    &layers,
                    &mut problems,
                ),
                _ => {
                    if partition.is_some() {
                        problems.push(
                            Problem::new(partition_path, "only a rule with several limits has a partition")
                                .with_context(context.clone()),
                        );
                    }
                    check_tiers(spec.tiers.keys(), &path, Some(&context), &layers, &mut problems);
                    let drafts = layer(&own, &spec.tiers, &path, &layers, &mut problems);
                    build_rule(&spec.endpoint, &tiers, &drafts, Some(&context), &mut problems)
                }
            };
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
}

#[derive(Default)]
pub(super) struct Problems(Vec<Problem>);

impl Problems {
    /// Records a problem once, however many rule × tier pairs inherit it.
    pub(super) fn push(&mut self, problem: Problem) {
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
pub(super) fn overlay(below: &Draft, spec: &LimitSpec, path: &str, problems: &mut Problems) -> Draft {
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
    if let Some(text) = &spec.lease_ttl {
        let field = format!("{path}.lease_ttl");
        match parse_duration(text) {
            Ok(value) => draft.lease_ttl = Layered { value, path: field },
            Err(e) => problems.push(Problem::new(field, e)),
        }
    }
    draft
}

/// The tiers, and each tier's draft over `[defaults]`: what every rule's
/// and every limit's own fields are layered over.
pub(super) struct Layers<'a> {
    pub(super) tiers: &'a [Arc<str>],
    pub(super) tier_index: &'a HashMap<Arc<str>, usize>,
    pub(super) tier_drafts: &'a [Draft],
}

/// Every tier's draft of a rule or limit: `own` over the tier's draft, then
/// its `tiers.T`.
pub(super) fn layer(
    own: &LimitSpec,
    per_tier: &BTreeMap<String, LimitSpec>,
    path: &str,
    layers: &Layers<'_>,
    problems: &mut Problems,
) -> Vec<Draft> {
    layers
        .tiers
        .iter()
        .zip(layers.tier_drafts)
        .map(|(tier, tier_draft)| {
            let draft = overlay(tier_draft, own, path, problems);
            match per_tier.get(tier.as_ref()) {
                Some(t) => overlay(&draft, t, &format!("{path}.tiers.{tier}"), problems),
                None => draft,
            }
        })
        .collect()
}

/// Refuses `tiers.T` of a tier the configuration does not define.
pub(super) fn check_tiers<'a>(
    names: impl Iterator<Item = &'a String>,
    path: &str,
    context: Option<&str>,
    layers: &Layers<'_>,
    problems: &mut Problems,
) {
    for tier in names {
        if !layers.tier_index.contains_key(tier.as_str()) {
            let known = layers.tiers.iter().map(|t| t.as_ref()).collect::<Vec<_>>().join(", ");
            let problem = Problem::new(
                format!("{path}.tiers.{tier}"),
                format!("unknown tier {tier:?} (configured tiers: {known})"),
            );
            problems.push(match context {
                Some(c) => problem.with_context(c),
                None => problem,
            });
        }
    }
}

pub(super) fn build_rule(
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
        limits: Vec::new(),
        partition: By::Key,
    }
}

fn to_policy(draft: &Draft) -> Result<Policy, Problem> {
    let limit = &draft.limit;
    if limit.value < 1 {
        return Err(Problem::new(limit.path.clone(), "must be at least 1"));
    }
    let limit_value = u64::try_from(limit.value).unwrap_or(u64::MAX);
    // A concurrency limit's window is its leases' lifetime.
    let window = match draft.algorithm.value {
        Algorithm::Concurrency => &draft.lease_ttl,
        _ => &draft.window,
    };
    Policy::new(draft.algorithm.value, limit_value, window.value).map_err(|e| {
        let path = match e {
            PolicyError::ZeroLimit | PolicyError::LimitTooLarge => &limit.path,
            _ if e.field() == "window" => &window.path,
            // Limits that only this algorithm rejects: blame the limit, but
            // say which algorithm asked.
            _ => &limit.path,
        };
        let message = match e {
            PolicyError::RateTooHigh { .. }
            | PolicyError::LogTooLarge
            | PolicyError::TooManyLeases
            | PolicyError::CounterTooLarge { .. } => {
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
