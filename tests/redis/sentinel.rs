//! `mode = "sentinel"`: the store asks Redis Sentinel for the master, keeps
//! the contract there, and follows the sentinels to the new master after a
//! failover (a graceful `SENTINEL FAILOVER` here; a master killed under
//! load is in `faults.rs`).

use std::time::{Duration, Instant};

use ratelimiter::core::{Algorithm, Cost, Policy};
use ratelimiter::settings::{HumanDuration, RedisMode, RedisSettings};
use ratelimiter::store::{Store, StoreKey};

use crate::common::{connect, standalone_settings, unique_prefix};
use crate::contract::contract;
use ratelimiter_testkit::redis::{cli, RedisSentinels};
use ratelimiter_testkit::wait_until;

pub fn sentinel_settings(group: &RedisSentinels, prefix: &str) -> RedisSettings {
    RedisSettings {
        mode: RedisMode::Sentinel,
        sentinels: group.sentinel_addrs(),
        service_name: ratelimiter_testkit::redis::SENTINEL_SERVICE_NAME.to_owned(),
        reconnect_min_delay: HumanDuration(Duration::from_millis(20)),
        reconnect_max_delay: HumanDuration(Duration::from_millis(200)),
        ..standalone_settings("redis://127.0.0.1:6379", prefix)
    }
}

/// `[store.redis]` lines for a service config.
pub fn sentinel_toml(group: &RedisSentinels) -> String {
    let sentinels: Vec<String> = group.sentinel_addrs().iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "mode = \"sentinel\"\nsentinels = [{}]\nservice_name = \"{}\"",
        sentinels.join(", "),
        ratelimiter_testkit::redis::SENTINEL_SERVICE_NAME
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_named_by_the_sentinels_keeps_the_contract_across_a_failover() {
    let group = RedisSentinels::start();
    let prefix = unique_prefix("sentinel");
    let store = connect(&sentinel_settings(&group, &prefix)).await;
    assert!(!store.is_clustered());
    contract(&store).await;
    let first = group.master_port();
    let written = cli(first, &["--scan", "--pattern", &format!("{prefix}*")]);
    assert!(!written.is_empty(), "the counters are on the master the sentinels name");

    let mut switches = store.sentinel_switches().expect("the store watches the sentinels");
    let second = group.failover();
    assert_ne!(first, second);
    // The store follows the sentinels' announcement, not the old master's
    // demotion, which comes seconds later: until then the old master
    // still takes writes, and would lose them when it turns replica.
    tokio::time::timeout(Duration::from_secs(10), switches.changed())
        .await
        .expect("the store heard the switch")
        .unwrap();
    let policy = Policy::new(Algorithm::FixedWindow, 5, Duration::from_secs(3600)).unwrap();
    let key = StoreKey {
        rule: "after",
        key: "failover",
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut first_ok = None;
    while Instant::now() < deadline {
        match store.check(key, &policy, Cost::ONE).await {
            Ok(d) => {
                first_ok = Some(d);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let d = first_ok.expect("a check succeeds on the new master");
    assert_eq!((d.allowed, d.remaining), (true, 4));
    let mut allowed = 1;
    for _ in 0..10 {
        allowed += usize::from(store.check(key, &policy, Cost::ONE).await.unwrap().allowed);
    }
    assert_eq!(allowed, 5, "exact on the new master");
    let names = store.key_names(key, &policy);
    assert_eq!(cli(second, &["EXISTS", &names[0]]), "1", "written on the new master");
    assert_eq!(cli(first, &["EXISTS", &names[0]]), "0", "not on the old one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_that_do_not_know_the_name_are_a_start_up_error() {
    let group = RedisSentinels::start();
    let mut settings = sentinel_settings(&group, &unique_prefix("sentinel-name"));
    settings.service_name = "no-such-master".to_owned();
    settings.connect_timeout = HumanDuration(Duration::from_millis(800));
    let err = match ratelimiter::store::redis::RedisStore::connect(&settings).await {
        Ok(_) => panic!("connected to a master nobody monitors"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("cannot connect to Redis at 127.0.0.1:"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_down_at_start_up_is_subscribed_to_once_it_is_back() {
    let mut group = RedisSentinels::start();
    // The last sentinel refuses connections while the store starts (the
    // others name the master).
    group.stop_sentinel(2);
    let store = connect(&sentinel_settings(&group, &unique_prefix("sentinel-late"))).await;
    wait_until(
        "the two live sentinels to have the store's subscriber",
        Duration::from_secs(10),
        || group.sentinel_subscribers(0) == 1 && group.sentinel_subscribers(1) == 1,
    );
    group.restart_sentinel(2);
    wait_until(
        "the store to subscribe to the sentinel that is back",
        Duration::from_secs(20),
        || group.sentinel_subscribers(2) == 1,
    );
    drop(store);
}
