//! Sliding window counter: two fixed-window counts, the previous one weighted
//! by how much of it the sliding window still covers.
//!
//! # How it works
//!
//! Time is cut into windows aligned to multiples of the window since the Unix
//! epoch, as in the fixed window, and the key keeps the cost admitted in the
//! current window and in the one before it. The cost in the sliding window
//! `(now - window, now]` is estimated by assuming the previous window's
//! requests were spread evenly over it: when `e` of the current window has
//! elapsed, the sliding window still covers `(window - e) / window` of the
//! previous one, so
//!
//! ```text
//! used = ceil(previous × (window_ms - e_ms) / window_ms) + current
//! ```
//!
//! and a request is admitted while `used + cost ≤ limit`. The weight moves in
//! whole milliseconds (`e_ms` is rounded down, the product rounded up), which
//! can only overestimate `used`, never admit more.
//!
//! A denied request is told exactly when it would fit: while its cost fits
//! next to `current`, at the first millisecond `e2` of the current window at
//! which the weighted previous count leaves room (`e2 = window_ms` being the
//! start of the next window); otherwise in the next window, once the current
//! count, then previous, has decayed enough.
//!
//! # State (24 bytes)
//!
//! The start of the current window and the two counts. The default (window 0,
//! both counts 0) is an idle key. A `now` in an earlier window than the
//! stored one (the clock stepped back) is counted in the stored window, at
//! its start, where the previous count weighs most: a step back never
//! reopens an old window nor lightens the previous one. Denials store the
//! window too, so the latest window seen is remembered.
//!
//! # Trade-offs
//!
//! - Bursts: smooths the fixed window's boundary bursts. Each aligned window
//!   admits at most `limit`; a sliding window can admit more than `limit`
//!   only when the previous window's requests were bunched up late in it (the
//!   even-spread assumption is wrong), and never more than `2 × limit`.
//! - Exactness: an approximation of the sliding window log, always rounding
//!   towards admitting less; exact for evenly spread traffic.
//! - Memory: three integers per key, independent of the limit, where the
//!   sliding window log needs one entry per admitted request.
//!
//! # Lua port
//!
//! The Redis store runs a Lua port of this function, which must mirror it
//! exactly: integer arithmetic only, no floats. The products of a count and
//! milliseconds are at most `limit × window_ms ≤ 2^53` (the policy enforces
//! [`MAX_COUNTER_PRODUCT`]), so they are exact in Lua's doubles; divisions
//! must be done exactly, e.g. `(a - a % b) / b` for `floor(a / b)` and that
//! plus one when `a % b > 0` for `ceil(a / b)` (`(a + b - 1) / b` could pass
//! 2^53). Rust computes the same values in `u128`, which cannot overflow for
//! any input.
//!
//! [`MAX_COUNTER_PRODUCT`]: super::policy::MAX_COUNTER_PRODUCT

use super::{Cost, Decision, Quota, Timestamp, Units, MAX_DEBT};

/// The two windows of one key. The default is an idle key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The start of the current window (a multiple of the window).
    pub window_start: Timestamp,
    /// The cost admitted in the window before `window_start`.
    pub previous: u64,
    /// The cost admitted in the window starting at `window_start`.
    pub current: u64,
}

/// `ceil(count × left_ms / window_ms)`: the previous window's count still
/// inside the sliding window when `left_ms` of it remain covered.
fn weigh(count: u64, left_ms: u64, window_ms: u64) -> u64 {
    let weighted = (u128::from(count) * u128::from(left_ms)).div_ceil(u128::from(window_ms));
    u64::try_from(weighted).unwrap_or(u64::MAX)
}

/// The first whole millisecond `e` of a window at which
/// `weigh(count, window_ms - e, window_ms) ≤ room`:
/// `window_ms - floor(room × window_ms / count)`, at most `window_ms`.
fn fits_at_ms(count: u64, room: u64, window_ms: u64) -> u64 {
    if count == 0 {
        return 0;
    }
    let kept = u128::from(room) * u128::from(window_ms) / u128::from(count);
    window_ms - u64::try_from(kept).map_or(window_ms, |kept| kept.min(window_ms))
}

