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
    //! The edge cases shared by all algorithms are in `core::shared_edges`.

    use super::*;
    use crate::core::test_support::{assert_equivalent, c, policy, quota, t, REAL};
    use crate::core::{Algorithm, State as AnyState};
    use std::time::Duration;

    #[test]
    fn exhaust_then_denied_until_the_oldest_slides_out() {
        let q = quota(Algorithm::SlidingWindowLog, 3, Duration::from_secs(1));
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
    fn a_step_back_after_a_denial_logs_at_the_latest_time() {
        let q = quota(Algorithm::SlidingWindowLog, 2, Duration::from_secs(1));
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
    fn a_denial_after_an_eviction_consumes_nothing() {
        let p = policy(Algorithm::SlidingWindowLog, 7, Duration::from_millis(700));
        let q = p.quota();
        let mut s = State::default();
        check(&mut s, q, t(REAL), c(2));
        check(&mut s, q, t(REAL + 100_000), c(4));
        let before = s.clone();
        let now = REAL + 750_000;
        let d = check(&mut s, q, t(now), c(5));
        assert!(!d.allowed);
        assert_eq!(d.retry_after_us, 50_000);
        assert_eq!(s.entries.len(), 1);
        assert_equivalent(
            &p,
            &AnyState::SlidingWindowLog(before),
            &AnyState::SlidingWindowLog(s),
            now,
        );
    }

    #[test]
    fn log_entry_is_small() {
        assert_eq!(std::mem::size_of::<(Timestamp, u64)>(), 16);
    }
}
