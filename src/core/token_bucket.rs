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

use super::{Cost, Decision, Quota, Timestamp, Units, MAX_DEBT};

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

    let now_e = refill(state, interval, now_us);
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

/// Earns back the tokens due by `now_us`; returns the time the bucket is
/// evaluated at. A `now` before `updated` (clock stepped back) counts as
/// `updated`.
fn refill(state: &mut State, interval: u64, now_us: u64) -> u64 {
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
    now_e
}

/// The most tokens a report can leave owed: the limit, or [`MAX_DEBT`]
/// microseconds' worth when that is more.
pub(super) fn debt_cap(limit: u64, interval: u64) -> u64 {
    limit.max(MAX_DEBT / interval)
}

/// A report at `now`: takes `units` tokens even past the limit (a debt,
/// earned back like any other use), or gives them back, never beyond a
/// full bucket.
pub fn charge(state: &mut State, quota: &Quota, now: Timestamp, units: Units) {
    let interval = quota.emission_interval_us();
    let now_e = refill(state, interval, now.as_micros());
    if units.is_refund() {
        state.used = state.used.saturating_sub(units.magnitude());
        if state.used == 0 {
            state.updated = Timestamp::from_micros(now_e);
        }
    } else {
        let cap = debt_cap(quota.limit(), interval).max(state.used);
        state.used = state.used.saturating_add(units.magnitude()).min(cap);
    }
}

#[cfg(test)]
mod tests {
    //! The edge cases shared by all algorithms are in `core::shared_edges`.

    use super::*;
    use crate::core::test_support::{c, quota, t, REAL};
    use crate::core::Algorithm;
    use std::time::Duration;

    #[test]
    fn partial_interval_is_carried() {
        let q = quota(Algorithm::TokenBucket, 2, Duration::from_secs(2)); // T = 1s
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
        let q = quota(Algorithm::TokenBucket, 3, Duration::from_secs(10)); // T = 3_333_334µs
        let mut s = State::default();
        let d = check(&mut s, &q, t(REAL), c(2));
        assert_eq!(d.reset_after_us, 6_666_668);
        let mut early = s.clone();
        assert!(!check(&mut early, &q, t(REAL + 6_666_667), c(3)).allowed);
        assert!(check(&mut s, &q, t(REAL + 6_666_668), c(3)).allowed);
    }
}
