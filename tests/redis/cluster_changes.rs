//! The cluster changes under the store: a slot moves to another master, a
//! master hands over to its replica, a master dies, the script cache is
//! flushed. Checks keep working once the cluster is healthy again, scripts
//! missing on a node (NOSCRIPT) are reloaded transparently, and state that
//! moved with its slot keeps limiting exactly.

use std::time::{Duration, Instant};

use ratelimiter::core::{Algorithm, Cost, Decision, Policy};
use ratelimiter::store::redis::RedisStore;
use ratelimiter::store::{Store, StoreKey};

use crate::common::{cluster_settings, connect, unique_prefix};
use ratelimiter_testkit::redis::RedisCluster;

fn policy() -> Policy {
    Policy::new(Algorithm::SlidingWindowLog, 10, Duration::from_secs(3600)).unwrap()
}

const KEY: StoreKey<'static> = StoreKey {
    rule: "moving",
    key: "org:acme",
};

/// Retries transient failures while the cluster settles (bounded).
async fn check_eventually(store: &RedisStore) -> Decision {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match store.check(KEY, &policy(), Cost::ONE).await {
            Ok(decision) => return decision,
            Err(e) => {
                assert!(e.transient, "only transient errors while the cluster changes: {e}");
                assert!(Instant::now() < deadline, "checks did not recover: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn slot_of(cluster: &RedisCluster, store: &RedisStore) -> u16 {
    cluster.key_slot(&store.key_names(KEY, &policy())[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrated_slot_keeps_its_state() {
    let cluster = RedisCluster::start();
    let store = connect(&cluster_settings(&cluster.seed_urls(), &unique_prefix("migrate"))).await;
    for remaining in [9, 8, 7] {
        assert_eq!(check_eventually(&store).await.remaining, remaining);
    }
    let slot = slot_of(&cluster, &store);
    let from = cluster.master_of_slot(slot);
    let to = *cluster.masters().iter().find(|&&m| m != from).unwrap();
    cluster.migrate_slot(slot, to);
    assert_eq!(cluster.master_of_slot(slot), to);
    // The new owner has the state (the count continues) and the client
    // follows the MOVED redirection.
    for remaining in [6, 5] {
        assert_eq!(check_eventually(&store).await.remaining, remaining);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_failover_keeps_state_and_reloads_scripts() {
    let cluster = RedisCluster::start();
    let store = connect(&cluster_settings(&cluster.seed_urls(), &unique_prefix("failover"))).await;
    for remaining in [9, 8] {
        assert_eq!(check_eventually(&store).await.remaining, remaining);
    }
    let slot = slot_of(&cluster, &store);
    let old_master = cluster.master_of_slot(slot);
    cluster.failover(old_master);
    let new_master = cluster.master_of_slot(slot);
    assert_ne!(new_master, old_master);
    // The promoted replica never loaded the script: NOSCRIPT is handled.
    let sha_missing = cluster.cli(new_master, &["SCRIPT", "EXISTS", &sha1_of_log_script()]);
    assert_eq!(sha_missing, "0", "the promoted replica starts without the script");
    // A graceful failover loses no writes: the count continues.
    for remaining in [7, 6] {
        assert_eq!(check_eventually(&store).await.remaining, remaining);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_replaced_and_checks_resume() {
    let mut cluster = RedisCluster::start();
    let store = connect(&cluster_settings(&cluster.seed_urls(), &unique_prefix("kill"))).await;
    assert!(check_eventually(&store).await.allowed);
    let slot = slot_of(&cluster, &store);
    cluster.kill_master_and_wait_for_promotion(cluster.master_of_slot(slot));
    // Asynchronous replication may lose the very last write, never more:
    // the count resumes from where the replica was.
    let d = check_eventually(&store).await;
    assert!(d.allowed);
    assert!(d.remaining == 8 || d.remaining == 9, "remaining {}", d.remaining);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_flush_is_transparent() {
    let cluster = RedisCluster::start();
    let store = connect(&cluster_settings(&cluster.seed_urls(), &unique_prefix("flush"))).await;
    assert_eq!(check_eventually(&store).await.remaining, 9);
    cluster.script_flush_all();
    let d = store
        .check(KEY, &policy(), Cost::ONE)
        .await
        .expect("NOSCRIPT is answered by reloading");
    assert_eq!(d.remaining, 8);
}

fn sha1_of_log_script() -> String {
    fred::types::scripts::Script::from_lua(ratelimiter::store::redis::scripts::SLIDING_WINDOW_LOG)
        .sha1()
        .to_string()
}
