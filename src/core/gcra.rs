//! GCRA, the generic cell rate algorithm: a token bucket kept as a single
//! timestamp.
//!
//! # How it works
//!
//! Each unit of cost is given an emission interval `T = ceil(window / limit)`
//! ([`Quota::emission_interval_us`]). The state is the *theoretical arrival
//! time* `tat`: the time at which the key would have paid back everything it
//! was admitted, if requests were spaced exactly `T` apart. A request of cost
//! `c` at `now` moves it to `max(tat, now) + c × T`; it is admitted when that
//! is at most `burst = limit × T` ahead of `now` (the time-capacity of the
//! bucket, `≥ window` because `T` rounds up), and otherwise denied with
//! nothing changed. `tat - now` is thus the bucket's deficit expressed in
//! time: everything the algorithm reports falls out of it by subtraction and
//! one division.
//!
//! # State (8 bytes)
//!
//! One [`Timestamp`], `tat`. The default (0, the epoch) is at or before any
//! `now`: a never-seen key has its whole burst available.
//!
//! A clock stepping back only makes `tat - now` larger, so it is treated more
//! strictly than the time the key last saw, never less. Every check also
//! stores `max(tat, now)` — equivalent for any later time, since a `tat` in
//! the past counts as `now` — so that the latest `now` is remembered even by
//! a check that admits nothing (a cost above the limit): a later step back
//! then still finds `tat` at or after that time.
//!
//! # Trade-offs
//!
//! - Bursts: up to `limit` at once after an idle period, then the steady rate
//!   `limit / window`; over any interval `[a, b]` at most
//!   `limit + (b - a) / T` units are admitted.
//! - Exactness: exact. With the clock running forwards it makes exactly the
//!   decisions of the [`token_bucket`] with the same quota, in half its
//!   memory; `remaining` costs one division instead of being stored.
//! - Memory: the smallest of all five algorithms, independent of the limit.
//!   No window edges (unlike the fixed window), no per-request log (unlike
//!   the sliding window log).
//!
//! # Lua port
//!
//! The Redis store runs a Lua port of this function, which must mirror it
//! exactly: integer arithmetic only (no floats, only integer division),
//! every intermediate value below 2^53, and the same order of operations.
//!
//! [`token_bucket`]: super::token_bucket

use super::{Cost, Decision, Quota, Timestamp};

/// The theoretical arrival time of one key. The default is an idle key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// When everything admitted so far will have been paid back.
    pub tat: Timestamp,
}

