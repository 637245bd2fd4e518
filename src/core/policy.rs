//! The validated description of a limit: which [`Algorithm`], how much
//! ([`Quota`]) and what one request consumes ([`Cost`]).
//!
//! These types are built once, when the rules are loaded or a request is
//! parsed, and cannot hold an invalid value afterwards: the algorithms never
//! check for a zero limit, a zero window or a zero cost.

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;
use std::time::Duration;

/// The largest limit a rule may have.
pub const MAX_LIMIT: u64 = 1_000_000_000;
/// The longest window a rule may have (366 days).
pub const MAX_WINDOW: Duration = Duration::from_secs(366 * 24 * 3600);
/// The largest limit of a `sliding_window_log` rule: it keeps one entry per
/// admitted request, so its limit bounds the memory of every key.
pub const MAX_LOG_LIMIT: u64 = 100_000;
/// `sliding_window_counter` multiplies counts by milliseconds; the product
/// must stay exact in a double (2^53), which is what a Lua script computes in.
pub const MAX_COUNTER_PRODUCT: u64 = 1 << 53;

/// The algorithms a limit can use: five rate algorithms, and
/// `concurrency`, which limits work in flight (leases) rather than a rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    TokenBucket,
    SlidingWindowLog,
    SlidingWindowCounter,
    FixedWindow,
    Gcra,
    /// At most `limit` units in flight at once, each held by a lease that
    /// expires after the quota's window (the limit's `lease_ttl`) unless
    /// released or renewed first.
    Concurrency,
}

impl Algorithm {
    /// Every algorithm a configuration may name.
    pub const EVERY: [Algorithm; 6] = [
        Algorithm::TokenBucket,
        Algorithm::SlidingWindowLog,
        Algorithm::SlidingWindowCounter,
        Algorithm::FixedWindow,
        Algorithm::Gcra,
        Algorithm::Concurrency,
    ];

    /// The five rate algorithms (every one but `concurrency`).
    pub const ALL: [Algorithm; 5] = [
        Algorithm::TokenBucket,
        Algorithm::SlidingWindowLog,
        Algorithm::SlidingWindowCounter,
        Algorithm::FixedWindow,
        Algorithm::Gcra,
    ];

    /// Whether a report (a charge after the work, or a refund) can move
    /// this algorithm's state. The sliding window log cannot: it keeps an
    /// entry per admitted cost, so a debt would add entries without bound
    /// and a refund would have to choose whose entries to give back.
    pub const fn reports(self) -> bool {
        !matches!(self, Algorithm::SlidingWindowLog | Algorithm::Concurrency)
    }

    /// Whether an allowed check holds a lease to release (`concurrency`).
    pub const fn leases(self) -> bool {
        matches!(self, Algorithm::Concurrency)
    }

    /// The name used in configuration files and API responses.
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::TokenBucket => "token_bucket",
            Algorithm::SlidingWindowLog => "sliding_window_log",
            Algorithm::SlidingWindowCounter => "sliding_window_counter",
            Algorithm::FixedWindow => "fixed_window",
            Algorithm::Gcra => "gcra",
            Algorithm::Concurrency => "concurrency",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An algorithm name that is not one of [`Algorithm::EVERY`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown algorithm {0:?} (expected one of token_bucket, sliding_window_log, sliding_window_counter, fixed_window, gcra, concurrency)")]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::EVERY
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownAlgorithm(s.to_owned()))
    }
}

/// How much may pass: `limit` units per `window`.
///
/// For the window algorithms the window is the counting period; for
/// `token_bucket` and `gcra` it is the time an empty bucket takes to refill
/// completely, so the rate is `limit / window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    limit: NonZeroU64,
    window_us: NonZeroU64,
}

impl Quota {
    pub const fn limit(&self) -> u64 {
        self.limit.get()
    }

