//! Token bucket: a bucket of `limit` tokens, refilled at one token every
//! `T = ceil(window / limit)` microseconds.
//!
//! # How it works
//!
//! A request of cost `c` takes `c` tokens out of the bucket; when fewer than
//! `c` are left it is denied and takes nothing. Tokens flow back in at one per
//! emission interval `T` ([`Quota::emission_interval_us`]) until the bucket
//! is full again, so an empty bucket refills completely in `limit × T ≥
//! window` microseconds. The refill is computed lazily at each check from the
//! time elapsed since the state was last written; nothing runs in between.
//!
//! # State (16 bytes)
//!
//! The state stores the *deficit* (`used`: tokens taken and not yet earned
//! back) rather than the tokens left, so that [`State::default`] — deficit 0
//! — is a full bucket at any time, including `now = 0`; a "tokens left" field
//! of 0 would make a never-seen key start empty near the epoch. `updated` is
//! the time from which the next token is being earned: when the bucket is not
//! full it advances by whole intervals only, carrying the part of an interval
//! already elapsed to the next check; when the bucket fills up, that remainder
//! is dropped (a full bucket earns nothing) and `updated` jumps to now.
//!
//! `updated` never moves backwards, and a `now` earlier than `updated` (the
//! clock stepped back) is evaluated as `updated`, so a clock stepping back
//! earns nothing.
//!
//! # Trade-offs
//!
//! - Bursts: after an idle period the whole bucket (`limit`) can go at once;
//!   after that, requests pass at the steady rate `limit / window`. Over any
//!   interval `[a, b]` at most `limit + (b - a) / T` units are admitted.
//! - Exactness: exact (no approximation), with the rate rounded down by the
//!   rounding up of `T`. It admits exactly the same requests, with the same
//!   `remaining`, `retry_after_us` and `reset_after_us`, as [`gcra`] with the
//!   same quota (while the clock runs forwards); it stores one more integer
//!   but says directly how many tokens are left.
//! - Memory: O(1), independent of the limit — unlike the sliding window log.
//!   No window edges: unlike the fixed window it never admits `2 × limit`
//!   around a boundary.
//!
//! # Lua port
//!
//! The Redis store runs a Lua port of this function, which must mirror it
//! exactly: integer arithmetic only (no floats, no rounding functions other
//! than integer division, which Lua does as `//` or `math.floor(a / b)`),
//! every intermediate value below 2^53, and the same order of operations.
//!
//! [`gcra`]: super::gcra

use super::{Cost, Decision, Quota, Timestamp};

/// The bucket of one key. The default is a full bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Tokens taken out and not yet earned back: 0 is a full bucket.
    pub used: u64,
    /// The time from which the next token is being earned (or, when the
    /// bucket is full, the last time it was checked).
    pub updated: Timestamp,
}

