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

use super::{token_bucket::debt_cap, Cost, Decision, Quota, Timestamp, Units};

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

/// A report at `now`: moves the arrival time on by `units` intervals even
/// past the burst (a debt), or back, never before `now` (full). The same
/// numbers as the token bucket's [`charge`](super::token_bucket::charge).
pub fn charge(state: &mut State, quota: &Quota, now: Timestamp, units: Units) {
    let interval = quota.emission_interval_us();
    let now_us = now.as_micros();
    let ahead = state.tat.as_micros().max(now_us) - now_us;
    let cap = debt_cap(quota.limit(), interval);
    let moved = units.magnitude().min(cap) * interval;
    let ahead = if units.is_refund() {
        ahead.saturating_sub(moved)
    } else {
        ahead.saturating_add(moved).min((cap * interval).max(ahead))
    };
    state.tat = Timestamp::from_micros(now_us.saturating_add(ahead));
}

#[cfg(test)]
mod tests {
    //! The edge cases shared by all algorithms are in `core::shared_edges`.

    use super::*;
    use crate::core::test_support::{c, quota, t, REAL};
    use crate::core::Algorithm;
    use std::time::Duration;

    #[test]
    fn remaining_rounds_down_with_a_partial_interval() {
        let q = quota(Algorithm::Gcra, 4, Duration::from_secs(4)); // T = 1s
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
    fn retry_and_reset_are_exact() {
        let q = quota(Algorithm::Gcra, 3, Duration::from_secs(10)); // T = 3_333_334µs
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
}
