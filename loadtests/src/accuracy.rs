//! Did the service admit more than its limit permits? Pure arithmetic over
//! the policy (from `GET /rules`) and the run's span of time.
//!
//! # The bounds
//!
//! For a run that starts at wall-clock time `start` and lasts `e` (first
//! request sent to last answer received, so every decision the service made
//! lies inside it), a policy of `limit` units per `window` `w`, and requests
//! of `cost` units, the most `allowed` answers one key can get is:
//!
//! | algorithm | units over the run | requests permitted |
//! |---|---|---|
//! | `token_bucket`, `gcra` | the full bucket plus the refill: `limit + floor(e × limit / w)` | `floor(units / cost)` |
//! | `fixed_window` | `limit` per aligned window the run touched: `n = floor(end / w) − floor(start / w) + 1` windows (aligned to the Unix epoch, as the service aligns them) | `n × floor(limit / cost)` |
//! | `sliding_window_log` | `limit` in any interval of length `w`, and `floor(e / w) + 1` such intervals cover the run | `(floor(e / w) + 1) × floor(limit / cost)` |
//! | `sliding_window_counter` | the smaller of: `limit` per aligned window (the algorithm's estimate is never below the current window's count), and 2 × `limit` per interval of length `w` (its worst sliding window) | `min(n × floor(limit / cost), (floor(e / w) + 1) × floor(2 × limit / cost))` |
//!
//! These are upper bounds: a key that asked less than it could have, or
//! whose counter was already in use before the run, gets fewer. A key whose
//! `allowed` exceeds the bound was over-admitted — by the service, or by
//! replicas that do not share a store (memory stores behind one balancer).
//!
//! Time is measured with nanoseconds, and the span always *contains* the
//! service's decisions, so the bounds err on the permissive side and never
//! flag a correct service. The fixed and sliding counter windows compare the
//! local wall clock with the service's (or Redis's) clock: exact on one
//! machine; across machines, clock skew can shift the window count by one.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::rules::{Algorithm, Policy};

/// When the run happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Wall-clock start, nanoseconds since the Unix epoch.
    pub start_unix_ns: u128,
    /// From the first request sent to the last answer received.
    pub elapsed: Duration,
}

/// What one key may be allowed over a span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// Requests (of the run's cost) permitted.
    pub permitted: u64,
    /// For the window algorithms, the aligned windows the run touched.
    pub aligned_windows: Option<u64>,
    /// The formula with its numbers filled in, for the report.
    pub formula: String,
}

/// The upper bound on `allowed` answers for one key (see the module docs).
pub fn permitted(policy: &Policy, cost: u64, span: Span) -> Bound {
    let cost = u128::from(cost.max(1));
    let limit = u128::from(policy.limit);
    let w_ns = u128::from(policy.window_ms) * 1_000_000;
    let e_ns = span.elapsed.as_nanos();
    // floor(e / w): whole windows in the run.
    let whole = e_ns / w_ns;
    // Aligned windows touched by [start, start + e].
    let aligned = (span.start_unix_ns + e_ns) / w_ns - span.start_unix_ns / w_ns + 1;
    let per_window = limit / cost;
    let clamp = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
    match policy.algorithm {
        Algorithm::TokenBucket | Algorithm::Gcra => {
            let refill = e_ns * limit / w_ns;
            Bound {
                permitted: clamp((limit + refill) / cost),
                aligned_windows: None,
                formula: format!("floor(({limit} + floor(e × {limit} / w) = {refill}) / cost {cost})"),
            }
        }
        Algorithm::FixedWindow => Bound {
            permitted: clamp(aligned * per_window),
            aligned_windows: Some(clamp(aligned)),
            formula: format!("{aligned} aligned window(s) × floor({limit} / cost {cost})"),
        },
        Algorithm::SlidingWindowLog => Bound {
            permitted: clamp((whole + 1) * per_window),
            aligned_windows: None,
            formula: format!("(floor(e / w) = {whole} + 1) × floor({limit} / cost {cost})"),
        },
        Algorithm::SlidingWindowCounter => {
            let per_aligned = aligned * per_window;
            let sliding = (whole + 1) * (2 * limit / cost);
            Bound {
                permitted: clamp(per_aligned.min(sliding)),
                aligned_windows: Some(clamp(aligned)),
                formula: format!(
                    "min({aligned} aligned window(s) × floor({limit} / cost {cost}), (floor(e / w) = {whole} + 1) × floor(2 × {limit} / cost {cost}))"
                ),
            }
        }
    }
}

