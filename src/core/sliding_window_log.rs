//! Sliding window log: remember every admitted request and count those in the
//! last window.
//!
//! # How it works
//!
//! The key keeps a log of its admitted requests, oldest first, each with its
//! time and cost. The window is `(now - window, now]`: a check first drops
//! the entries that have slid out of it (`time + window ≤ now`), then admits
//! the request when the cost still held plus its own stays within `limit`,
//! appending it to the log. A denied request is told exactly when enough of
//! the oldest entries will have slid out for it to fit.
//!
//! # State (48 bytes + 16 bytes per entry)
//!
//! The log (a `VecDeque` of `(time, cost)` pairs), the sum of the costs in it
//! (`used`) and the latest time the key was checked at (`latest`). Each entry
//! has a cost of at least 1 and the costs held never exceed `limit`, so the
//! log holds at most `limit` entries — which is why the policy caps the limit
//! of this algorithm at [`MAX_LOG_LIMIT`]. The default (empty log) is an idle
//! key.
//!
//! `latest` makes a clock stepping back harmless: a `now` before it is
//! treated as `latest`, so requests are logged (and evicted) on a timeline
//! that never runs backwards. The newest entry alone would not do: a check
//! that admits nothing (a denial, or a log emptied by eviction) leaves no
//! entry at its time, and a request logged after a step back at the older,
//! earlier time would slide out of the window early and let extra requests
//! in later.
//!
//! # Trade-offs
//!
//! - Bursts: none beyond the limit: every window `(t - window, t]` holds at
//!   most `limit`, at any `t`. The whole limit can still go at once.
//! - Exactness: exact — the reference the other algorithms approximate.
//! - Memory: proportional to the limit (one entry per admitted request), and
//!   checks cost O(entries evicted) plus, when denied, O(entries) to find the
//!   retry time. The others keep one to three integers.
//!
//! # Lua port
//!
//! The Redis store runs a Lua port of this function, which must mirror it
//! exactly: integer arithmetic only (no floats), every value below 2^53, the
//! entries in the same order and evicted by the same comparison.
//!
//! [`MAX_LOG_LIMIT`]: super::policy::MAX_LOG_LIMIT

use std::collections::VecDeque;

use super::{Cost, Decision, Quota, Timestamp};

/// The log of one key. The default is an empty log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The admitted requests still in the window, oldest first: when each
    /// was logged and its cost.
    pub entries: VecDeque<(Timestamp, u64)>,
    /// The sum of the costs in `entries`.
    pub used: u64,
    /// The latest time the key was checked at.
    pub latest: Timestamp,
}