/// Decides one request of `cost` at `now`, updating `state`.
pub fn check(state: &mut State, quota: &Quota, now: Timestamp, cost: Cost) -> Decision {
    let limit = quota.limit();
    let interval = quota.emission_interval_us();
    let cost = cost.get();
    let now_us = now.as_micros();

    // Refill. A `now` before `updated` (clock stepped back) counts as `updated`.
    let updated = state.updated.as_micros();
    let now_e = now_us.max(updated);
    let earned = (now_e - updated) / interval;
    if earned >= state.used {
        // Full: the part of an interval already elapsed is dropped.
        state.used = 0;
        state.updated = Timestamp::from_micros(now_e);
    } else {
        // Not full: carry the part of an interval already elapsed.
        state.used -= earned;
        state.updated = Timestamp::from_micros(updated + earned * interval);
    }
    // Progress towards the next token (< interval when used > 0).
    let partial = now_e - state.updated.as_micros();
    // How far `now` is behind the time the bucket was evaluated at.
    let lag = now_e - now_us;
    // Microseconds from `now` until `units` tokens more have been earned.
    let wait_for = |units: u64| {
        units
            .saturating_mul(interval)
            .saturating_sub(partial)
            .saturating_add(lag)
    };

    let allowed = state.used.saturating_add(cost) <= limit;
    let retry_after_us = if allowed {
        state.used += cost;
        0
    } else if cost > limit {
        u64::MAX
    } else {
        wait_for(state.used.saturating_add(cost) - limit)
    };
    let reset_after_us = if state.used == 0 { 0 } else { wait_for(state.used) };
    Decision {
        allowed,
        limit,
        remaining: limit.saturating_sub(state.used),
        reset_after_us,
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
        *Policy::new(Algorithm::TokenBucket, limit, window).unwrap().quota()
    }

    fn t(us: u64) -> Timestamp {
        Timestamp::from_micros(us)
    }

    fn c(units: u64) -> Cost {
        Cost::new(units).unwrap()
    }

    /// Two states are equivalent when every probe from `now` on decides alike.
    fn assert_equivalent(a: &State, b: &State, q: &Quota, now: u64) {
        let w = q.window_us();
        let ti = q.emission_interval_us();
        for dt in [0, 1, ti - 1, ti, ti + 1, w / 2, w, 2 * w] {
            for cost in [1, q.limit()] {
                let (mut a, mut b) = (a.clone(), b.clone());
                for _ in 0..3 {
                    let at = t(now + dt);
                    assert_eq!(check(&mut a, q, at, c(cost)), check(&mut b, q, at, c(cost)));
                }
            }
        }
    }

    #[test]
    fn fresh_key_is_full() {
        let q = quota(10, Duration::from_secs(1));
        for now in [0, 1, 999, REAL, 1 << 53] {
            let mut s = State::default();
            let d = check(&mut s, &q, t(now), Cost::ONE);
            assert!(d.allowed);
            assert_eq!(d.remaining, 9);
            assert_eq!(d.limit, 10);
            assert_eq!(d.at, t(now));
            assert_eq!(d.retry_after_us, 0);
            // One token back after T = 100ms.
            assert_eq!(d.reset_after_us, 100_000);
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
        let d = check(&mut s, &q, t(REAL + 999_999), Cost::ONE);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_us, 1);
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
    fn cost_above_limit_is_never_allowed_and_consumes_nothing() {
        let q = quota(5, Duration::from_secs(1));
        let mut s = State::default();
        check(&mut s, &q, t(REAL), c(2));
        let before = s.clone();
        let d = check(&mut s, &q, t(REAL), c(6));
        assert!(!d.allowed);
        assert_eq!(d.retry_after_us, u64::MAX);
        assert_eq!(d.remaining, 3);
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
        let d = check(&mut s, &q, t((1 << 53) - 1), c(1_000));
        assert!(d.allowed);
        assert_eq!(s.updated, t((1 << 53) - 1));
        let d = check(&mut s, &q, t(u64::MAX), c(1_000));
        assert!(d.allowed);
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
        // Retry is measured from the time passed in, 50s before the fill.
        assert_eq!(d.retry_after_us, 51_000_000);
        assert_eq!(d.reset_after_us, 60_000_000);
        assert!(!check(&mut s, &q, t(100_000_000), Cost::ONE).allowed);
        assert!(!check(&mut s, &q, t(100_999_999), Cost::ONE).allowed);
        assert!(check(&mut s, &q, t(101_000_000), Cost::ONE).allowed);
        assert!(!check(&mut s, &q, t(101_000_000), Cost::ONE).allowed);
    }

    #[test]
    fn a_denial_consumes_nothing() {
        let q = quota(7, Duration::from_millis(700)); // T = 100ms
        let mut s = State::default();
        check(&mut s, &q, t(REAL), c(6));
        let before = s.clone();
        let now = REAL + 150_000;
        let d = check(&mut s, &q, t(now), c(3));
        assert!(!d.allowed);
        assert_eq!(d.retry_after_us, 50_000);
        assert_equivalent(&before, &s, &q, now);
    }

    #[test]
    fn partial_interval_is_carried() {
        let q = quota(2, Duration::from_secs(2)); // T = 1s
        let mut s = State::default();
        check(&mut s, &q, t(0), c(2));
        // 1.5s later: one token earned, 0.5s carried.
        assert!(check(&mut s, &q, t(1_500_000), Cost::ONE).allowed);
        assert_eq!(s.updated, t(1_000_000));
        let d = check(&mut s, &q, t(1_500_000), Cost::ONE);
        assert_eq!(d.retry_after_us, 500_000);
        assert!(check(&mut s, &q, t(2_000_000), Cost::ONE).allowed);
    }

    #[test]
    fn reset_after_is_exact() {
        let q = quota(3, Duration::from_secs(10)); // T = 3_333_334µs
        let mut s = State::default();
        let d = check(&mut s, &q, t(REAL), c(2));
        assert_eq!(d.reset_after_us, 6_666_668);
        let mut early = s.clone();
        assert!(!check(&mut early, &q, t(REAL + 6_666_667), c(3)).allowed);
        assert!(check(&mut s, &q, t(REAL + 6_666_668), c(3)).allowed);
    }

    #[test]
    fn never_panics_on_extreme_input() {
        let q = quota(1_000_000_000, Duration::from_secs(366 * 86_400));
        let q1 = quota(1, Duration::from_millis(1));
        for used in [0, 1, u64::MAX] {
            for updated in [0, 1 << 53, u64::MAX] {
                for now in [0, 1 << 53, u64::MAX] {
                    for cost in [1, 1_000_000_000, u64::MAX] {
                        for q in [&q, &q1] {
                            let mut s = State {
                                used,
                                updated: t(updated),
                            };
                            check(&mut s, q, t(now), c(cost));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn state_is_small() {
        assert_eq!(std::mem::size_of::<State>(), 16);
    }
}
