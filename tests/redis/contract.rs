//! One contract, run against every store: memory, Redis, Redis Cluster.
//! Time comes from each store's own clock, so the contract only asserts what
//! holds at any speed (windows are long enough that nothing refills).

use std::time::Duration;

use ratelimiter::core::{Algorithm, Cost, Policy};
use ratelimiter::settings::RedisSettings;
use ratelimiter::store::memory::MemoryStore;
use ratelimiter::store::{Store, StoreKey};

use crate::common::{cluster_settings, connect, standalone_settings, unique_prefix};
use ratelimiter_testkit::redis::{RedisCluster, RedisServer};

/// A quota of `limit` that does not refill during a test.
fn policy(algorithm: Algorithm, limit: u64) -> Policy {
    Policy::new(algorithm, limit, Duration::from_secs(24 * 3600)).expect("valid policy")
}

fn key<'a>(rule: &'a str, key: &'a str) -> StoreKey<'a> {
    StoreKey { rule, key }
}

pub async fn contract<S: Store>(store: &S) {
    for algorithm in Algorithm::ALL {
        let p = policy(algorithm, 5);
        let one = Cost::ONE;
        let rule = algorithm.as_str();

        // Counting down to zero, then denied with an honest retry time.
        for remaining in (0..5).rev() {
            let d = store.check(key(rule, "org:a"), &p, one).await.unwrap();
            assert!(d.allowed, "{algorithm}");
            assert_eq!((d.limit, d.remaining), (5, remaining), "{algorithm}");
            assert_eq!(d.retry_after_us, 0, "{algorithm}");
            assert!(d.reset_after_us > 0, "{algorithm}");
        }
        let denied = store.check(key(rule, "org:a"), &p, one).await.unwrap();
        assert!(!denied.allowed, "{algorithm}");
        assert_eq!(denied.remaining, 0, "{algorithm}");
        assert!(
            denied.retry_after_us > 0 && denied.retry_after_us <= denied.reset_after_us,
            "{algorithm}"
        );

        // Tenants are isolated: another key, or the same key under another
        // rule, starts full.
        let other = store.check(key(rule, "org:b"), &p, one).await.unwrap();
        assert_eq!((other.allowed, other.remaining), (true, 4), "{algorithm}");
        let other_rule = format!("{rule}-other");
        let d = store.check(key(&other_rule, "org:a"), &p, one).await.unwrap();
        assert_eq!((d.allowed, d.remaining), (true, 4), "{algorithm}");

        // Cost > 1 consumes several units; a denied cost consumes nothing.
        let c3 = Cost::new(3).unwrap();
        let d = store.check(key(rule, "org:c"), &p, c3).await.unwrap();
        assert_eq!((d.allowed, d.remaining), (true, 2), "{algorithm}");
        let d = store.check(key(rule, "org:c"), &p, c3).await.unwrap();
        assert_eq!((d.allowed, d.remaining), (false, 2), "{algorithm}");
        let d = store
            .check(key(rule, "org:c"), &p, Cost::new(2).unwrap())
            .await
            .unwrap();
        assert_eq!((d.allowed, d.remaining), (true, 0), "{algorithm}");

        // A cost above the limit can never fit and consumes nothing.
        let d = store
            .check(key(rule, "org:d"), &p, Cost::new(6).unwrap())
            .await
            .unwrap();
        assert!(!d.allowed, "{algorithm}");
        assert_eq!((d.retry_after_us, d.remaining), (u64::MAX, 5), "{algorithm}");

        // Keys that look like Redis syntax are just keys.
        for hostile in ["}", "{", "{org:a}", "*", "a\nb", "org:a}:tb"] {
            let d = store
                .check(key(rule, hostile), &p, Cost::new(5).unwrap())
                .await
                .unwrap();
            assert_eq!((d.allowed, d.remaining), (true, 0), "{algorithm} {hostile:?}");
        }
        let d = store.check(key(rule, "org:e"), &p, one).await.unwrap();
        assert_eq!(
            (d.allowed, d.remaining),
            (true, 4),
            "{algorithm}: untouched by hostile keys"
        );
    }
}

#[tokio::test]
async fn memory_store_keeps_the_contract() {
    contract(&MemoryStore::new()).await;
}

/// The contract on the Redis store `settings` name, a cluster or not as
/// `clustered` says.
async fn redis_keeps_the_contract(settings: RedisSettings, clustered: bool) {
    let store = connect(&settings).await;
    assert_eq!(store.is_clustered(), clustered);
    contract(&store).await;
}

#[tokio::test]
async fn redis_store_keeps_the_contract() {
    let server = RedisServer::start();
    redis_keeps_the_contract(standalone_settings(&server.url(), &unique_prefix("contract")), false).await;
}

#[tokio::test]
async fn redis_cluster_store_keeps_the_contract() {
    let cluster = RedisCluster::start();
    redis_keeps_the_contract(cluster_settings(&cluster.seed_urls(), &unique_prefix("contract")), true).await;
}

#[tokio::test]
async fn auto_mode_detects_a_cluster_from_one_seed() {
    let cluster = RedisCluster::start();
    let seed = cluster.seed_urls().remove(0);
    let store = connect(&standalone_settings(&seed, &unique_prefix("auto"))).await;
    assert!(store.is_clustered());
    let d = store
        .check(key("r", "k"), &policy(Algorithm::Gcra, 2), Cost::ONE)
        .await
        .unwrap();
    assert!(d.allowed);
}

#[tokio::test]
async fn keys_spread_over_every_cluster_master() {
    let cluster = RedisCluster::start();
    let prefix = unique_prefix("spread");
    let store = connect(&cluster_settings(&cluster.seed_urls(), &prefix)).await;
    let p = policy(Algorithm::SlidingWindowLog, 3);
    let mut masters = std::collections::HashSet::new();
    for i in 0..64 {
        let k = format!("user:{i}");
        let d = store.check(key("spread", &k), &p, Cost::ONE).await.unwrap();
        assert_eq!((d.allowed, d.remaining), (true, 2));
        let names = store.key_names(key("spread", &k), &p);
        let slots: Vec<u16> = names.iter().map(|n| cluster.key_slot(n)).collect();
        assert!(slots.iter().all(|&s| s == slots[0]), "one check, one slot: {names:?}");
        masters.insert(cluster.master_of_slot(slots[0]));
    }
    assert_eq!(masters.len(), 3, "64 keys land on all three masters");
}

#[tokio::test]
async fn bad_addresses_fail_at_connect() {
    let mut settings = standalone_settings("redis://127.0.0.1:1", "x");
    settings.connect_timeout = ratelimiter::settings::HumanDuration(Duration::from_millis(500));
    let err = ratelimiter::store::redis::RedisStore::connect(&settings)
        .await
        .err()
        .expect("nothing listens on port 1");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    let settings = standalone_settings("not a url", "x");
    assert!(ratelimiter::store::redis::RedisStore::connect(&settings).await.is_err());
}
