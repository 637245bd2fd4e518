//! Concurrency: at most `limit` units of work in flight per key, each held
//! by a lease.
//!
//! # How it works
//!
//! An allowed check of cost `c` takes a lease of `c` units that expires
//! `lease_ttl` (the quota's window) later. A check is allowed while the
//! units of the unexpired leases plus its cost fit in the limit. A lease
//! ends when it is released ([`release`]), or when it expires: leases past
//! their expiry are dropped at the next check of the key, so a client that
//! crashed holding one never holds capacity longer than `lease_ttl`.
//! [`renew`] moves an unexpired lease's expiry to `lease_ttl` from now.
//!
//! # State
//!
//! The leases, each its expiry, its number (chosen by the caller: the
//! stores pass the number the lease's token carries) and its units; at
//! most `limit` of them, so memory is bounded by the limit.
//!
//! # Numbers
//!
//! `remaining` is the units free now; `reset_after_us` is when the last
//! lease expires; a denial's `retry_after_us` is when enough leases expire
//! for the cost to fit — an upper bound, since leases may be released
//! sooner.
//!
//! # Lua port
//!
//! The Redis store keeps the leases in a sorted set by expiry
//! (`lua/concurrency.lua`); its members are `<number>:<units>`.

use super::{Cost, Decision, Quota, Timestamp};

/// One key's leases. The default holds none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// `(expires_at, number, units)`, in no particular order.
    pub leases: Vec<(Timestamp, u64, u64)>,
}

/// Decides one request of `cost` at `now` with lease number 0 (see
/// [`acquire`]).
pub fn check(state: &mut State, quota: &Quota, now: Timestamp, cost: Cost) -> Decision {
    acquire(state, quota, now, cost, 0)
}

/// Decides one request of `cost` at `now`: when its units fit beside the
/// unexpired leases, it takes lease `number` until `now + lease_ttl`.
/// Expired leases are dropped first.
pub fn acquire(state: &mut State, quota: &Quota, now: Timestamp, cost: Cost, number: u64) -> Decision {
    let limit = quota.limit();
    let cost = cost.get();
    state.leases.retain(|&(expires_at, _, _)| expires_at > now);
    let used: u64 = state.leases.iter().map(|&(_, _, units)| units).sum();
    let allowed = used.saturating_add(cost) <= limit;
    let retry_after_us = if allowed {
        state.leases.push((now.plus(quota.window_us()), number, cost));
        0
    } else if cost > limit {
        u64::MAX
    } else {
        // The earliest expiry after which enough units are free.
        let mut expiries: Vec<(Timestamp, u64)> = state.leases.iter().map(|&(at, _, units)| (at, units)).collect();
        expiries.sort_unstable();
        let mut held = used;
        let mut wait = 0;
        for (at, units) in expiries {
            held -= units;
            if held + cost <= limit {
                wait = at.as_micros().saturating_sub(now.as_micros());
                break;
            }
        }
        wait
    };
    let used = if allowed { used + cost } else { used };
    Decision {
        allowed,
        limit,
        remaining: limit.saturating_sub(used),
        reset_after_us: last_expiry(state).map_or(0, |at| at.as_micros().saturating_sub(now.as_micros())),
        retry_after_us,
        at: now,
    }
}

/// Ends lease `number`; whether it was held (unexpired at `now`).
pub fn release(state: &mut State, now: Timestamp, number: u64) -> bool {
    let held = state.leases.iter().any(|&(at, n, _)| n == number && at > now);
    state.leases.retain(|&(at, n, _)| n != number && at > now);
    held
}

/// Extends lease `number` to `lease_ttl` from `now`; its new expiry, or
/// `None` when it is not held (released, or expired at `now`).
pub fn renew(state: &mut State, quota: &Quota, now: Timestamp, number: u64) -> Option<Timestamp> {
    state.leases.retain(|&(at, _, _)| at > now);
    let lease = state.leases.iter_mut().find(|(_, n, _)| *n == number)?;
    lease.0 = now.plus(quota.window_us());
    Some(lease.0)
}

/// When the last lease expires.
pub fn last_expiry(state: &State) -> Option<Timestamp> {
    state.leases.iter().map(|&(at, _, _)| at).max()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::core::test_support::{c, quota, t, REAL};
    use crate::core::Algorithm;

    fn q(limit: u64) -> Quota {
        quota(Algorithm::Concurrency, limit, Duration::from_secs(30))
    }

    #[test]
    fn at_most_limit_in_flight_until_released() {
        let q = q(3);
        let mut s = State::default();
        for (n, left) in [(1, 2), (2, 1), (3, 0)] {
            let d = acquire(&mut s, &q, t(REAL), Cost::ONE, n);
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
            assert_eq!(d.reset_after_us, 30_000_000);
        }
        let d = acquire(&mut s, &q, t(REAL + 5), Cost::ONE, 4);
        assert!(!d.allowed);
        // An upper bound: the first lease's expiry.
        assert_eq!(d.retry_after_us, 30_000_000 - 5);
        assert!(release(&mut s, t(REAL + 6), 2));
        assert!(!release(&mut s, t(REAL + 6), 2), "a release is idempotent");
        assert!(acquire(&mut s, &q, t(REAL + 7), Cost::ONE, 5).allowed);
        assert_eq!(s.leases.len(), 3);
    }

    #[test]
    fn expired_leases_are_reclaimed_by_the_next_acquire() {
        let q = q(2);
        let mut s = State::default();
        assert!(acquire(&mut s, &q, t(REAL), c(2), 1).allowed);
        assert!(!acquire(&mut s, &q, t(REAL + 29_999_999), Cost::ONE, 2).allowed);
        let d = acquire(&mut s, &q, t(REAL + 30_000_000), Cost::ONE, 3);
        assert!(d.allowed);
        assert_eq!(s.leases, [(t(REAL + 60_000_000), 3, 1)]);
        assert!(!release(&mut s, t(REAL + 60_000_000), 3), "expired at its expiry");
    }

    #[test]
    fn a_denial_waits_for_enough_units_and_a_cost_above_the_limit_never_fits() {
        let q = q(4);
        let mut s = State::default();
        assert!(acquire(&mut s, &q, t(REAL), c(2), 1).allowed);
        assert!(acquire(&mut s, &q, t(REAL + 10), c(2), 2).allowed);
        let d = acquire(&mut s, &q, t(REAL + 20), c(3), 3);
        assert_eq!((d.allowed, d.retry_after_us), (false, 30_000_000 - 10));
        let d = acquire(&mut s, &q, t(REAL + 20), c(5), 3);
        assert_eq!((d.allowed, d.retry_after_us), (false, u64::MAX));
        assert_eq!(s.leases.len(), 2);
    }

    #[test]
    fn renew_extends_only_a_held_lease() {
        let q = q(1);
        let mut s = State::default();
        assert!(acquire(&mut s, &q, t(REAL), Cost::ONE, 9).allowed);
        assert_eq!(renew(&mut s, &q, t(REAL + 20_000_000), 9), Some(t(REAL + 50_000_000)));
        assert!(!acquire(&mut s, &q, t(REAL + 40_000_000), Cost::ONE, 10).allowed);
        assert_eq!(renew(&mut s, &q, t(REAL + 50_000_000), 9), None);
        assert_eq!(renew(&mut s, &q, t(REAL), 8), None);
    }
}