/// Decides one request of `cost` at `now`, updating `state`.
pub fn check(state: &mut State, quota: &Quota, now: Timestamp, cost: Cost) -> Decision {
    let limit = quota.limit();
    let window = quota.window_us();
    let cost = cost.get();
    let now_us = now.as_micros();

    // A clock stepping back counts as the latest time seen.
    let now_e = now_us.max(state.latest.as_micros());
    state.latest = Timestamp::from_micros(now_e);
    let expiry = |at: Timestamp| at.as_micros().saturating_add(window);

    // Drop the entries that have slid out of (now - window, now].
    while let Some(&(at, units)) = state.entries.front() {
        if expiry(at) > now_e {
            break;
        }
        state.entries.pop_front();
        state.used = state.used.saturating_sub(units);
    }

    let allowed = state.used.saturating_add(cost) <= limit;
    let retry_after_us = if allowed {
        state.entries.push_back((state.latest, cost));
        state.used += cost;
        0
    } else if cost > limit {
        u64::MAX
    } else {
        // The oldest entries whose costs, once evicted, make room.
        let need = state.used.saturating_add(cost) - limit;
        let mut freed = 0u64;
        state
            .entries
            .iter()
            .find(|&&(_, units)| {
                freed = freed.saturating_add(units);
                freed >= need
            })
            .map_or(u64::MAX, |&(at, _)| expiry(at).saturating_sub(now_us))
    };
    let reset_after_us = state
        .entries
        .back()
        .map_or(0, |&(at, _)| expiry(at).saturating_sub(now_us));
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
        *Policy::new(Algorithm::SlidingWindowLog, limit, window).unwrap().quota()
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
        for dt in [0, 1, w / 3, w / 2, w - 1, w, w + 1, 2 * w] {
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
    fn fresh_key() {
        let q = quota(10, Duration::from_secs(1));
        for now in [0, 1, 999_999, REAL, 1 << 53] {
            let mut s = State::default();
            let d = check(&mut s, &q, t(now), Cost::ONE);
            assert!(d.allowed);
            assert_eq!(d.remaining, 9);
            assert_eq!(d.limit, 10);
            assert_eq!(d.at, t(now));
            assert_eq!(d.retry_after_us, 0);
            assert_eq!(d.reset_after_us, 1_000_000);
            assert_eq!(s.entries, [(t(now), 1)]);
        }
    }

    #[test]
    fn exhaust_then_denied_until_the_oldest_slides_out() {
        let q = quota(3, Duration::from_secs(1));
        let mut s = State::default();
        assert!(check(&mut s, &q, t(REAL), Cost::ONE).allowed);
        let d = check(&mut s, &q, t(REAL + 200_000), c(2));
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.reset_after_us, 1_000_000);
        let d = check(&mut s, &q, t(REAL + 500_000), Cost::ONE);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after_us, 500_000);
        assert_eq!(d.reset_after_us, 700_000);
        // Two units need the second entry gone too.
        let d = check(&mut s, &q, t(REAL + 500_000), c(2));
        assert_eq!(d.retry_after_us, 700_000);
        // The window is (now - window, now]: an entry leaves at exactly +window.
        assert!(!check(&mut s, &q, t(REAL + 999_999), Cost::ONE).allowed);
        let d = check(&mut s, &q, t(REAL + 1_000_000), Cost::ONE);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert!(!check(&mut s, &q, t(REAL + 1_199_999), c(2)).allowed);
        assert!(check(&mut s, &q, t(REAL + 1_200_000), c(2)).allowed);
        assert_eq!(s.entries.len(), 2);
        assert_eq!(s.used, 3);
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
        assert_eq!(d.retry_after_us, 10_000_000);
        assert_eq!(s, before);
        let d = check(&mut s, &q, t(REAL), c(6));
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
        assert!(s.entries.is_empty());
    }

    #[test]
    fn long_idle_restores_fully_without_overflow() {
        let q = quota(1_000, Duration::from_secs(366 * 86_400));
        let mut s = State::default();
        check(&mut s, &q, t(0), c(1_000));
        assert!(check(&mut s, &q, t((1 << 53) - 1), c(1_000)).allowed);
        assert_eq!(s.entries.len(), 1);
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
        assert_eq!(s.entries.len(), 100);
    }

    #[test]
    fn clock_going_backwards_mints_nothing() {
        let q = quota(10, Duration::from_secs(10));
        let mut s = State::default();
        assert!(check(&mut s, &q, t(100_000_000), c(10)).allowed);
        let d = check(&mut s, &q, t(50_000_000), Cost::ONE);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_us, 60_000_000);
        assert!(!check(&mut s, &q, t(100_000_000), Cost::ONE).allowed);
        assert!(!check(&mut s, &q, t(109_999_999), Cost::ONE).allowed);
        assert!(check(&mut s, &q, t(110_000_000), Cost::ONE).allowed);
    }

    #[test]
    fn a_step_back_after_a_denial_logs_at_the_latest_time() {
        let q = quota(2, Duration::from_secs(1));
        let mut s = State::default();
        assert!(check(&mut s, &q, t(REAL), Cost::ONE).allowed);
        assert!(!check(&mut s, &q, t(REAL + 999_000), c(2)).allowed);
        // Stepping back 499ms: logged at REAL + 999ms, not REAL + 500ms.
        assert!(check(&mut s, &q, t(REAL + 500_000), Cost::ONE).allowed);
        assert_eq!(s.entries.back(), Some(&(t(REAL + 999_000), 1)));
        // So at REAL + 1.5s one unit is still held.
        assert!(!check(&mut s, &q, t(REAL + 1_500_000), c(2)).allowed);
        assert!(check(&mut s, &q, t(REAL + 1_999_000), c(2)).allowed);
    }

    #[test]
    fn a_denial_consumes_nothing() {
        let q = quota(7, Duration::from_millis(700));
        let mut s = State::default();
        check(&mut s, &q, t(REAL), c(2));
        check(&mut s, &q, t(REAL + 100_000), c(4));
        let before = s.clone();
        let now = REAL + 750_000;
        let d = check(&mut s, &q, t(now), c(5));
        assert!(!d.allowed);
        assert_eq!(d.retry_after_us, 50_000);
        assert_eq!(s.entries.len(), 1);
        assert_equivalent(&before, &s, &q, now);
    }

    #[test]
    fn never_panics_on_extreme_input() {
        let q = quota(100_000, Duration::from_secs(366 * 86_400));
        let q1 = quota(1, Duration::from_millis(1));
        let values = [0, 1, 1 << 53, u64::MAX];
        for at in values {
            for used in values {
                for latest in values {
                    for now in values {
                        for cost in [1, 100_000, u64::MAX] {
                            for q in [&q, &q1] {
                                let mut s = State {
                                    entries: [(t(at), used), (t(0), u64::MAX)].into(),
                                    used,
                                    latest: t(latest),
                                };
                                check(&mut s, q, t(now), c(cost));
                                check(&mut State::default(), q, t(now), c(cost));
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn state_is_small_without_entries() {
        assert_eq!(std::mem::size_of::<State>(), 48);
        assert_eq!(std::mem::size_of::<(Timestamp, u64)>(), 16);
    }
}
