//! Fixed window: count the cost admitted in the current window; start again
//! at zero when the next window begins.
//!
//! # How it works
//!
//! Time is cut into windows of `window` microseconds aligned to multiples of
//! the window since the Unix epoch, so every key (and every server) agrees on
//! where a window starts. A request is admitted while the cost admitted in
//! its window plus its own cost stays within `limit`. When a check falls in
//! a later window than the stored one, the count starts again from zero.
//!
//! # State (16 bytes)
//!
//! The start of the window the count belongs to, and the count. The default
//! (window 0, count 0) is an empty window: any `now` in a later window resets
//! it, and one in window 0 finds nothing counted yet.
//!
//! A `now` in an earlier window than the stored one (the clock stepped back)
//! is counted in the stored window, so a step back never reopens an old,
//! emptier window. Denials store the window too, so the latest window seen is
//! remembered even when nothing was admitted.
//!
//! # Trade-offs
//!
//! - Bursts: the whole `limit` can pass at the end of one window and again at
//!   the start of the next, so up to `2 × limit` can pass within a few
//!   microseconds around a boundary; the sliding window algorithms smooth
//!   this out.
//! - Exactness: exact per aligned window; `retry_after` is always the end of
//!   the window, so all denied clients come back at the same instant.
//! - Memory: two integers per key, independent of the limit; the cheapest to
//!   compute (one remainder, one comparison).
//!
//! # Lua port
//!
//! The Redis store runs a Lua port of this function, which must mirror it
//! exactly: integer arithmetic only (no floats; `%` on non-negative
//! integers), every intermediate value below 2^53, and the same order of
//! operations.

use super::{Cost, Decision, Quota, Timestamp};

/// The window of one key. The default is an empty window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The start of the window `count` belongs to (a multiple of the window).
    pub window_start: Timestamp,
    /// The cost admitted in that window.
    pub count: u64,
}

