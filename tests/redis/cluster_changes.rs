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
    check_key_eventually(store, KEY, &policy()).await
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

/// Twenty counters in one slot, hammered while the slot moves to another
/// master (`MIGRATING`/`IMPORTING`, keys moved in batches, `ASK` and
/// `TRYAGAIN` while it lasts, then `MOVED`): every counter admits exactly
/// its limit, no more and no less. Checks refused while a counter's keys
/// are split between the masters are retried until decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_stay_exact_while_their_slot_migrates() {
    const COUNTERS: usize = 20;
    const LIMIT: u64 = 50;
    const ATTEMPTS: usize = 80;
    let cluster = std::sync::Arc::new(std::sync::Mutex::new(RedisCluster::start()));
    let seeds = cluster.lock().unwrap().seed_urls();
    let store = std::sync::Arc::new(connect(&cluster_settings(&seeds, &unique_prefix("migrating"))).await);
    // Twenty keys whose counters share the slot of the first.
    let layout = ratelimiter::store::redis::keys::KeyLayout::new("any");
    let slot = layout.slot("moving", "k0");
    let keys: Vec<String> = (0..)
        .map(|i| format!("k{i}"))
        .filter(|k| layout.slot("moving", k) == slot)
        .take(COUNTERS)
        .collect();
    let policy = Policy::new(Algorithm::SlidingWindowLog, LIMIT, Duration::from_secs(3600)).unwrap();
    let (from, to) = {
        let cluster = cluster.lock().unwrap();
        let from = cluster.master_of_slot(slot);
        (from, *cluster.masters().iter().find(|&&m| m != from).unwrap())
    };
    // The checks run until the migration is over, and at least ATTEMPTS
    // per counter.
    let moved = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let migration = {
        let (cluster, moved) = (cluster.clone(), moved.clone());
        tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(50));
            cluster.lock().unwrap().migrate_slot(slot, to);
            moved.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (store, keys, moved) = (store.clone(), keys.clone(), moved.clone());
        tasks.spawn(async move {
            let mut allowed = vec![0u64; COUNTERS];
            let mut refused = 0u64;
            let mut n = 0;
            while n < COUNTERS * ATTEMPTS / 8 || !moved.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let index = (worker + n * 8) % COUNTERS;
                let key = StoreKey {
                    rule: "moving",
                    key: &keys[index],
                };
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    match store.check(key, &policy, Cost::ONE).await {
                        Ok(decision) => {
                            allowed[index] += u64::from(decision.allowed);
                            break;
                        }
                        Err(_) if Instant::now() < deadline => {
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err(e) => panic!("still failing after 20 s: {e}"),
                    }
                }
            }
            (allowed, refused, n)
        });
    }
    let mut allowed = vec![0u64; COUNTERS];
    let (mut refused, mut checks) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        let (counts, r, n) = result.unwrap();
        refused += r;
        checks += n;
        for (total, n) in allowed.iter_mut().zip(counts) {
            *total += n;
        }
    }
    migration.await.unwrap();
    assert_eq!(cluster.lock().unwrap().master_of_slot(slot), to, "the slot moved");
    eprintln!("slot {slot} moved from {from} to {to} under {checks} checks; {refused} refused and retried meanwhile");
    assert_eq!(
        allowed,
        vec![LIMIT; COUNTERS],
        "every counter admitted exactly its limit"
    );
    // Afterwards the counters live on the new master and stay full.
    for key in &keys {
        let key = StoreKey { rule: "moving", key };
        assert!(!store.check(key, &policy, Cost::ONE).await.unwrap().allowed);
    }
}

/// A counter first checked while its slot is being migrated (the source
/// `MIGRATING`, the target `IMPORTING`, the counter on neither): the source
/// answers `ASK`, the check goes to the target as `ASKING` + `EVALSHA` and
/// its state is written there; once the slot is the target's, the count
/// goes on from it. (A token bucket: a counter of two keys, the sliding
/// log's, gets `TRYAGAIN` from Redis while its slot is split, and the
/// failure mode decides until the slot has moved.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_asked_to_the_importing_master_counts_there() {
    let cluster = RedisCluster::start();
    let store = connect(&cluster_settings(&cluster.seed_urls(), &unique_prefix("asking"))).await;
    let key = StoreKey {
        rule: "asking",
        key: "fresh",
    };
    let slot = slot_of_key(&cluster, &store, key);
    let from = cluster.master_of_slot(slot);
    let to = *cluster.masters().iter().find(|&&m| m != from).unwrap();
    let (from_id, to_id) = (
        cluster.cli(from, &["CLUSTER", "MYID"]),
        cluster.cli(to, &["CLUSTER", "MYID"]),
    );
    let slot_s = slot.to_string();
    cluster.cli(to, &["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", from_id.trim()]);
    cluster.cli(from, &["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", to_id.trim()]);

    let first = store
        .check(key, &one_key(), Cost::ONE)
        .await
        .expect("asked and answered");
    assert_eq!((first.allowed, first.remaining), (true, 9));
    let second = store.check(key, &one_key(), Cost::ONE).await.expect("asked again");
    assert_eq!(second.remaining, 8, "the state written on the importing master counts");

    for master in [to, from] {
        cluster.cli(master, &["CLUSTER", "SETSLOT", &slot_s, "NODE", to_id.trim()]);
    }
    for master in cluster.masters().into_iter().filter(|&m| m != to && m != from) {
        cluster.cli(master, &["CLUSTER", "SETSLOT", &slot_s, "NODE", to_id.trim()]);
    }
    assert_eq!(
        check_key_eventually(&store, key, &one_key()).await.remaining,
        7,
        "and goes on once the slot moved"
    );
}

fn slot_of_key(cluster: &RedisCluster, store: &RedisStore, key: StoreKey<'_>) -> u16 {
    cluster.key_slot(&store.key_names(key, &one_key())[0])
}

/// Retries transient failures of `key`'s check while the cluster settles
/// (bounded).
async fn check_key_eventually(store: &RedisStore, key: StoreKey<'_>, policy: &Policy) -> Decision {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match store.check(key, policy, Cost::ONE).await {
            Ok(decision) => return decision,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("no decision within 20 s: {e}"),
        }
    }
}

/// A policy whose state is one key.
fn one_key() -> Policy {
    Policy::new(Algorithm::TokenBucket, 10, Duration::from_secs(3600)).unwrap()
}
