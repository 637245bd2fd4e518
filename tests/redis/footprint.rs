//! Memory per key in Redis, per algorithm (`MEMORY USAGE`), bounded and
//! independent of traffic except for the log, which is capped at the limit.
//! The figures are printed (`cargo test --test redis footprint -- --nocapture`)
//! and recorded in docs/DECISIONS.md.

use std::time::Duration;

use ratelimiter::core::{Algorithm, Cost, Policy};
use ratelimiter::store::{Store, StoreKey};

use crate::common::{connect, standalone_settings, unique_prefix};
use ratelimiter_testkit::redis::RedisServer;

#[tokio::test]
async fn bytes_per_key_are_small_and_bounded() {
    let server = RedisServer::start();
    let store = connect(&standalone_settings(&server.url(), &unique_prefix("mem"))).await;
    let usage = |name: &str| -> u64 {
        server
            .cli(&["MEMORY", "USAGE", name, "SAMPLES", "0"])
            .parse()
            .unwrap_or(0)
    };

    for algorithm in Algorithm::ALL {
        for limit in [100u64, 1000] {
            let policy = Policy::new(algorithm, limit, Duration::from_secs(3600)).unwrap();
            let key_name = format!("user:{limit}");
            let key = StoreKey {
                rule: algorithm.as_str(),
                key: &key_name,
            };
            // Fill to the limit one request at a time (the log's worst case),
            // then one more that is denied.
            for _ in 0..limit {
                assert!(store.check(key, &policy, Cost::ONE).await.unwrap().allowed);
            }
            assert!(!store.check(key, &policy, Cost::ONE).await.unwrap().allowed);
            let bytes: u64 = store.key_names(key, &policy).iter().map(|n| usage(n)).sum();
            eprintln!("footprint {algorithm:<24} limit {limit:>5}: {bytes:>6} bytes");
            let bound = match algorithm {
                Algorithm::SlidingWindowLog => 256 + 40 * limit,
                _ => 256,
            };
            assert!(
                bytes > 0 && bytes <= bound,
                "{algorithm} limit {limit}: {bytes} bytes > {bound}"
            );
            if algorithm == Algorithm::SlidingWindowLog {
                let entries: u64 = server
                    .cli(&["LLEN", &store.key_names(key, &policy)[1]])
                    .parse()
                    .unwrap();
                assert_eq!(entries, limit, "the log holds at most `limit` entries");
            }
        }
    }
}

/// A state an older release wrote as a hash (`HSET` of the algorithm's
/// fields) is read as such, and the next check rewrites it as one string:
/// the count goes on where it was.
#[tokio::test]
async fn a_state_kept_as_a_hash_is_read_and_rewritten_as_a_string() {
    let server = RedisServer::start();
    let store = connect(&standalone_settings(&server.url(), &unique_prefix("oldstate"))).await;
    let now_us = || {
        let t = server.cli(&["TIME"]);
        let mut parts = t.lines();
        let secs: u64 = parts.next().unwrap().trim().parse().unwrap();
        let micros: u64 = parts.next().unwrap().trim().parse().unwrap();
        secs * 1_000_000 + micros
    };
    // Each algorithm's old hash fields at time `now`, holding 3 units.
    type Fields = fn(u64) -> Vec<(&'static str, u64)>;
    let cases: [(Algorithm, Fields); 4] = [
        (Algorithm::TokenBucket, |now| vec![("used", 3), ("updated", now)]),
        (Algorithm::FixedWindow, |now| {
            vec![("window_start", now - now % 3_600_000_000), ("count", 3)]
        }),
        (Algorithm::SlidingWindowCounter, |now| {
            vec![
                ("window_start", now - now % 3_600_000_000),
                ("previous", 0),
                ("current", 3),
            ]
        }),
        (Algorithm::Gcra, |now| vec![("tat", now + 3 * 360_000_000)]),
    ];
    for (algorithm, fields) in cases {
        let policy = Policy::new(algorithm, 10, Duration::from_secs(3600)).unwrap();
        let key = StoreKey {
            rule: algorithm.as_str(),
            key: "old",
        };
        let name = store.key_names(key, &policy)[0].clone();
        let mut args: Vec<String> = vec!["HSET".into(), name.clone()];
        for (field, value) in fields(now_us()) {
            args.push(field.into());
            args.push(value.to_string());
        }
        server.cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let decision = store.check(key, &policy, Cost::ONE).await.unwrap();
        assert!(decision.allowed, "{algorithm}");
        assert_eq!(decision.remaining, 6, "{algorithm}: three used before, one now");
        assert_eq!(server.cli(&["TYPE", &name]).trim(), "string", "{algorithm}: rewritten");
        assert_eq!(
            store.check(key, &policy, Cost::ONE).await.unwrap().remaining,
            5,
            "{algorithm}"
        );
    }
}
