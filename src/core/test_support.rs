//! Helpers shared by the unit tests of the algorithms.

use std::time::Duration;

use super::{check, Algorithm, Cost, Policy, Quota, State, Timestamp};

/// A realistic time (November 2023), and a multiple of 10 s, so of every
/// window from 1 ms to 10 s that divides 10 s (but not of 700 ms: it is
/// 400 ms into a 700 ms window).
pub(crate) const REAL: u64 = 1_700_000_000_000_000;

pub(crate) fn t(us: u64) -> Timestamp {
    Timestamp::from_micros(us)
}

pub(crate) fn c(units: u64) -> Cost {
    Cost::new(units).unwrap()
}

pub(crate) fn policy(algorithm: Algorithm, limit: u64, window: Duration) -> Policy {
    Policy::new(algorithm, limit, window).unwrap()
}

pub(crate) fn quota(algorithm: Algorithm, limit: u64, window: Duration) -> Quota {
    *policy(algorithm, limit, window).quota()
}

/// Two states are equivalent when every probe from `now` on decides alike:
/// cost 1 and the whole limit, three times each, at a few times around one
/// emission interval and one window later.
pub(crate) fn assert_equivalent(p: &Policy, a: &State, b: &State, now: u64) {
    let w = p.quota().window_us();
    let ti = p.quota().emission_interval_us();
    for dt in [0, 1, ti - 1, ti, ti + 1, w / 3, w / 2, w - 1, w, w + 1, 2 * w] {
        for cost in [1, p.limit()] {
            let (mut a, mut b) = (a.clone(), b.clone());
            for _ in 0..3 {
                let at = t(now + dt);
                assert_eq!(check(p, &mut a, at, c(cost)), check(p, &mut b, at, c(cost)));
            }
        }
    }
}
