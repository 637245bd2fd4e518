//! Property tests of the five algorithms, through the public API only.
//!
//! Every property drives [`core::check`] through a random sequence of
//! requests, for every algorithm, and checks each decision against what a
//! client would observe: the algorithm never admits more than its bound, and
//! `remaining`, `retry_after_us` and `reset_after_us` are exact promises.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestCaseError};
use ratelimiter::core::{self, Algorithm, Cost, Decision, Policy, Quota, State, Timestamp};

/// How far the clock moves before a request, resolved against the policy.
#[derive(Debug, Clone)]
enum Gap {
    Zero,
    /// A few microseconds (at most 2 windows).
    Micros(u64),
    /// A fraction (of `u32::MAX`) of two windows.
    Fraction(u32),
    /// A whole number of emission intervals (at most 2 windows).
    Intervals(u8),
}

#[derive(Debug, Clone)]
enum CostPick {
    /// `1 + n % limit`.
    Within(u64),
    /// `limit + 1 + n % limit`: can never be admitted.
    Above(u64),
}

#[derive(Debug, Clone)]
struct Step {
    gap: Gap,
    /// Move the clock back by the gap instead of forward (only where the
    /// property allows it).
    back: bool,
    cost: CostPick,
}

#[derive(Debug, Clone)]
struct Case {
    limit: u64,
    window_ms: u64,
    start: u64,
    steps: Vec<Step>,
}

fn step() -> impl Strategy<Value = Step> {
    let gap = prop_oneof![
        3 => Just(Gap::Zero),
        2 => (0..=2_000u64).prop_map(Gap::Micros),
        4 => any::<u32>().prop_map(Gap::Fraction),
        2 => (0..=4u8).prop_map(Gap::Intervals),
    ];
    let cost = prop_oneof![
        9 => any::<u64>().prop_map(CostPick::Within),
        1 => any::<u64>().prop_map(CostPick::Above),
    ];
    (gap, prop::bool::weighted(0.2), cost).prop_map(|(gap, back, cost)| Step { gap, back, cost })
}

fn case() -> impl Strategy<Value = Case> {
    const REAL: u64 = 1_700_000_000_000_000;
    let limit = prop_oneof![1..=3u64, 1..=50u64];
    let window_ms = prop_oneof![1..=20u64, 1..=10_000u64];
    // 200 steps move the clock by at most 200 × 2 × 10s = 4e9µs.
    let start = prop_oneof![
        Just(0u64),
        0..=3_000_000u64,
        Just(REAL),
        REAL..REAL + 100_000_000,
        Just((1u64 << 53) - 5_000_000_000),
    ];
    (limit, window_ms, start, prop::collection::vec(step(), 0..=200)).prop_map(|(limit, window_ms, start, steps)| {
        Case {
            limit,
            window_ms,
            start,
            steps,
        }
    })
}

fn t(us: u64) -> Timestamp {
    Timestamp::from_micros(us)
}

fn cost(units: u64) -> Cost {
    Cost::new(units).unwrap()
}

/// One check of the simulation, with everything needed to probe it again.
struct Event {
    now: u64,
    /// The latest time the key had seen, including this one.
    seen: u64,
    cost: u64,
    before: State,
    after: State,
    decision: Decision,
}

/// Runs the case's requests against one policy from a fresh key.
fn simulate(policy: &Policy, case: &Case, backwards: bool) -> Vec<Event> {
    let quota = policy.quota();
    let (limit, window) = (quota.limit(), quota.window_us());
    let interval = quota.emission_interval_us();
    let mut state = State::new(policy.algorithm());
    let mut now = case.start;
    let mut seen = 0;
    let mut events = Vec::with_capacity(case.steps.len());
    for step in &case.steps {
        let gap = match step.gap {
            Gap::Zero => 0,
            Gap::Micros(us) => us.min(2 * window),
            Gap::Fraction(f) => u64::try_from(u128::from(f) * u128::from(2 * window) / u128::from(u32::MAX)).unwrap(),
            Gap::Intervals(n) => (u64::from(n) * interval).min(2 * window),
        };
        now = if backwards && step.back {
            now.saturating_sub(gap)
        } else {
            now + gap
        };
        seen = seen.max(now);
        let units = match step.cost {
            CostPick::Within(n) => 1 + n % limit,
            CostPick::Above(n) => limit + 1 + n % limit,
        };
        let before = state.clone();
        let decision = core::check(policy, &mut state, t(now), cost(units));
        events.push(Event {
            now,
            seen,
            cost: units,
            before,
            after: state.clone(),
            decision,
        });
    }
    events
}

