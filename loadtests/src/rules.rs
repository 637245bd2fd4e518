//! The limit the run is judged against: `GET /rules` of the first target,
//! narrowed to the rule and tier the requests select.
//!
//! The selection mirrors the service: the rule whose `endpoint` equals the
//! request's (else the default rule), and the request's tier (else the
//! service's default tier). Admin overrides are not part of `/rules`; the
//! runner notes when responses report a different `limit`.

use serde::Deserialize;

/// The five algorithms of the service, as `/rules` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    TokenBucket,
    Gcra,
    FixedWindow,
    SlidingWindowLog,
    SlidingWindowCounter,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::TokenBucket => "token_bucket",
            Algorithm::Gcra => "gcra",
            Algorithm::FixedWindow => "fixed_window",
            Algorithm::SlidingWindowLog => "sliding_window_log",
            Algorithm::SlidingWindowCounter => "sliding_window_counter",
        }
    }
}

/// The policy in force for the run's endpoint × tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The rule's name (`default` for the default rule).
    pub rule: String,
    pub tier: String,
    pub algorithm: Algorithm,
    /// Units per window (for token bucket and GCRA: the burst capacity).
    pub limit: u64,
    /// The window in milliseconds (for token bucket and GCRA: the time to
    /// refill `limit` completely).
    pub window_ms: u64,
}

#[derive(Debug, Deserialize)]
struct RulesView {
    default_tier: String,
    rules: Vec<RuleView>,
}

#[derive(Debug, Deserialize)]
struct RuleView {
    rule: String,
    endpoint: Option<String>,
    limits: Vec<LimitView>,
}

#[derive(Debug, Deserialize)]
struct LimitView {
    tier: String,
    algorithm: String,
    limit: u64,
    window_ms: u64,
}

/// Finds the policy for `endpoint` × `tier` in the body of `GET /rules`.
pub fn select(body: &[u8], endpoint: Option<&str>, tier: Option<&str>) -> Result<Policy, String> {
    let view: RulesView =
        serde_json::from_slice(body).map_err(|e| format!("GET /rules did not return the rule table: {e}"))?;
    let by_endpoint = endpoint.and_then(|e| view.rules.iter().find(|r| r.endpoint.as_deref() == Some(e)));
    let rule = match by_endpoint {
        Some(rule) => rule,
        None => view
            .rules
            .iter()
            .find(|r| r.endpoint.is_none())
            .ok_or("GET /rules has no default rule")?,
    };
    let tier = tier.unwrap_or(&view.default_tier);
    let limit = rule.limits.iter().find(|l| l.tier == tier).ok_or_else(|| {
        let known: Vec<&str> = rule.limits.iter().map(|l| l.tier.as_str()).collect();
        format!(
            "tier {tier:?} is not configured (the service will answer 400); rule {:?} has {}",
            rule.rule,
            known.join(", ")
        )
    })?;
    let algorithm: Algorithm = serde_json::from_value(serde_json::Value::String(limit.algorithm.clone()))
        .map_err(|_| format!("unknown algorithm {:?} in GET /rules", limit.algorithm))?;
    if limit.limit == 0 || limit.window_ms == 0 {
        return Err(format!("rule {:?} tier {tier:?} has a zero limit or window", rule.rule));
    }
    Ok(Policy {
        rule: rule.rule.clone(),
        tier: tier.to_owned(),
        algorithm,
        limit: limit.limit,
        window_ms: limit.window_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"{ "service": "ratelimiter", "version": "0.1.0", "default_rule": "default", "default_tier": "free",
      "tiers": ["free", "pro"],
      "rules": [
        { "rule": "default", "endpoint": null, "limits": [
          { "tier": "free", "algorithm": "token_bucket", "limit": 100, "window": "10s", "window_ms": 10000 },
          { "tier": "pro", "algorithm": "token_bucket", "limit": 1000, "window": "10s", "window_ms": 10000 } ] },
        { "rule": "POST /login", "endpoint": "POST /login", "limits": [
          { "tier": "free", "algorithm": "fixed_window", "limit": 5, "window": "1m", "window_ms": 60000 },
          { "tier": "pro", "algorithm": "fixed_window", "limit": 50, "window": "1m", "window_ms": 60000 } ] } ] }"#;

    #[test]
    fn selects_like_the_service() {
        let p = select(RULES.as_bytes(), Some("POST /login"), Some("pro")).unwrap();
        assert_eq!(
            (p.rule.as_str(), p.algorithm, p.limit, p.window_ms),
            ("POST /login", Algorithm::FixedWindow, 50, 60_000)
        );
        // No tier: the default tier. Unknown or no endpoint: the default rule.
        let p = select(RULES.as_bytes(), Some("POST /login"), None).unwrap();
        assert_eq!((p.tier.as_str(), p.limit), ("free", 5));
        let p = select(RULES.as_bytes(), Some("GET /nope"), None).unwrap();
        assert_eq!(
            (p.rule.as_str(), p.algorithm, p.limit),
            ("default", Algorithm::TokenBucket, 100)
        );
        assert_eq!(select(RULES.as_bytes(), None, Some("pro")).unwrap().limit, 1000);
    }

    #[test]
    fn explains_what_it_cannot_use() {
        assert!(select(RULES.as_bytes(), None, Some("gold"))
            .unwrap_err()
            .contains("free, pro"));
        assert!(select(b"<html>", None, None).unwrap_err().contains("rule table"));
    }
}