/// What the run observed for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTally {
    pub key: String,
    pub requests: u64,
    /// Answers with `reason: "allowed"` (allow-listed, fail-open and local
    /// decisions consume nothing in the store and are not counted).
    pub allowed: u64,
}

/// One key's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAccuracy {
    pub key: String,
    pub requests: u64,
    pub allowed: u64,
    pub permitted: u64,
    /// `max(0, allowed − permitted)`.
    pub over_admitted: u64,
}

/// The accuracy section of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub rule: String,
    pub tier: String,
    pub algorithm: Algorithm,
    pub limit: u64,
    pub window_ms: u64,
    pub cost: u64,
    /// Requests permitted per key over the run.
    pub permitted_per_key: u64,
    pub aligned_windows: Option<u64>,
    pub formula: String,
    pub keys: usize,
    pub total_allowed: u64,
    pub over_admitted_keys: usize,
    /// Sum over keys of `max(0, allowed − permitted)`.
    pub total_over_admission: u64,
    /// Set when the answers reported another `limit` than `/rules` (an
    /// admin override, a reload during the run): the bound may not apply.
    pub warning: Option<String>,
    /// Every key, most over-admitted first, then most allowed.
    pub per_key: Vec<KeyAccuracy>,
}

/// Compares every key's tally with the bound.
pub fn judge(policy: &Policy, cost: u64, span: Span, tallies: Vec<KeyTally>, limits_seen: &[u64]) -> Accuracy {
    let bound = permitted(policy, cost, span);
    let mut per_key: Vec<KeyAccuracy> = tallies
        .into_iter()
        .map(|t| KeyAccuracy {
            over_admitted: t.allowed.saturating_sub(bound.permitted),
            permitted: bound.permitted,
            key: t.key,
            requests: t.requests,
            allowed: t.allowed,
        })
        .collect();
    per_key.sort_by(|a, b| {
        b.over_admitted
            .cmp(&a.over_admitted)
            .then(b.allowed.cmp(&a.allowed))
            .then_with(|| a.key.cmp(&b.key))
    });
    let others: Vec<String> = limits_seen
        .iter()
        .filter(|&&l| l != policy.limit)
        .map(u64::to_string)
        .collect();
    let warning = (!others.is_empty()).then(|| {
        format!(
            "answers reported limit {} but GET /rules says {} (an override or a reload?); the bound may not apply",
            others.join(", "),
            policy.limit
        )
    });
    Accuracy {
        rule: policy.rule.clone(),
        tier: policy.tier.clone(),
        algorithm: policy.algorithm,
        limit: policy.limit,
        window_ms: policy.window_ms,
        cost,
        permitted_per_key: bound.permitted,
        aligned_windows: bound.aligned_windows,
        formula: bound.formula,
        keys: per_key.len(),
        total_allowed: per_key.iter().map(|k| k.allowed).sum(),
        over_admitted_keys: per_key.iter().filter(|k| k.over_admitted > 0).count(),
        total_over_admission: per_key.iter().map(|k| k.over_admitted).sum(),
        warning,
        per_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: u64 = 3_600_000;
    const SEC: u128 = 1_000_000_000;

    fn policy(algorithm: Algorithm, limit: u64, window_ms: u64) -> Policy {
        Policy {
            rule: "r".into(),
            tier: "free".into(),
            algorithm,
            limit,
            window_ms,
        }
    }

    /// A span starting `offset_s` seconds into an hour.
    fn span(offset_s: f64, elapsed_s: f64) -> Span {
        let hour_start = 1_764_100_800 * SEC; // a whole hour since the epoch
        Span {
            start_unix_ns: hour_start + (offset_s * 1e9) as u128,
            elapsed: Duration::from_secs_f64(elapsed_s),
        }
    }

    #[test]
    fn token_bucket_and_gcra_allow_the_bucket_plus_the_refill() {
        for alg in [Algorithm::TokenBucket, Algorithm::Gcra] {
            let p = policy(alg, 100, 10_000); // 10 per second
            assert_eq!(permitted(&p, 1, span(0.0, 0.0)).permitted, 100);
            assert_eq!(permitted(&p, 1, span(0.0, 5.0)).permitted, 150);
            assert_eq!(permitted(&p, 1, span(0.0, 5.099)).permitted, 150, "refill is floored");
            assert_eq!(permitted(&p, 1, span(0.0, 5.1)).permitted, 151);
            assert_eq!(permitted(&p, 3, span(0.0, 5.0)).permitted, 50, "cost 3: floor(150 / 3)");
            assert_eq!(permitted(&p, 7, span(0.0, 5.0)).permitted, 21, "cost 7: floor(150 / 7)");
        }
    }

    #[test]
    fn fixed_window_counts_the_aligned_windows_touched() {
        let p = policy(Algorithm::FixedWindow, 50, HOUR_MS);
        let b = permitted(&p, 1, span(10.0, 2.0));
        assert_eq!((b.permitted, b.aligned_windows), (50, Some(1)));
        // Two seconds that straddle the top of the hour touch two windows.
        let b = permitted(&p, 1, span(3599.0, 2.0));
        assert_eq!((b.permitted, b.aligned_windows), (100, Some(2)));
        // Ten seconds of 1 s windows, starting mid-window: 11 windows.
        let p = policy(Algorithm::FixedWindow, 5, 1000);
        assert_eq!(permitted(&p, 1, span(0.5, 10.0)).permitted, 55);
        assert_eq!(
            permitted(&p, 2, span(0.5, 10.0)).permitted,
            22,
            "floor(5 / 2) per window"
        );
    }

    #[test]
    fn sliding_log_allows_limit_per_window_of_the_run_plus_one() {
        let p = policy(Algorithm::SlidingWindowLog, 10, 60_000);
        assert_eq!(permitted(&p, 1, span(30.0, 1.0)).permitted, 10);
        assert_eq!(permitted(&p, 1, span(30.0, 59.999)).permitted, 10);
        assert_eq!(permitted(&p, 1, span(30.0, 60.0)).permitted, 20);
        assert_eq!(permitted(&p, 1, span(30.0, 150.0)).permitted, 30);
    }

    #[test]
    fn sliding_counter_is_the_tighter_of_its_two_bounds() {
        let p = policy(Algorithm::SlidingWindowCounter, 100, 60_000);
        // Inside one aligned window: limit (the 2× sliding bound is 200).
        let b = permitted(&p, 1, span(10.0, 5.0));
        assert_eq!((b.permitted, b.aligned_windows), (100, Some(1)));
        // Straddling a boundary: two aligned windows, still ≤ 2 × limit.
        assert_eq!(permitted(&p, 1, span(58.0, 5.0)).permitted, 200);
        // The aligned bound never exceeds the sliding one:
        // n ≤ floor(e / w) + 2 ≤ 2 × (floor(e / w) + 1).
        for offset in [0.0, 1.0, 59.9] {
            for elapsed in [0.0, 1.0, 59.0, 60.0, 61.0, 300.5] {
                let s = span(offset, elapsed);
                let whole = (s.elapsed.as_nanos() / 60_000_000_000) as u64;
                assert!(permitted(&p, 1, s).permitted <= 2 * 100 * (whole + 1));
            }
        }
    }

    #[test]
    fn judging_flags_only_keys_above_the_bound() {
        let p = policy(Algorithm::FixedWindow, 50, HOUR_MS);
        let tally = |key: &str, requests, allowed| KeyTally {
            key: key.into(),
            requests,
            allowed,
        };
        let a = judge(
            &p,
            1,
            span(10.0, 1.0),
            vec![tally("a", 400, 50), tally("b", 900, 100), tally("c", 10, 10)],
            &[50],
        );
        assert_eq!(a.permitted_per_key, 50);
        assert_eq!(
            (a.keys, a.total_allowed, a.over_admitted_keys, a.total_over_admission),
            (3, 160, 1, 50)
        );
        let order: Vec<&str> = a.per_key.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(order, ["b", "a", "c"]);
        assert_eq!(a.per_key[0].over_admitted, 50);
        assert_eq!(a.per_key[2].over_admitted, 0);
        assert!(a.warning.is_none());
        let a = judge(&p, 1, span(10.0, 1.0), vec![], &[50, 500]);
        assert!(a.warning.unwrap().contains("500"));
    }
}
