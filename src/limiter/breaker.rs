//! A circuit breaker around the shared store.
//!
//! Closed: calls go through; `failures` consecutive transient failures open
//! it. Open: calls are refused at once (the caller applies its failure mode
//! without paying the store timeout) until `open_for` has passed. Then one
//! call at a time is let through as a probe (half-open): success closes the
//! breaker, failure opens it for another `open_for`. Time comes from the
//! given [`Clock`], so tests drive it without sleeping.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::core::{Clock, Timestamp};

/// What the breaker lets a caller do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Call the store.
    Call,
    /// Call the store as the half-open probe; report the result.
    Probe,
    /// Do not call the store.
    Reject,
}

/// The breaker's state, as exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    HalfOpen,
    Open,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }

    /// 0 closed, 1 half-open, 2 open (the metric's value).
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Inner {
    Closed { consecutive: u32 },
    Open { until: Timestamp },
    HalfOpen { probing: bool },
}

/// Consecutive-failure circuit breaker.
pub struct Breaker {
    failures: u32,
    open_for_us: u64,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

impl Breaker {
    /// Opens after `failures` consecutive failures (at least 1), for `open_for`.
    pub fn new(failures: u32, open_for: Duration, clock: Arc<dyn Clock>) -> Breaker {
        Breaker {
            failures: failures.max(1),
            open_for_us: u64::try_from(open_for.as_micros()).unwrap_or(u64::MAX),
            clock,
            inner: Mutex::new(Inner::Closed { consecutive: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether (and how) the next call may go to the store.
    pub fn permit(&self) -> Permit {
        let mut inner = self.lock();
        match *inner {
            Inner::Closed { .. } => Permit::Call,
            Inner::Open { until } if self.clock.now() < until => Permit::Reject,
            Inner::Open { .. } | Inner::HalfOpen { probing: false } => {
                *inner = Inner::HalfOpen { probing: true };
                Permit::Probe
            }
            Inner::HalfOpen { probing: true } => Permit::Reject,
        }
    }

    /// The store answered.
    pub fn on_success(&self) {
        *self.lock() = Inner::Closed { consecutive: 0 };
    }

    /// The store failed (timeouts, lost connections: transient failures).
    pub fn on_failure(&self) {
        let mut inner = self.lock();
        let open = Inner::Open {
            until: self.clock.now().plus(self.open_for_us),
        };
        *inner = match *inner {
            Inner::Closed { consecutive } if consecutive + 1 < self.failures => Inner::Closed {
                consecutive: consecutive + 1,
            },
            Inner::Closed { .. } | Inner::HalfOpen { .. } => open,
            Inner::Open { until } => Inner::Open { until },
        };
    }

    /// A probe was abandoned without a result (e.g. its future dropped).
    pub fn release_probe(&self) {
        let mut inner = self.lock();
        if let Inner::HalfOpen { probing: true } = *inner {
            *inner = Inner::HalfOpen { probing: false };
        }
    }

    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if self.clock.now() < until => BreakerState::Open,
            Inner::Open { .. } | Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ManualClock;

    fn breaker() -> (Arc<ManualClock>, Breaker) {
        let clock = Arc::new(ManualClock::new(Timestamp::from_micros(1_000_000)));
        (clock.clone(), Breaker::new(3, Duration::from_secs(2), clock))
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let (_, b) = breaker();
        b.on_failure();
        b.on_failure();
        b.on_success(); // resets the count
        b.on_failure();
        b.on_failure();
        assert_eq!((b.permit(), b.state()), (Permit::Call, BreakerState::Closed));
        b.on_failure();
        assert_eq!((b.permit(), b.state()), (Permit::Reject, BreakerState::Open));
    }

    #[test]
    fn half_opens_with_one_probe_and_closes_on_success() {
        let (clock, b) = breaker();
        for _ in 0..3 {
            b.on_failure();
        }
        clock.advance(Duration::from_millis(1999));
        assert_eq!(b.permit(), Permit::Reject);
        clock.advance(Duration::from_millis(1));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.permit(), Permit::Probe);
        assert_eq!(b.permit(), Permit::Reject, "one probe at a time");
        b.on_success();
        assert_eq!((b.permit(), b.state()), (Permit::Call, BreakerState::Closed));
    }

    #[test]
    fn a_failed_probe_reopens_for_another_period() {
        let (clock, b) = breaker();
        for _ in 0..3 {
            b.on_failure();
        }
        clock.advance(Duration::from_secs(2));
        assert_eq!(b.permit(), Permit::Probe);
        b.on_failure();
        assert_eq!((b.permit(), b.state()), (Permit::Reject, BreakerState::Open));
        clock.advance(Duration::from_secs(2));
        assert_eq!(b.permit(), Permit::Probe);
        b.release_probe();
        assert_eq!(b.permit(), Permit::Probe, "an abandoned probe frees the slot");
    }
}
