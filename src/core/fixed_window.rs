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

use super::{Cost, Decision, Quota, Timestamp, Units, MAX_DEBT};

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

    let start = roll(state, window, now_us);
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

/// Moves `state` to the window of `now_us`; returns its start. A clock
/// stepping back stays in the stored window.
fn roll(state: &mut State, window: u64, now_us: u64) -> u64 {
    let start = (now_us - now_us % window).max(state.window_start.as_micros());
    if start != state.window_start.as_micros() {
        state.window_start = Timestamp::from_micros(start);
        state.count = 0;
    }
    start
}

/// A report at `now`: counts `units` in the current window even past the
/// limit (a debt until the window ends), or takes them off, never below 0.
pub fn charge(state: &mut State, quota: &Quota, now: Timestamp, units: Units) {
    roll(state, quota.window_us(), now.as_micros());
    if units.is_refund() {
        state.count = state.count.saturating_sub(units.magnitude());
    } else {
        let cap = quota.limit().max(MAX_DEBT).max(state.count);
        state.count = state.count.saturating_add(units.magnitude()).min(cap);
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
    fn exhaust_then_denied_until_the_next_window() {
        let q = quota(Algorithm::FixedWindow, 3, Duration::from_secs(1));
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
    fn window_boundaries() {
        let q = quota(Algorithm::FixedWindow, 2, Duration::from_millis(100));
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
}