    /// The window in microseconds (always a whole number of milliseconds).
    pub const fn window_us(&self) -> u64 {
        self.window_us.get()
    }

    pub const fn window_ms(&self) -> u64 {
        self.window_us.get() / 1_000
    }

    pub fn window(&self) -> Duration {
        Duration::from_micros(self.window_us.get())
    }

    /// Microseconds to earn back one unit in `token_bucket` and `gcra`:
    /// `window / limit`, rounded up so that rounding can only slow the
    /// refill, never speed it up. At least 1.
    pub const fn emission_interval_us(&self) -> u64 {
        self.window_us.get().div_ceil(self.limit.get())
    }
}

/// Why a limit and window cannot make a [`Policy`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("limit must be at least 1")]
    ZeroLimit,
    #[error("limit must be at most {MAX_LIMIT}")]
    LimitTooLarge,
    #[error("window must be at least 1ms")]
    WindowTooShort,
    #[error("window must be a whole number of milliseconds")]
    WindowNotWholeMillis,
    #[error("window must be at most 366 days")]
    WindowTooLong,
    #[error("{algorithm} refills one unit every window/limit, which must be at least 1µs: a window of {window_us}µs allows a limit of at most {window_us}")]
    RateTooHigh { algorithm: Algorithm, window_us: u64 },
    #[error("sliding_window_log keeps one entry per request: its limit must be at most {MAX_LOG_LIMIT}")]
    LogTooLarge,
    #[error("concurrency keeps one entry per lease: its limit must be at most {MAX_LOG_LIMIT}")]
    TooManyLeases,
    #[error("sliding_window_counter needs limit × window in milliseconds to be at most 2^53 (got {product})")]
    CounterTooLarge { product: u128 },
}

impl PolicyError {
    /// The configuration field the error is about.
    pub const fn field(&self) -> &'static str {
        match self {
            PolicyError::ZeroLimit
            | PolicyError::LimitTooLarge
            | PolicyError::RateTooHigh { .. }
            | PolicyError::LogTooLarge
            | PolicyError::TooManyLeases
            | PolicyError::CounterTooLarge { .. } => "limit",
            PolicyError::WindowTooShort | PolicyError::WindowNotWholeMillis | PolicyError::WindowTooLong => "window",
        }
    }
}

/// An algorithm with its quota: everything needed to decide a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    algorithm: Algorithm,
    quota: Quota,
}

impl Policy {
    pub fn new(algorithm: Algorithm, limit: u64, window: Duration) -> Result<Policy, PolicyError> {
        let limit = NonZeroU64::new(limit).ok_or(PolicyError::ZeroLimit)?;
        if limit.get() > MAX_LIMIT {
            return Err(PolicyError::LimitTooLarge);
        }
        if window < Duration::from_millis(1) {
            return Err(PolicyError::WindowTooShort);
        }
        if !window.subsec_nanos().is_multiple_of(1_000_000) {
            return Err(PolicyError::WindowNotWholeMillis);
        }
        if window > MAX_WINDOW {
            return Err(PolicyError::WindowTooLong);
        }
        let window_us = u64::try_from(window.as_micros()).map_err(|_| PolicyError::WindowTooLong)?;
        let window_us = NonZeroU64::new(window_us).ok_or(PolicyError::WindowTooShort)?;
        match algorithm {
            Algorithm::TokenBucket | Algorithm::Gcra if limit.get() > window_us.get() => {
                return Err(PolicyError::RateTooHigh {
                    algorithm,
                    window_us: window_us.get(),
                });
            }
            Algorithm::SlidingWindowLog if limit.get() > MAX_LOG_LIMIT => {
                return Err(PolicyError::LogTooLarge);
            }
            Algorithm::Concurrency if limit.get() > MAX_LOG_LIMIT => {
                return Err(PolicyError::TooManyLeases);
            }
            Algorithm::SlidingWindowCounter => {
                let product = u128::from(limit.get()) * u128::from(window_us.get() / 1_000);
                if product > u128::from(MAX_COUNTER_PRODUCT) {
                    return Err(PolicyError::CounterTooLarge { product });
                }
            }
            _ => {}
        }
        Ok(Policy {
            algorithm,
            quota: Quota { limit, window_us },
        })
    }

