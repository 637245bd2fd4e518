//! Several limits decided as one: a cost is allowed only when every limit
//! allows it, and then every limit's state consumes it; otherwise none does.
//!
//! [`check_all`] is the reference the stores follow: the memory store runs
//! it under the locks of all the check's counters, the Redis store runs its
//! Lua port in one script call. Each limit is first decided on a copy of
//! its state; the copies are kept only when every limit allows and the
//! caller asked to consume ([`Consume::IfAllAllow`]).
//!
//! What each limit reports when nothing was consumed (a denied check, or a
//! check that must not consume, such as a peek): a limit that denied
//! reports its own denial, which consumed nothing anyway; a limit that
//! would have allowed reports `allowed` with the numbers of its state as
//! it stands — its `remaining` before the cost, not after.

use super::{acquire, charge, check, Cost, Decision, Policy, State, Timestamp, Units};

/// Whether a multi-limit check may consume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consume {
    /// Consume from every limit when every limit allows (a check).
    IfAllAllow,
    /// Consume nothing, whatever the limits decide (a peek, a shadow rule).
    Never,
}

/// Decides `cost` at `now` against every `(policy, state)` pair; returns
/// whether every limit allows, and each limit's decision, in order.
///
/// The states change only when every limit allows and `consume` is
/// [`Consume::IfAllAllow`]; then each holds exactly what [`check`] would
/// have left in it. A pair whose state was kept for another algorithm is
/// judged, like [`check`] judges it, as a fresh state.
pub fn check_all(
    limits: &mut [(&Policy, &mut State)],
    now: Timestamp,
    cost: Cost,
    consume: Consume,
) -> (bool, Vec<Decision>) {
    acquire_all(limits, now, cost, consume, 0)
}

/// [`check_all`], with `lease` the number of the lease each `concurrency`
/// limit takes when the check consumes.
pub fn acquire_all(
    limits: &mut [(&Policy, &mut State)],
    now: Timestamp,
    cost: Cost,
    consume: Consume,
    lease: u64,
) -> (bool, Vec<Decision>) {
    let mut trials: Vec<State> = Vec::with_capacity(limits.len());
    let mut decisions: Vec<Decision> = Vec::with_capacity(limits.len());
    for (policy, state) in limits.iter() {
        let mut trial = (**state).clone();
        decisions.push(acquire(policy, &mut trial, now, cost, lease));
        trials.push(trial);
    }
    let allowed = decisions.iter().all(|d| d.allowed);
    if allowed && consume == Consume::IfAllAllow {
        for ((_, state), trial) in limits.iter_mut().zip(trials) {
            **state = trial;
        }
        return (true, decisions);
    }
    for ((policy, state), decision) in limits.iter().zip(decisions.iter_mut()) {
        if decision.allowed {
            *decision = unconsumed(policy, state, now);
        }
    }
    (allowed, decisions)
}

/// A report of `units` at `now` on every `(policy, state)` pair: each is
/// charged (or refunded) unconditionally, then read as a peek — whether a
/// cost-1 check would be allowed now, and each limit's numbers as they
/// stand (see [`check_all`] with [`Consume::Never`]). A denied limit's
/// `retry_after_us` is when its debt is paid back enough for one unit.
pub fn report_all(limits: &mut [(&Policy, &mut State)], now: Timestamp, units: Units) -> (bool, Vec<Decision>) {
    for (policy, state) in limits.iter_mut() {
        charge(policy, state, now, units);
    }
    check_all(limits, now, Cost::ONE, Consume::Never)
}

