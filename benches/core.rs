//! Criterion benchmarks of the decision core: one step of each algorithm,
//! and the memory store's check.
//!
//! - `algorithm/<name>/<limit>/allowed`: one check of a key that keeps being
//!   admitted. Time moves on by two emission intervals (`2 × window / limit`)
//!   per check, so the key runs at half its rate and every check is allowed
//!   (asserted on a warm-up before measuring); the sliding window log then
//!   holds about `limit / 2` entries and evicts one per check.
//! - `algorithm/<name>/<limit>/denied`: one check of a key whose whole limit
//!   was spent at the same instant, so every check is denied and changes
//!   nothing (for a cost of 1 the log finds the retry time at its oldest
//!   entry, so its denial does not grow with the limit either).
//! - `memory_store/…`: [`MemoryStore::check_now`] on a `ManualClock` (no
//!   clock read), rule `default`, a token bucket of a billion per hour:
//!   `one_key` (always the same entry), `100k_keys` (cycling over 100,000
//!   keys already in the map) and `one_key_denied`.
//!
//! Limits 100 and 1000 per second for every algorithm. Time is given, never
//! read. `cargo bench --bench core`; under `cargo test --all-targets` each
//! benchmark runs once, as a test.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ratelimiter::core::{
    fixed_window, gcra, sliding_window_counter, sliding_window_log, token_bucket, Algorithm, Cost, Decision,
    ManualClock, Policy, Quota, Timestamp,
};
use ratelimiter::store::memory::MemoryStore;
use ratelimiter::store::StoreKey;

/// 2026-01-01T00:00:00Z, in µs: a realistic, window-aligned starting time.
const START: u64 = 1_767_225_600_000_000;
const WINDOW: Duration = Duration::from_secs(1);
const LIMITS: [u64; 2] = [100, 1000];

fn policy(algorithm: Algorithm, limit: u64, window: Duration) -> Policy {
    Policy::new(algorithm, limit, window).expect("a valid policy")
}

/// One algorithm's `check` over its own state type, behind one signature.
trait Step {
    type State: Default + Clone;
    fn check(state: &mut Self::State, quota: &Quota, now: Timestamp, cost: Cost) -> Decision;
}

macro_rules! step {
    ($name:ident, $module:ident) => {
        struct $name;
        impl Step for $name {
            type State = $module::State;
            fn check(state: &mut Self::State, quota: &Quota, now: Timestamp, cost: Cost) -> Decision {
                $module::check(state, quota, now, cost)
            }
        }
    };
}

step!(TokenBucket, token_bucket);
step!(Gcra, gcra);
step!(FixedWindow, fixed_window);
step!(SlidingWindowCounter, sliding_window_counter);
step!(SlidingWindowLog, sliding_window_log);

fn algorithm<S: Step>(c: &mut Criterion, algorithm: Algorithm) {
    let mut group = c.benchmark_group(format!("algorithm/{}", algorithm.as_str()));
    for limit in LIMITS {
        let policy = policy(algorithm, limit, WINDOW);
        let quota = policy.quota();
        let step = 2 * quota.window_us() / limit;

        // Allowed: at half the key's rate, from a steady state.
        let mut state = S::State::default();
        let mut now = Timestamp::from_micros(START);
        for _ in 0..4 * limit {
            now = now.plus(step);
            let d = S::check(&mut state, quota, now, Cost::ONE);
            assert!(d.allowed, "{algorithm} at half its rate is allowed");
        }
        group.bench_function(BenchmarkId::new(limit.to_string(), "allowed"), |b| {
            b.iter(|| {
                now = now.plus(step);
                S::check(&mut state, quota, black_box(now), black_box(Cost::ONE))
            })
        });

        // Denied: the whole limit spent at one instant, checked at it again.
        let mut state = S::State::default();
        let at = Timestamp::from_micros(START);
        for _ in 0..limit {
            assert!(S::check(&mut state, quota, at, Cost::ONE).allowed);
        }
        assert!(!S::check(&mut state, quota, at, Cost::ONE).allowed);
        group.bench_function(BenchmarkId::new(limit.to_string(), "denied"), |b| {
            b.iter(|| S::check(&mut state, quota, black_box(at), black_box(Cost::ONE)))
        });
    }
    group.finish();
}

fn algorithms(c: &mut Criterion) {
    algorithm::<TokenBucket>(c, Algorithm::TokenBucket);
    algorithm::<Gcra>(c, Algorithm::Gcra);
    algorithm::<FixedWindow>(c, Algorithm::FixedWindow);
    algorithm::<SlidingWindowCounter>(c, Algorithm::SlidingWindowCounter);
    algorithm::<SlidingWindowLog>(c, Algorithm::SlidingWindowLog);
}

fn memory_store(c: &mut Criterion) {
    const KEYS: usize = 100_000;
    let mut group = c.benchmark_group("memory_store");
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(START)));
    // A billion per hour: every check of the allowed benchmarks is admitted.
    let roomy = policy(Algorithm::TokenBucket, 1_000_000_000, Duration::from_secs(3600));

    let store = MemoryStore::with_clock(clock.clone());
    let one = StoreKey {
        rule: "default",
        key: "user:42",
    };
    group.bench_function("one_key", |b| {
        b.iter(|| store.check_now(black_box(one), &roomy, Cost::ONE))
    });

    let store = MemoryStore::with_clock(clock.clone());
    let keys: Vec<String> = (0..KEYS).map(|i| format!("user:{i}")).collect();
    for key in &keys {
        store.check_now(StoreKey { rule: "default", key }, &roomy, Cost::ONE);
    }
    assert_eq!(store.len(), KEYS);
    let mut i = 0;
    group.bench_function("100k_keys", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            let key = StoreKey {
                rule: "default",
                key: &keys[i],
            };
            store.check_now(black_box(key), &roomy, Cost::ONE)
        })
    });

    let store = MemoryStore::with_clock(clock);
    let tight = policy(Algorithm::TokenBucket, 100, Duration::from_secs(3600));
    for _ in 0..100 {
        assert!(store.check_now(one, &tight, Cost::ONE).allowed);
    }
    assert!(!store.check_now(one, &tight, Cost::ONE).allowed);
    group.bench_function("one_key_denied", |b| {
        b.iter(|| store.check_now(black_box(one), &tight, Cost::ONE))
    });
    group.finish();
}

criterion_group!(benches, algorithms, memory_store);
criterion_main!(benches);