    pub const fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub const fn quota(&self) -> &Quota {
        &self.quota
    }

    pub const fn limit(&self) -> u64 {
        self.quota.limit()
    }
}

/// Units one request consumes: at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cost(NonZeroU64);

impl Cost {
    pub const ONE: Cost = Cost(NonZeroU64::MIN);

    pub const fn new(units: u64) -> Option<Cost> {
        match NonZeroU64::new(units) {
            Some(n) => Some(Cost(n)),
            None => None,
        }
    }

    pub const fn get(self) -> u64 {
        self.0.get()
    }
}

/// Units a report charges after the work (positive: taken even past the
/// limit, a debt) or gives back (negative: a refund, never beyond full):
/// never 0, at most [`Units::MAX`] either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Units(i64);

impl Units {
    /// The largest charge or refund of one report: 2^31 units.
    pub const MAX: u64 = 1 << 31;

    pub const fn new(units: i64) -> Option<Units> {
        if units == 0 || units.unsigned_abs() > Units::MAX {
            return None;
        }
        Some(Units(units))
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    /// How many units, charged or given back.
    pub const fn magnitude(self) -> u64 {
        self.0.unsigned_abs()
    }

    pub const fn is_refund(self) -> bool {
        self.0 < 0
    }
}

/// How far a report's debt can reach, in microseconds (or, for the window
/// algorithms, in units): 2^50, about 35 years. Debt beyond it saturates,
/// so that every number the Lua ports handle stays exact in a double.
pub const MAX_DEBT: u64 = 1 << 50;

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn algorithm_names_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(a.as_str().parse::<Algorithm>(), Ok(a));
        }
        assert!("leaky".parse::<Algorithm>().is_err());
    }

    #[test]
    fn invalid_policies_name_their_field() {
        let cases = [
            (Policy::new(Algorithm::FixedWindow, 0, secs(1)), "limit"),
            (Policy::new(Algorithm::FixedWindow, MAX_LIMIT + 1, secs(1)), "limit"),
            (Policy::new(Algorithm::FixedWindow, 1, Duration::ZERO), "window"),
            (
                Policy::new(Algorithm::FixedWindow, 1, Duration::from_micros(1500)),
                "window",
            ),
            (Policy::new(Algorithm::FixedWindow, 1, secs(367 * 86_400)), "window"),
            (Policy::new(Algorithm::TokenBucket, 2_000_000, secs(1)), "limit"),
            (Policy::new(Algorithm::Gcra, 2_000_000, secs(1)), "limit"),
            (
                Policy::new(Algorithm::SlidingWindowLog, MAX_LOG_LIMIT + 1, secs(1)),
                "limit",
            ),
            (
                Policy::new(Algorithm::SlidingWindowCounter, MAX_LIMIT, secs(366 * 86_400)),
                "limit",
            ),
        ];
        for (result, field) in cases {
            assert_eq!(result.unwrap_err().field(), field);
        }
    }

    #[test]
    fn emission_interval_rounds_up() {
        let p = Policy::new(Algorithm::TokenBucket, 3, secs(10)).unwrap();
        assert_eq!(p.quota().emission_interval_us(), 3_333_334);
        let p = Policy::new(Algorithm::Gcra, 1_000_000, secs(1)).unwrap();
        assert_eq!(p.quota().emission_interval_us(), 1);
    }

    #[test]
    fn cost_is_never_zero() {
        assert_eq!(Cost::new(0), None);
        assert_eq!(Cost::new(3).map(Cost::get), Some(3));
        assert_eq!(Cost::ONE.get(), 1);
    }
}