/// An allowing limit's decision when nothing was consumed: allowed, with
/// the numbers of `state` as it stands (a cost above the limit never fits
/// and never consumes, so deciding it reports the state as it is).
fn unconsumed(policy: &Policy, state: &State, now: Timestamp) -> Decision {
    let mut probe = state.clone();
    let never = Cost::new(policy.limit().saturating_add(1)).unwrap_or(Cost::ONE);
    let state_now = check(policy, &mut probe, now, never);
    Decision {
        allowed: true,
        retry_after_us: 0,
        ..state_now
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::test_support::{assert_equivalent, c, policy, t, REAL};
    use super::super::Algorithm;
    use super::*;

    fn fresh(policies: &[Policy]) -> Vec<State> {
        policies.iter().map(|p| State::new(p.algorithm())).collect()
    }

    fn run(policies: &[Policy], states: &mut [State], now: u64, cost: u64, consume: Consume) -> (bool, Vec<Decision>) {
        let mut limits: Vec<(&Policy, &mut State)> = policies.iter().zip(states.iter_mut()).collect();
        check_all(&mut limits, t(now), c(cost), consume)
    }

    #[test]
    fn one_limit_decides_as_check_does() {
        for algorithm in Algorithm::ALL {
            let p = policy(algorithm, 3, Duration::from_secs(10));
            let mut alone = State::new(algorithm);
            let mut states = fresh(&[p]);
            for i in 0..5 {
                let now = REAL + i * 1_000;
                let expected = check(&p, &mut alone, t(now), c(1));
                let (allowed, decisions) = run(&[p], &mut states, now, 1, Consume::IfAllAllow);
                assert_eq!(
                    (allowed, decisions[0]),
                    (expected.allowed, expected),
                    "{algorithm:?} #{i}"
                );
                assert_equivalent(&p, &alone, &states[0], now);
            }
        }
    }

    #[test]
    fn the_narrow_limit_denying_leaves_the_broad_one_untouched() {
        // 2 per 10 s (burst) and 100 per day (daily): the third check is
        // denied by the burst, and the daily counter must not count it.
        let burst = policy(Algorithm::TokenBucket, 2, Duration::from_secs(10));
        let daily = policy(Algorithm::FixedWindow, 100, Duration::from_secs(86_400));
        let policies = [burst, daily];
        let mut states = fresh(&policies);
        for _ in 0..2 {
            assert!(run(&policies, &mut states, REAL, 1, Consume::IfAllAllow).0);
        }
        let before = states.clone();
        let (allowed, decisions) = run(&policies, &mut states, REAL, 1, Consume::IfAllAllow);
        assert!(!allowed);
        assert_eq!(states, before, "a denied check consumes nothing");
        assert!(!decisions[0].allowed && decisions[0].retry_after_us > 0);
        assert_eq!(
            (
                decisions[1].allowed,
                decisions[1].remaining,
                decisions[1].retry_after_us
            ),
            (true, 98, 0),
            "the daily limit would allow, and reports its remaining before the cost"
        );
    }

    #[test]
    fn never_consumes_and_reports_the_state_as_it_stands() {
        for algorithm in Algorithm::ALL {
            let p = policy(algorithm, 5, Duration::from_secs(60));
            let mut states = fresh(&[p]);
            run(&[p], &mut states, REAL, 2, Consume::IfAllAllow);
            let before = states.clone();
            let (allowed, decisions) = run(&[p], &mut states, REAL + 1, 1, Consume::Never);
            assert!(allowed, "{algorithm:?}");
            assert_eq!(states, before, "{algorithm:?}: a peek consumes nothing");
            assert_eq!(decisions[0].remaining, 3, "{algorithm:?}: remaining before the cost");
            let (allowed, _) = run(&[p], &mut states, REAL + 1, 4, Consume::Never);
            assert!(!allowed, "{algorithm:?}: 4 more do not fit");
        }
    }

    #[test]
    fn a_state_of_another_algorithm_is_judged_fresh_and_kept_when_denied() {
        let narrow = policy(Algorithm::Gcra, 1, Duration::from_secs(60));
        let broad = policy(Algorithm::SlidingWindowLog, 10, Duration::from_secs(60));
        let mut states = vec![State::new(Algorithm::Gcra), State::new(Algorithm::TokenBucket)];
        let (allowed, _) = run(&[narrow, broad], &mut states, REAL, 1, Consume::IfAllAllow);
        assert!(allowed);
        assert_eq!(states[1].algorithm(), Algorithm::SlidingWindowLog);
        let (allowed, decisions) = run(&[narrow, broad], &mut states, REAL, 1, Consume::IfAllAllow);
        assert!(!allowed);
        assert_eq!(decisions[1].remaining, 9);
    }
}