/// Decides one request of `cost` at `now`, updating `state`.
pub fn check(state: &mut State, quota: &Quota, now: Timestamp, cost: Cost) -> Decision {
    let limit = quota.limit();
    let interval = quota.emission_interval_us();
    let burst = limit.saturating_mul(interval);
    let cost = cost.get();
    let now_us = now.as_micros();

    let tat = state.tat.as_micros().max(now_us);
    state.tat = Timestamp::from_micros(tat);
    let new_tat = tat.saturating_add(cost.saturating_mul(interval));

    let (allowed, ahead, retry_after_us) = if cost > limit {
        (false, tat - now_us, u64::MAX)
    } else if new_tat - now_us <= burst {
        state.tat = Timestamp::from_micros(new_tat);
        (true, new_tat - now_us, 0)
    } else {
        (false, tat - now_us, new_tat - now_us - burst)
    };
    Decision {
        allowed,
        limit,
        remaining: burst.saturating_sub(ahead) / interval,
        reset_after_us: ahead,
        retry_after_us,
        at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Algorithm, Policy};
    use std::time::Duration;

    const REAL: u64 = 1_700_000_000_000_000;

    fn quota(limit: u64, window: Duration) -> Quota {
        *Policy::new(Algorithm::Gcra, limit, window).unwrap().quota()
    }

    fn t(us: u64) -> Timestamp {
        Timestamp::from_micros(us)
    }

    fn c(units: u64) -> Cost {
        Cost::new(units).unwrap()
    }

    fn tat(us: u64) -> State {
        State { tat: t(us) }
    }

    #[test]
    fn fresh_key_has_its_whole_burst() {
        let q = quota(10, Duration::from_secs(1));
        for now in [0, 1, 999, REAL, 1 << 53] {
            let mut s = State::default();
            let d = check(&mut s, &q, t(now), Cost::ONE);
            assert!(d.allowed);
            assert_eq!(d.remaining, 9);
            assert_eq!(d.limit, 10);
            assert_eq!(d.at, t(now));
            assert_eq!(d.retry_after_us, 0);
            assert_eq!(d.reset_after_us, 100_000);
            assert_eq!(s, tat(now + 100_000));
        }
    }

    #[test]
    fn exhaust_then_denied_then_refill() {
        let q = quota(3, Duration::from_secs(3)); // T = 1s
        let mut s = State::default();
        for left in [2, 1, 0] {
            let d = check(&mut s, &q, t(REAL), Cost::ONE);
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
        }
        let d = check(&mut s, &q, t(REAL + 250_000), Cost::ONE);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after_us, 750_000);
        assert_eq!(d.reset_after_us, 2_750_000);
        assert!(!check(&mut s, &q, t(REAL + 999_999), Cost::ONE).allowed);
        let d = check(&mut s, &q, t(REAL + 1_000_000), Cost::ONE);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.reset_after_us, 3_000_000);
    }

    #[test]
    fn exactly_at_the_limit() {
        let q = quota(10, Duration::from_secs(10));
        let mut s = State::default();
        check(&mut s, &q, t(REAL), c(4));
        let before = s.clone();
        let d = check(&mut s, &q, t(REAL), c(7));
        assert!(!d.allowed);
        assert_eq!(d.remaining, 6);
        assert_eq!(d.retry_after_us, 1_000_000);
        assert_eq!(s, before);
        let d = check(&mut s, &q, t(REAL), c(6));
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.reset_after_us, 10_000_000);
    }

    #[test]
    fn remaining_rounds_down_with_a_partial_interval() {
        let q = quota(4, Duration::from_secs(4)); // T = 1s
        let mut s = State::default();
        check(&mut s, &q, t(REAL), c(4));
        // 1.5s later: one unit paid back, half of the next one.
        let d = check(&mut s, &q, t(REAL + 1_500_000), Cost::ONE);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.reset_after_us, 3_500_000);
        let d = check(&mut s, &q, t(REAL + 1_500_000), Cost::ONE);
        assert_eq!(d.retry_after_us, 500_000);
    }

    #[test]
    fn cost_above_limit_is_never_allowed_and_consumes_nothing() {
        let q = quota(5, Duration::from_secs(1));
        let mut s = State::default();
        check(&mut s, &q, t(REAL), c(2));
        let before = s.clone();
        let d = check(&mut s, &q, t(REAL), c(6));
        assert!(!d.allowed);
        assert_eq!(d.retry_after_us, u64::MAX);
        assert_eq!(d.remaining, 3);
        assert_eq!(d.reset_after_us, 400_000);
        assert_eq!(s, before);
        let d = check(&mut s, &q, t(REAL + 10_000_000), c(u64::MAX));
        assert!(!d.allowed);
        assert_eq!(d.retry_after_us, u64::MAX);
        assert_eq!(d.remaining, 5);
        assert_eq!(d.reset_after_us, 0);
    }

    #[test]
    fn long_idle_restores_fully_without_overflow() {
        let q = quota(1_000, Duration::from_secs(366 * 86_400));
        let mut s = State::default();
        check(&mut s, &q, t(0), c(1_000));
        assert!(check(&mut s, &q, t((1 << 53) - 1), c(1_000)).allowed);
        assert!(check(&mut s, &q, t(u64::MAX), c(1_000)).allowed);
    }

    #[test]
    fn clock_standing_still() {
        let q = quota(100, Duration::from_secs(1));
        let mut s = State::default();
        let allowed = (0..1_000)
            .filter(|_| check(&mut s, &q, t(REAL), Cost::ONE).allowed)
            .count();
        assert_eq!(allowed, 100);
    }

    #[test]
    fn clock_going_backwards_mints_nothing() {
        let q = quota(10, Duration::from_secs(10));
        let mut s = State::default();
        assert!(check(&mut s, &q, t(100_000_000), c(10)).allowed);
        let d = check(&mut s, &q, t(50_000_000), Cost::ONE);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_us, 51_000_000);
        assert_eq!(d.reset_after_us, 60_000_000);
        assert_eq!(d.remaining, 0);
        assert!(!check(&mut s, &q, t(100_000_000), Cost::ONE).allowed);
        assert!(!check(&mut s, &q, t(100_999_999), Cost::ONE).allowed);
        assert!(check(&mut s, &q, t(101_000_000), Cost::ONE).allowed);
        assert!(!check(&mut s, &q, t(101_000_000), Cost::ONE).allowed);
    }

    #[test]
    fn a_check_that_admits_nothing_still_remembers_the_time() {
        // Without it, a step back after a cost above the limit would start
        // from the earlier time and let a second burst through at the later.
        let q = quota(2, Duration::from_secs(2));
        let mut s = State::default();
        assert!(!check(&mut s, &q, t(100_000_000), c(3)).allowed);
        assert_eq!(s, tat(100_000_000));
        assert!(!check(&mut s, &q, t(50_000_000), Cost::ONE).allowed);
        assert!(check(&mut s, &q, t(100_000_000), c(2)).allowed);
    }

    #[test]
    fn a_denial_consumes_nothing() {
        let q = quota(7, Duration::from_millis(700)); // T = 100ms
        let mut s = State::default();
        check(&mut s, &q, t(REAL), c(6));
        let before = s.clone();
        let d = check(&mut s, &q, t(REAL + 150_000), c(3));
        assert!(!d.allowed);
        assert_eq!(d.retry_after_us, 50_000);
        assert_eq!(s, before);
    }

    #[test]
    fn retry_and_reset_are_exact() {
        let q = quota(3, Duration::from_secs(10)); // T = 3_333_334µs
        let mut s = State::default();
        let d = check(&mut s, &q, t(REAL), c(3));
        assert_eq!(d.reset_after_us, 10_000_002);
        let d = check(&mut s, &q, t(REAL), c(2));
        assert_eq!(d.retry_after_us, 6_666_668);
        assert!(!check(&mut s.clone(), &q, t(REAL + 6_666_667), c(2)).allowed);
        assert!(check(&mut s.clone(), &q, t(REAL + 6_666_668), c(2)).allowed);
        assert!(!check(&mut s.clone(), &q, t(REAL + 10_000_001), c(3)).allowed);
        assert!(check(&mut s, &q, t(REAL + 10_000_002), c(3)).allowed);
    }

    #[test]
    fn never_panics_on_extreme_input() {
        let q = quota(1_000_000_000, Duration::from_secs(366 * 86_400));
        let q1 = quota(1, Duration::from_millis(1));
        for at in [0, 1 << 53, u64::MAX] {
            for now in [0, 1 << 53, u64::MAX] {
                for cost in [1, 1_000_000_000, u64::MAX] {
                    for q in [&q, &q1] {
                        check(&mut tat(at), q, t(now), c(cost));
                    }
                }
            }
        }
    }

    #[test]
    fn state_is_small() {
        assert_eq!(std::mem::size_of::<State>(), 8);
    }
}
