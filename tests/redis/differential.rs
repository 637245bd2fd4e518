//! The Lua scripts and the Rust algorithms agree: the same sequences of
//! checks, at the same (given) times, produce the same decisions from the
//! memory store and from Redis — every field, including `remaining`,
//! `retry_after` and `reset_after`. The same holds for checks with several
//! limits, all or nothing: the memory store's `check_all_now` against the
//! multi-limit script.

use std::sync::Arc;
use std::time::Duration;

use ratelimiter::core::{Algorithm, Consume, Cost, ManualClock, Policy, Timestamp};
use ratelimiter::settings::RedisSettings;
use ratelimiter::store::memory::MemoryStore;
use ratelimiter::store::redis::RedisStore;
use ratelimiter::store::{CounterKey, Store, StoreKey};

use crate::common::{cluster_settings, connect, standalone_settings, unique_prefix, Rng};
use ratelimiter_testkit::redis::{RedisCluster, RedisServer};

const START: u64 = 1_700_000_000_123_456;

/// Runs `sequences` random sequences per algorithm through both stores.
///
/// Windows are at least a minute with at most one unit per second, so every
/// Redis key lives (in real time) far longer than the test: the stores differ
/// only if the algorithms do.
async fn compare(redis: RedisStore, clock: Arc<ManualClock>, seed: u64, sequences: u64) -> u64 {
    let memory = MemoryStore::with_clock(clock.clone());
    let mut rng = Rng::new(seed);
    let mut compared = 0;
    for algorithm in Algorithm::ALL {
        for sequence in 0..sequences {
            let window_s = [60, 90, 600, 3600, 86_400][rng.range(0, 4) as usize];
            let limit = rng.range(1, 60.min(window_s));
            let policy = Policy::new(algorithm, limit, Duration::from_secs(window_s)).unwrap();
            let window_us = window_s * 1_000_000;
            let key_name = format!("seq-{seed}-{sequence}");
            let key = StoreKey {
                rule: "diff",
                key: &key_name,
            };
            let mut now = START + rng.range(0, window_us);
            for step in 0..60 {
                now = match rng.range(0, 9) {
                    0 => now,                                                        // clock standing still
                    1 => now.saturating_sub(rng.range(1, window_us / 2)).max(START), // clock stepping back
                    2 => now + rng.range(window_us, 3 * window_us),                  // long idle
                    3 => now + rng.range(0, 999),                                    // sub-millisecond
                    _ => now + rng.range(1, window_us / limit.max(1) * 2),
                };
                clock.set(Timestamp::from_micros(now));
                let cost = if rng.chance(5) { limit + 1 } else { rng.range(1, limit) };
                let cost = Cost::new(cost).unwrap();
                let expected = memory.check_now(key, &policy, cost);
                let actual = redis.check(key, &policy, cost).await.expect("redis answers");
                assert_eq!(
                    actual, expected,
                    "{algorithm} seed {seed} sequence {sequence} step {step}: limit {limit}, window {window_s}s, cost {}, now {now}",
                    cost.get()
                );
                compared += 1;
                if rng.chance(20) {
                    // A peek reads the counter single checks consume.
                    let counters = [(CounterKey::single(key), &policy)];
                    let expected = memory.check_all_now(&counters, Cost::ONE, Consume::Never);
                    let actual = redis.check_all("", &counters, Cost::ONE, Consume::Never).await;
                    assert_eq!(
                        actual.expect("redis answers"),
                        expected,
                        "{algorithm} peek after step {step}"
                    );
                }
            }
        }
    }
    compared
}

/// [`compare`] on the Redis store `settings` name: every check of every
/// sequence compared.
async fn lua_and_rust_agree(settings: RedisSettings, seed: u64, sequences: u64) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(START)));
    let store = connect(&settings).await;
    let compared = compare(store.with_clock(clock.clone()), clock, seed, sequences).await;
    assert_eq!(compared, 5 * sequences * 60);
}

#[tokio::test]
async fn lua_and_rust_agree_on_redis() {
    let server = RedisServer::start();
    lua_and_rust_agree(standalone_settings(&server.url(), &unique_prefix("diff")), 1, 20).await;
}