/// Decides one request of `cost` at `now`, updating `state`.
pub fn check(state: &mut State, quota: &Quota, now: Timestamp, cost: Cost) -> Decision {
    let limit = quota.limit();
    let window = quota.window_us();
    let window_ms = quota.window_ms();
    let cost = cost.get();
    let now_us = now.as_micros();

    let (start, previous, mut current) = roll(state, window, now_us);

    // Whole milliseconds elapsed in the current window (0 before its start).
    let elapsed_ms = now_us.saturating_sub(start) / 1_000;
    let weighted = weigh(previous, window_ms.saturating_sub(elapsed_ms), window_ms);
    let used = weighted.saturating_add(current);
    // Microseconds from `now` to `offset + ms` milliseconds after `start`.
    let until = |offset: u64, ms: u64| {
        start
            .saturating_add(offset)
            .saturating_add(ms.saturating_mul(1_000))
            .saturating_sub(now_us)
    };

    let allowed = used.saturating_add(cost) <= limit;
    let (remaining, retry_after_us) = if allowed {
        current += cost;
        (limit - used - cost, 0)
    } else if cost > limit {
        (limit.saturating_sub(used), u64::MAX)
    } else if current.saturating_add(cost) <= limit {
        // Fits next to `current` once `previous` has decayed enough.
        let room = limit - current - cost;
        let at_ms = fits_at_ms(previous, room, window_ms);
        (limit.saturating_sub(used), until(0, at_ms))
    } else {
        // Only fits in the next window, where `current` becomes `previous`.
        let room = limit - cost;
        let at_ms = fits_at_ms(current, room, window_ms);
        (limit.saturating_sub(used), until(window, at_ms))
    };
    let reset_after_us = if current > 0 {
        until(window.saturating_mul(2), 0)
    } else if previous > 0 {
        until(window, 0)
    } else {
        0
    };

    *state = State {
        window_start: Timestamp::from_micros(start),
        previous,
        current,
    };
    Decision {
        allowed,
        limit,
        remaining,
        reset_after_us,
        retry_after_us,
        at: now,
    }
}

/// The windows of `state` rolled forward to `now_us`: the current
/// window's start, and the counts of the previous and current windows. A
/// clock stepping back stays in the stored one.
fn roll(state: &State, window: u64, now_us: u64) -> (u64, u64, u64) {
    let stored = state.window_start.as_micros();
    let start = (now_us - now_us % window).max(stored);
    if start == stored {
        (start, state.previous, state.current)
    } else if Some(start) == stored.checked_add(window) {
        (start, state.current, 0)
    } else {
        (start, 0, 0)
    }
}

/// A report at `now`: counts `units` in the current window even past the
/// limit (a debt that weighs on the next window too), or takes them off
/// the current window and then the previous one, never below 0.
pub fn charge(state: &mut State, quota: &Quota, now: Timestamp, units: Units) {
    let (start, mut previous, mut current) = roll(state, quota.window_us(), now.as_micros());
    let n = units.magnitude();
    if units.is_refund() {
        let from_current = n.min(current);
        current -= from_current;
        previous = previous.saturating_sub(n - from_current);
    } else {
        // Every count times the window's milliseconds stays within 2^53.
        let cap = quota.limit().max(MAX_DEBT / quota.window_ms().max(1)).max(current);
        current = current.saturating_add(n).min(cap);
    }
    *state = State {
        window_start: Timestamp::from_micros(start),
        previous,
        current,
    };
}

#[cfg(test)]
mod tests {
    //! The edge cases shared by all algorithms are in `core::shared_edges`.

    use super::*;
    use crate::core::test_support::{c, quota, t, REAL};
    use crate::core::Algorithm;
    use std::time::Duration;

