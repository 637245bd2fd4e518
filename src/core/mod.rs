//! The rate-limiting algorithms, as pure functions.
//!
//! Every algorithm is a function of (state, now, cost, quota) → decision,
//! writing the new state in place. Nothing here does I/O, reads a clock,
//! allocates per call (except the log's entries) or can fail: invalid quotas
//! and costs cannot be constructed (see [`policy`]), and time is a parameter
//! (see [`clock`]). The stores wrap these functions: the memory store calls
//! them under a per-key lock; the Redis store runs Lua ports of them.
//!
//! Rules shared by all five algorithms:
//! - A denied request consumes nothing: the state after a denial is
//!   equivalent to the state before it.
//! - Time never runs backwards for a key: a `now` earlier than the time the
//!   state last saw is treated as that time, so a clock stepping back cannot
//!   mint capacity.
//! - `remaining` is how many more cost-1 requests would be allowed at this
//!   instant; `retry_after_us` is exactly when the denied cost would fit (0
//!   when allowed); `reset_after_us` is when the key is fully restored, which
//!   is also when its state can be forgotten.

pub mod clock;
pub mod fixed_window;
pub mod gcra;
pub mod policy;
pub mod sliding_window_counter;
pub mod sliding_window_log;
pub mod token_bucket;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use policy::{Algorithm, Cost, Policy, PolicyError, Quota};

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The quota's limit.
    pub limit: u64,
    /// Cost-1 requests that would still be allowed now; never negative.
    pub remaining: u64,
    /// Microseconds until the key is fully restored (as if never used).
    pub reset_after_us: u64,
    /// Microseconds until the denied cost would be allowed; 0 when allowed.
    pub retry_after_us: u64,
    /// The time the decision was made at.
    pub at: Timestamp,
}

/// The per-key state of any algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    TokenBucket(token_bucket::State),
    SlidingWindowLog(sliding_window_log::State),
    SlidingWindowCounter(sliding_window_counter::State),
    FixedWindow(fixed_window::State),
    Gcra(gcra::State),
}

impl State {
    /// The state of a key never seen before.
    pub fn new(algorithm: Algorithm) -> State {
        match algorithm {
            Algorithm::TokenBucket => State::TokenBucket(Default::default()),
            Algorithm::SlidingWindowLog => State::SlidingWindowLog(Default::default()),
            Algorithm::SlidingWindowCounter => State::SlidingWindowCounter(Default::default()),
            Algorithm::FixedWindow => State::FixedWindow(Default::default()),
            Algorithm::Gcra => State::Gcra(Default::default()),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            State::TokenBucket(_) => Algorithm::TokenBucket,
            State::SlidingWindowLog(_) => Algorithm::SlidingWindowLog,
            State::SlidingWindowCounter(_) => Algorithm::SlidingWindowCounter,
            State::FixedWindow(_) => Algorithm::FixedWindow,
            State::Gcra(_) => Algorithm::Gcra,
        }
    }
}

/// Decides one request of `cost` at `now` under `policy`, updating `state`.
///
/// A state kept for another algorithm (the rule's algorithm was changed) is
/// replaced by a fresh one.
pub fn check(policy: &Policy, state: &mut State, now: Timestamp, cost: Cost) -> Decision {
    if state.algorithm() != policy.algorithm() {
        *state = State::new(policy.algorithm());
    }
    let quota = policy.quota();
    match state {
        State::TokenBucket(s) => token_bucket::check(s, quota, now, cost),
        State::SlidingWindowLog(s) => sliding_window_log::check(s, quota, now, cost),
        State::SlidingWindowCounter(s) => sliding_window_counter::check(s, quota, now, cost),
        State::FixedWindow(s) => fixed_window::check(s, quota, now, cost),
        State::Gcra(s) => gcra::check(s, quota, now, cost),
    }
}