#[tokio::test]
async fn lua_and_rust_agree_on_a_cluster() {
    let cluster = RedisCluster::start();
    lua_and_rust_agree(cluster_settings(&cluster.seed_urls(), &unique_prefix("diff")), 2, 8).await;
}

/// Runs `sequences` random sequences of checks with one to three limits, of
/// random algorithms, through the memory store's `check_all_now` and the
/// Redis multi-limit script, at the same given times: every decision of
/// every limit, and whether the check was allowed, must agree. Some checks
/// do not consume (peeks), some costs never fit one of the limits.
async fn compare_several(redis: RedisStore, clock: Arc<ManualClock>, seed: u64, sequences: u64) -> u64 {
    const NAMES: [&str; 3] = ["burst", "daily", "org"];
    let memory = MemoryStore::with_clock(clock.clone());
    let mut rng = Rng::new(seed);
    let mut compared = 0;
    for sequence in 0..sequences {
        let count = rng.range(1, 3) as usize;
        let policies: Vec<Policy> = (0..count)
            .map(|_| {
                let algorithm = Algorithm::ALL[rng.range(0, 4) as usize];
                let window_s = [60, 90, 600, 3600][rng.range(0, 3) as usize];
                let limit = rng.range(1, 40.min(window_s));
                Policy::new(algorithm, limit, Duration::from_secs(window_s)).unwrap()
            })
            .collect();
        let smallest = policies.iter().map(Policy::limit).min().unwrap_or(1);
        let shortest_us = policies
            .iter()
            .map(|p| p.quota().window_us())
            .min()
            .unwrap_or(60_000_000);
        let values: Vec<String> = (0..count).map(|i| format!("v{seed}-{sequence}-{i}")).collect();
        let counters: Vec<(CounterKey<'_>, &Policy)> = (0..count)
            .map(|i| {
                let key = CounterKey {
                    rule: "diff-several",
                    limit: Some(NAMES[i]),
                    value: &values[i],
                };
                (key, &policies[i])
            })
            .collect();
        let partition = format!("p{seed}-{sequence}");
        let mut now = START + rng.range(0, shortest_us);
        for step in 0..60 {
            now = match rng.range(0, 8) {
                0 => now,
                1 => now.saturating_sub(rng.range(1, shortest_us / 2)).max(START),
                2 => now + rng.range(shortest_us, 3 * shortest_us),
                _ => now + rng.range(1, shortest_us / smallest.max(1)),
            };
            clock.set(Timestamp::from_micros(now));
            let cost = if rng.chance(8) {
                smallest + 1
            } else {
                rng.range(1, smallest)
            };
            let cost = Cost::new(cost).unwrap();
            let consume = if rng.chance(5) {
                Consume::Never
            } else {
                Consume::IfAllAllow
            };
            let expected = memory.check_all_now(&counters, cost, consume);
            let actual = redis
                .check_all(&partition, &counters, cost, consume)
                .await
                .expect("redis answers");
            assert_eq!(
                actual,
                expected,
                "seed {seed} sequence {sequence} step {step}: limits {:?}, cost {}, {consume:?}, now {now}",
                policies
                    .iter()
                    .map(|p| (p.algorithm(), p.limit(), p.quota().window_us()))
                    .collect::<Vec<_>>(),
                cost.get()
            );
            compared += 1;
        }
    }
    compared
}

async fn several_limits_agree(settings: RedisSettings, seed: u64, sequences: u64) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(START)));
    let store = connect(&settings).await;
    let compared = compare_several(store.with_clock(clock.clone()), clock, seed, sequences).await;
    assert_eq!(compared, sequences * 60);
}

#[tokio::test]
async fn several_limits_decide_alike_in_lua_and_rust_on_redis() {
    let server = RedisServer::start();
    several_limits_agree(standalone_settings(&server.url(), &unique_prefix("diffmulti")), 3, 60).await;
}

#[tokio::test]
async fn several_limits_decide_alike_in_lua_and_rust_on_a_cluster() {
    let cluster = RedisCluster::start();
    several_limits_agree(
        cluster_settings(&cluster.seed_urls(), &unique_prefix("diffmulti")),
        4,
        20,
    )
    .await;
}
