//! The Lua scripts and the Rust algorithms agree: the same sequences of
//! checks, at the same (given) times, produce the same decisions from the
//! memory store and from Redis — every field, including `remaining`,
//! `retry_after` and `reset_after`.

use std::sync::Arc;
use std::time::Duration;

use ratelimiter::core::{Algorithm, Cost, ManualClock, Policy, Timestamp};
use ratelimiter::settings::RedisSettings;
use ratelimiter::store::memory::MemoryStore;
use ratelimiter::store::redis::RedisStore;
use ratelimiter::store::{Store, StoreKey};

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