/// Decides one request of `cost` at `now`, updating `state`.
pub fn check(state: &mut State, quota: &Quota, now: Timestamp, cost: Cost) -> Decision {
    let limit = quota.limit();
    let window = quota.window_us();
    let cost = cost.get();
    let now_us = now.as_micros();

    // A clock stepping back stays in the stored window.
    let start = (now_us - now_us % window).max(state.window_start.as_micros());
    if start != state.window_start.as_micros() {
        state.window_start = Timestamp::from_micros(start);
        state.count = 0;
    }
    let until_end = start.saturating_add(window).saturating_sub(now_us);

    let allowed = state.count.saturating_add(cost) <= limit;
    let retry_after_us = if allowed {
        state.count += cost;
        0
    } else if cost > limit {
        u64::MAX
    } else {
        until_end
    };
    Decision {
        allowed,
        limit,
        remaining: limit.saturating_sub(state.count),
        reset_after_us: if state.count == 0 { 0 } else { until_end },
        retry_after_us,
        at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Algorithm, Policy};
    use std::time::Duration;

    /// A multiple of one second (and of every window used below).
    const REAL: u64 = 1_700_000_000_000_000;

    fn quota(limit: u64, window: Duration) -> Quota {
        *Policy::new(Algorithm::FixedWindow, limit, window).unwrap().quota()
    }

    fn t(us: u64) -> Timestamp {
        Timestamp::from_micros(us)
    }

    fn c(units: u64) -> Cost {
        Cost::new(units).unwrap()
    }

    #[test]
    fn fresh_key() {
        let q = quota(10, Duration::from_secs(1));
        for now in [0, 1, 999_999, REAL + 250_000, 1 << 53] {
            let mut s = State::default();
            let d = check(&mut s, &q, t(now), Cost::ONE);
            assert!(d.allowed);
            assert_eq!(d.remaining, 9);
            assert_eq!(d.limit, 10);
            assert_eq!(d.at, t(now));
            assert_eq!(d.retry_after_us, 0);
            assert_eq!(d.reset_after_us, 1_000_000 - now % 1_000_000);
        }
    }

    #[test]
    fn exhaust_then_denied_until_the_next_window() {
        let q = quota(3, Duration::from_secs(1));
        let mut s = State::default();
        for left in [2, 1, 0] {
            let d = check(&mut s, &q, t(REAL + 100), Cost::ONE);
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
        }
        let d = check(&mut s, &q, t(REAL + 400_000), Cost::ONE);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after_us, 600_000);
        assert_eq!(d.reset_after_us, 600_000);
        assert!(!check(&mut s, &q, t(REAL + 999_999), Cost::ONE).allowed);
        let d = check(&mut s, &q, t(REAL + 1_000_000), c(3));
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.reset_after_us, 1_000_000);
    }

    #[test]
    fn exactly_at_the_limit() {
        let q = quota(10, Duration::from_secs(10));
        let mut s = State::default();
        check(&mut s, &q, t(REAL), c(4));
        let before = s.clone();
        let d = check(&mut s, &q, t(REAL + 1), c(7));
        assert!(!d.allowed);
        assert_eq!(d.remaining, 6);
        assert_eq!(d.retry_after_us, 9_999_999);
        assert_eq!(s, before);
        let d = check(&mut s, &q, t(REAL + 1), c(6));
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
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
        let d = check(&mut s, &q, t(REAL + 5_000_000), c(u64::MAX));
        assert!(!d.allowed);
        assert_eq!(d.retry_after_us, u64::MAX);
        assert_eq!(d.remaining, 5);
        assert_eq!(d.reset_after_us, 0);
    }

    #[test]
    fn window_boundaries() {
        let q = quota(2, Duration::from_millis(100));
        let mut s = State::default();
        // Both at the very end of one window, both at the start of the next.
        assert!(check(&mut s, &q, t(REAL + 99_999), c(2)).allowed);
        assert!(!check(&mut s, &q, t(REAL + 99_999), Cost::ONE).allowed);
        let d = check(&mut s, &q, t(REAL + 100_000), c(2));
        assert!(d.allowed);
        assert_eq!(s.window_start, t(REAL + 100_000));
        assert_eq!(d.reset_after_us, 100_000);
        // Skipping windows starts from zero too.
        assert!(check(&mut s, &q, t(REAL + 750_000), c(2)).allowed);
        assert_eq!(s.window_start, t(REAL + 700_000));
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
        assert_eq!(d.retry_after_us, 60_000_000);
        assert_eq!(s.window_start, t(100_000_000));
        assert!(!check(&mut s, &q, t(100_000_000), Cost::ONE).allowed);
        assert!(!check(&mut s, &q, t(109_999_999), Cost::ONE).allowed);
        assert!(check(&mut s, &q, t(110_000_000), Cost::ONE).allowed);
    }

    #[test]
    fn a_denial_remembers_the_window() {
        let q = quota(2, Duration::from_secs(1));
        let mut s = State::default();
        assert!(!check(&mut s, &q, t(REAL + 5_000_000), c(3)).allowed);
        assert_eq!(s.window_start, t(REAL + 5_000_000));
        // A step back is counted in the window seen last.
        assert!(check(&mut s, &q, t(REAL), c(2)).allowed);
        assert!(!check(&mut s, &q, t(REAL + 5_000_000), Cost::ONE).allowed);
    }

    #[test]
    fn a_denial_consumes_nothing() {
        let q = quota(7, Duration::from_millis(700));
        let mut s = State::default();
        check(&mut s, &q, t(REAL), c(6));
        let before = s.clone();
        assert!(!check(&mut s, &q, t(REAL + 150_000), c(3)).allowed);
        assert_eq!(s, before);
    }

    #[test]
    fn never_panics_on_extreme_input() {
        let q = quota(1_000_000_000, Duration::from_secs(366 * 86_400));
        let q1 = quota(1, Duration::from_millis(1));
        for start in [0, 1 << 53, u64::MAX] {
            for count in [0, 1, u64::MAX] {
                for now in [0, 1 << 53, u64::MAX] {
                    for cost in [1, 1_000_000_000, u64::MAX] {
                        for q in [&q, &q1] {
                            let mut s = State {
                                window_start: t(start),
                                count,
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