/// Runs `property` on every algorithm's simulation of `case`.
fn for_every_algorithm(
    case: &Case,
    backwards: bool,
    mut property: impl FnMut(&Policy, &[Event]) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    for algorithm in Algorithm::ALL {
        let Ok(policy) = Policy::new(algorithm, case.limit, Duration::from_millis(case.window_ms)) else {
            continue;
        };
        property(&policy, &simulate(&policy, case, backwards))?;
    }
    Ok(())
}

/// Checks the admissions `(time, cost)`, in time order, against the bound of
/// the algorithm.
fn within_bounds(algorithm: Algorithm, quota: &Quota, admitted: &[(u64, u64)]) -> Result<(), TestCaseError> {
    let limit = quota.limit();
    let window = quota.window_us();
    prop_assert!(admitted.windows(2).all(|p| p[0].0 <= p[1].0));
    // Cost admitted in each aligned window.
    let per_window = || {
        let mut sums = BTreeMap::<u64, u64>::new();
        for &(at, units) in admitted {
            *sums.entry(at / window).or_default() += units;
        }
        sums
    };
    // Cost admitted in the sliding window (at - window, at] ending at each
    // admission (the fullest windows end at an admission).
    let sliding = || {
        admitted.iter().map(|&(end, _)| {
            let sum: u64 = admitted
                .iter()
                .filter(|&&(at, _)| at + window > end && at <= end)
                .map(|&(_, units)| units)
                .sum();
            (end, sum)
        })
    };
    match algorithm {
        Algorithm::FixedWindow => {
            for (w, sum) in per_window() {
                prop_assert!(sum <= limit, "window {w}: {sum} > {limit}");
            }
        }
        Algorithm::SlidingWindowLog => {
            for (end, sum) in sliding() {
                prop_assert!(sum <= limit, "window ending {end}: {sum} > {limit}");
            }
        }
        Algorithm::SlidingWindowCounter => {
            for (w, sum) in per_window() {
                prop_assert!(sum <= limit, "window {w}: {sum} > {limit}");
            }
            for (end, sum) in sliding() {
                prop_assert!(sum <= 2 * limit, "window ending {end}: {sum} > 2 × {limit}");
            }
        }
        Algorithm::TokenBucket | Algorithm::Gcra => {
            let interval = quota.emission_interval_us();
            for i in 0..admitted.len() {
                let mut sum = 0;
                for j in i..admitted.len() {
                    sum += admitted[j].1;
                    let (a, b) = (admitted[i].0, admitted[j].0);
                    let bound = limit + (b - a) / interval;
                    prop_assert!(sum <= bound, "[{a}, {b}]: {sum} > {bound}");
                }
            }
        }
        // Not a rate: its bound is on leases in flight (its own tests).
        Algorithm::Concurrency => {}
    }
    Ok(())
}