    /// Checks `retry_after_us` of a denial at `now` is exact, on clones.
    fn assert_exact_retry(s: &State, q: &Quota, now: u64, cost: u64, retry: u64) {
        let mut early = s.clone();
        assert!(!check(&mut early, q, t(now + retry - 1), c(cost)).allowed);
        let mut on_time = s.clone();
        assert!(check(&mut on_time, q, t(now + retry), c(cost)).allowed);
    }

    #[test]
    fn previous_window_decays_by_the_millisecond() {
        let q = quota(Algorithm::SlidingWindowCounter, 10, Duration::from_secs(1));
        let mut s = State::default();
        assert!(check(&mut s, &q, t(REAL + 100_000), c(10)).allowed);
        // Start of the next window: the previous one still weighs fully.
        let d = check(&mut s, &q, t(REAL + 1_000_000), Cost::ONE);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after_us, 100_000);
        assert_eq!(d.reset_after_us, 1_000_000);
        assert_eq!(s.previous, 10);
        assert_eq!(s.current, 0);
        assert_exact_retry(&s, &q, REAL + 1_000_000, 1, 100_000);
        // 100ms in: ceil(10 × 900 / 1000) = 9 still counted.
        let d = check(&mut s, &q, t(REAL + 1_100_999), Cost::ONE);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.reset_after_us, 1_899_001);
        // 550ms in: ceil(10 × 450 / 1000) = 5, plus 1 current.
        let d = check(&mut s, &q, t(REAL + 1_550_000), Cost::ONE);
        assert!(d.allowed);
        assert_eq!(d.remaining, 3);
    }

    #[test]
    fn exhaust_then_retry_in_the_next_window() {
        let q = quota(Algorithm::SlidingWindowCounter, 10, Duration::from_secs(1));
        let mut s = State::default();
        assert!(check(&mut s, &q, t(REAL + 200_000), c(10)).allowed);
        let d = check(&mut s, &q, t(REAL + 300_000), Cost::ONE);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_us, 800_000);
        assert_eq!(d.reset_after_us, 1_700_000);
        assert_exact_retry(&s, &q, REAL + 300_000, 1, 800_000);
        // The whole limit only fits once the current count has fully decayed.
        let d = check(&mut s, &q, t(REAL + 300_000), c(10));
        assert_eq!(d.retry_after_us, 1_700_000);
        assert_exact_retry(&s, &q, REAL + 300_000, 10, 1_700_000);
    }

    #[test]
    fn retry_at_the_very_end_of_the_window() {
        // Room only appears when the previous window stops counting at all.
        let q = quota(Algorithm::SlidingWindowCounter, 10, Duration::from_secs(1));
        let mut s = State::default();
        check(&mut s, &q, t(REAL), c(10));
        check(&mut s, &q, t(REAL + 1_900_000), Cost::ONE);
        assert_eq!(s.current, 1);
        // previous weighs ceil(10 × 100 / 1000) = 1; nine fit next to current
        // only when it weighs 0, at the start of the next window.
        let d = check(&mut s, &q, t(REAL + 1_900_000), c(9));
        assert!(!d.allowed);
        assert_eq!(d.retry_after_us, 100_000);
        assert_exact_retry(&s, &q, REAL + 1_900_000, 9, 100_000);
    }

    #[test]
    fn window_boundaries() {
        let q = quota(Algorithm::SlidingWindowCounter, 4, Duration::from_millis(100));
        let mut s = State::default();
        assert!(check(&mut s, &q, t(REAL + 99_999), c(4)).allowed);
        // Next window: the previous still weighs fully at its start.
        assert!(!check(&mut s, &q, t(REAL + 100_000), Cost::ONE).allowed);
        // Two windows later nothing is left.
        let d = check(&mut s, &q, t(REAL + 200_000), c(4));
        assert!(d.allowed);
        assert_eq!(s.previous, 0);
        assert_eq!(d.reset_after_us, 200_000);
        // One window later the current count moves to previous.
        assert!(check(&mut s, &q, t(REAL + 375_000), Cost::ONE).allowed);
        assert_eq!((s.previous, s.current), (4, 1));
    }
}
