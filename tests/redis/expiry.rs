//! Every key gets a TTL just past the moment its state is fully restored:
//! no key outlives its usefulness, none expires while it still limits.

use std::time::{Duration, Instant};

use ratelimiter::core::{Algorithm, Cost, Policy};
use ratelimiter::store::{Store, StoreKey};

use crate::common::{connect, standalone_settings, unique_prefix};
use ratelimiter_testkit::redis::RedisServer;

#[tokio::test]
async fn keys_expire_just_after_they_are_fully_restored() {
    let server = RedisServer::start();
    let store = connect(&standalone_settings(&server.url(), &unique_prefix("ttl"))).await;
    for algorithm in Algorithm::ALL {
        let policy = Policy::new(algorithm, 4, Duration::from_secs(3600)).unwrap();
        let key = StoreKey {
            rule: "ttl",
            key: algorithm.as_str(),
        };
        let d = store.check(key, &policy, Cost::new(2).unwrap()).await.unwrap();
        assert!(d.allowed);
        let reset_ms = d.reset_after_us.div_ceil(1000);
        for name in store.key_names(key, &policy) {
            let pttl: u64 = server.cli(&["PTTL", &name]).parse().unwrap();
            // At most 2 ms past the restore time; never far before it (the slack
            // only covers the real time between the check and PTTL).
            assert!(
                pttl + 60_000 >= reset_ms && pttl <= reset_ms + 2,
                "{algorithm} {name}: pttl {pttl}, reset {reset_ms}"
            );
        }
    }
}

#[tokio::test]
async fn restored_keys_disappear_and_start_full() {
    let server = RedisServer::start();
    let store = connect(&standalone_settings(&server.url(), &unique_prefix("gone"))).await;
    for algorithm in Algorithm::ALL {
        let policy = Policy::new(algorithm, 2, Duration::from_millis(200)).unwrap();
        let key = StoreKey {
            rule: "gone",
            key: algorithm.as_str(),
        };
        assert!(store.check(key, &policy, Cost::new(2).unwrap()).await.unwrap().allowed);
        let names = store.key_names(key, &policy);
        let deadline = Instant::now() + Duration::from_secs(5);
        while names.iter().any(|n| server.cli(&["EXISTS", n]) != "0") {
            assert!(Instant::now() < deadline, "{algorithm}: keys {names:?} never expired");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let d = store.check(key, &policy, Cost::ONE).await.unwrap();
        assert_eq!((d.allowed, d.remaining), (true, 1), "{algorithm}");
    }
}

#[tokio::test]
async fn a_denied_check_on_a_new_key_writes_nothing() {
    let server = RedisServer::start();
    let store = connect(&standalone_settings(&server.url(), &unique_prefix("none"))).await;
    for algorithm in Algorithm::ALL {
        let policy = Policy::new(algorithm, 2, Duration::from_secs(60)).unwrap();
        let key = StoreKey {
            rule: "none",
            key: algorithm.as_str(),
        };
        let d = store.check(key, &policy, Cost::new(3).unwrap()).await.unwrap();
        assert!(!d.allowed);
        for name in store.key_names(key, &policy) {
            assert_eq!(server.cli(&["EXISTS", &name]), "0", "{algorithm}: {name}");
        }
    }
}