/// `cases` per property, unless the `PROPTEST_CASES` environment variable
/// asks for another number (to soak the properties longer).
fn config(cases: u32) -> ProptestConfig {
    let default = ProptestConfig::default();
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            default.cases
        } else {
            cases
        },
        // Next to this file (`main.proptest-regressions`), as for a single-file test.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..default
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn never_over_admits(case in case()) {
        for_every_algorithm(&case, false, |policy, events| {
            let admitted: Vec<_> = events
                .iter()
                .filter(|e| e.decision.allowed)
                .map(|e| (e.now, e.cost))
                .collect();
            within_bounds(policy.algorithm(), policy.quota(), &admitted)
        })?;
    }

    #[test]
    fn clock_going_backwards_mints_nothing(case in case()) {
        for_every_algorithm(&case, true, |policy, events| {
            // On the timeline of the latest time seen, which never runs back.
            let admitted: Vec<_> = events
                .iter()
                .filter(|e| e.decision.allowed)
                .map(|e| (e.seen, e.cost))
                .collect();
            within_bounds(policy.algorithm(), policy.quota(), &admitted)
        })?;
    }

    #[test]
    fn decisions_are_well_formed(case in case()) {
        for_every_algorithm(&case, true, |policy, events| {
            let limit = policy.limit();
            for e in events {
                let d = &e.decision;
                prop_assert_eq!(d.at, t(e.now));
                prop_assert_eq!(d.limit, limit);
                prop_assert!(d.remaining <= limit);
                if d.allowed {
                    prop_assert_eq!(d.retry_after_us, 0);
                    prop_assert!(e.cost <= limit);
                } else if e.cost > limit {
                    prop_assert_eq!(d.retry_after_us, u64::MAX);
                } else {
                    prop_assert!(d.retry_after_us > 0 && d.retry_after_us < u64::MAX);
                }
            }
            Ok(())
        })?;
    }

    #[test]
    fn remaining_is_honest(case in case()) {
        for_every_algorithm(&case, true, |policy, events| {
            for e in events {
                let remaining = e.decision.remaining;
                prop_assert!(remaining <= policy.limit());
                let mut state = e.after.clone();
                for i in 0..remaining {
                    let d = core::check(policy, &mut state, t(e.now), Cost::ONE);
                    prop_assert!(d.allowed, "request {} of {} remaining denied", i + 1, remaining);
                }
                let d = core::check(policy, &mut state, t(e.now), Cost::ONE);
                prop_assert!(!d.allowed, "more than {} remaining", remaining);
            }
            Ok(())
        })?;
    }

    #[test]
    fn retry_after_is_honest(case in case()) {
        for_every_algorithm(&case, true, |policy, events| {
            for e in events.iter().filter(|e| !e.decision.allowed) {
                let retry = e.decision.retry_after_us;
                if retry == u64::MAX {
                    continue;
                }
                let on_time = core::check(policy, &mut e.after.clone(), t(e.now + retry), cost(e.cost));
                prop_assert!(on_time.allowed, "denied at now + retry_after ({})", retry);
                if retry > 0 {
                    let early = core::check(policy, &mut e.after.clone(), t(e.now + retry - 1), cost(e.cost));
                    prop_assert!(!early.allowed, "allowed 1µs before now + retry_after ({})", retry);
                }
            }
            Ok(())
        })?;
    }

    #[test]
    fn reset_after_is_honest(case in case()) {
        for_every_algorithm(&case, true, |policy, events| {
            let full = cost(policy.limit());
            for e in events {
                let at = t(e.now + e.decision.reset_after_us);
                let mut state = e.after.clone();
                let d = core::check(policy, &mut state, at, full);
                prop_assert!(d.allowed, "cost = limit denied at now + reset_after");
                // Equivalent to a key never seen (unless `at` is before the
                // latest time seen, which the key still remembers).
                if at.as_micros() >= e.seen {
                    let mut state = e.after.clone();
                    let mut fresh = State::new(policy.algorithm());
                    for units in [full, Cost::ONE] {
                        prop_assert_eq!(
                            core::check(policy, &mut state, at, units),
                            core::check(policy, &mut fresh, at, units)
                        );
                    }
                }
            }
            Ok(())
        })?;
    }

    #[test]
    fn a_denial_consumes_nothing(case in case()) {
        for_every_algorithm(&case, true, |policy, events| {
            let window = policy.quota().window_us();
            for e in events.iter().filter(|e| !e.decision.allowed) {
                for dt in [0, 1, window / 2, window, 2 * window] {
                    for units in [Cost::ONE, cost(policy.limit())] {
                        let at = t(e.now + dt);
                        prop_assert_eq!(
                            core::check(policy, &mut e.before.clone(), at, units),
                            core::check(policy, &mut e.after.clone(), at, units)
                        );
                    }
                }
            }
            Ok(())
        })?;
    }

    /// With the clock running forwards, the token bucket and GCRA are the
    /// same algorithm in two representations.
    #[test]
    fn token_bucket_and_gcra_agree(case in case()) {
        let window = Duration::from_millis(case.window_ms);
        let (Ok(bucket), Ok(gcra)) = (
            Policy::new(Algorithm::TokenBucket, case.limit, window),
            Policy::new(Algorithm::Gcra, case.limit, window),
        ) else {
            return Ok(());
        };
        let bucket = simulate(&bucket, &case, false);
        let gcra = simulate(&gcra, &case, false);
        for (b, g) in bucket.iter().zip(&gcra) {
            prop_assert_eq!(b.decision, g.decision);
        }
    }
}
