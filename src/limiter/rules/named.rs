//! The rules with several limits: each named limit layered like a rule,
//! what it counts per, and the rule's partition, with every problem named
//! by its field path.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::build::{build_rule, check_tiers, layer, Layers, Problems};
use super::{By, NamedLimit, Rule, MAX_LIMITS, MAX_NAME_BYTES};
use crate::core::Policy;
use crate::settings::{LimitSpec, NamedLimitSpec, Problem};

/// A rule of several limits, `specs` (at `path.limits`), with its partition
/// (at `partition_path`).
#[allow(clippy::too_many_arguments)]
pub(super) fn several(
    name: &str,
    specs: &[NamedLimitSpec],
    partition: Option<&str>,
    path: &str,
    partition_path: &str,
    context: Option<&str>,
    layers: &Layers<'_>,
    problems: &mut Problems,
) -> Rule {
    let with_context = |problem: Problem| match context {
        Some(c) => problem.with_context(c),
        None => problem,
    };
    if specs.is_empty() || specs.len() > MAX_LIMITS {
        problems.push(with_context(Problem::new(
            format!("{path}.limits"),
            format!("must hold 1 to {MAX_LIMITS} limits; got {}", specs.len()),
        )));
    }
    let mut limits: Vec<NamedLimit> = Vec::with_capacity(specs.len());
    for (j, spec) in specs.iter().enumerate() {
        let limit_path = format!("{path}.limits[{j}]");
        if let Err(e) = check_name(&spec.name) {
            problems.push(with_context(Problem::new(
                format!("{limit_path}.name"),
                format!("limit {e}"),
            )));
        }
        if let Some(first) = limits.iter().position(|l| l.name.as_ref() == spec.name) {
            problems.push(with_context(Problem::new(
                format!("{limit_path}.name"),
                format!(
                    "duplicate limit name {:?}, already used by {path}.limits[{first}]",
                    spec.name
                ),
            )));
        }
        let by = match spec.by.as_deref() {
            None | Some("key") => By::Key,
            Some(scope) => {
                if let Err(e) = check_name(scope) {
                    problems.push(with_context(Problem::new(
                        format!("{limit_path}.by"),
                        format!("scope {e}"),
                    )));
                }
                By::Scope(Arc::from(scope))
            }
        };
        check_tiers(spec.tiers.keys(), &limit_path, context, layers, problems);
        let own = LimitSpec {
            algorithm: spec.algorithm.clone(),
            limit: spec.limit,
            window: spec.window.clone(),
            lease_ttl: spec.lease_ttl.clone(),
        };
        let drafts = layer(&own, &spec.tiers, &limit_path, layers, problems);
        let limit_context = match context {
            Some(c) => format!("{c}, limit {:?}", spec.name),
            None => format!("limit {:?}", spec.name),
        };
        let built = build_rule(name, layers.tiers, &drafts, Some(&limit_context), problems);
        limits.push(NamedLimit {
            name: Arc::from(spec.name.as_str()),
            by,
            policies: built.policies.into_iter().map(|(_, policy)| policy).collect(),
        });
    }
    let partition = match partition {
        Some("key") => By::Key,
        Some(scope) => {
            if let Err(e) = check_name(scope) {
                problems.push(with_context(Problem::new(partition_path, format!("scope {e}"))));
            }
            By::Scope(Arc::from(scope))
        }
        None => {
            let scopes: BTreeSet<&str> = limits
                .iter()
                .filter_map(|l| match &l.by {
                    By::Scope(scope) => Some(scope.as_ref()),
                    By::Key => None,
                })
                .collect();
            match scopes.len() {
                0 => By::Key,
                1 => By::Scope(Arc::from(scopes.into_iter().next().unwrap_or_default())),
                _ => {
                    let list = scopes.into_iter().collect::<Vec<_>>().join(", ");
                    problems.push(with_context(Problem::new(
                        partition_path,
                        format!(
                            "the limits count per several scopes ({list}): name the one every counter of a check \
                             shares its slot by (partition = \"<scope>\" or \"key\")"
                        ),
                    )));
                    By::Key
                }
            }
        }
    };
    let first: Vec<(Arc<str>, Policy)> = match limits.first() {
        Some(limit) => layers
            .tiers
            .iter()
            .cloned()
            .zip(limit.policies.iter().copied())
            .collect(),
        None => build_rule(name, layers.tiers, layers.tier_drafts, None, problems).policies,
    };
    Rule {
        name: Arc::from(name),
        policies: first,
        failure_mode: None,
        shadow: false,
        limits,
        partition,
    }
}

/// A limit's or a scope's name: 1 to 64 bytes of letters, digits, `_` and
/// `-` (it appears in headers, in Redis key names and as a JSON field).
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(format!("names must be 1 to {MAX_NAME_BYTES} bytes"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!("name {name:?} may only hold letters, digits, '_' and '-'"));
    }
    Ok(())
}
