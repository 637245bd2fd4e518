//! Batched checks on a standalone Redis: the batched scripts decide exactly
//! as the single ones, check after check, and concurrent checks through the
//! store are batched without admitting more than the limit.

use std::sync::Arc;
use std::time::Duration;

use ratelimiter::core::{Algorithm, Consume, Cost, Decision, Policy};
use ratelimiter::store::redis::scripts::{multi_index, Scripts};
use ratelimiter::store::redis::RedisStore;
use ratelimiter::store::{CounterKey, Store, StoreKey};

use crate::common::{cluster_settings, connect, standalone_settings, unique_prefix, Rng};
use ratelimiter_testkit::redis::{RedisCluster, RedisServer};

const START: u64 = 1_700_000_000_123_456;

/// Random rounds of checks, each round one call of the batched script on
/// one set of keys and the same checks one by one with the single script on
/// a mirror set, at the same time: every reply must be the same.
#[tokio::test]
async fn a_batched_script_decides_as_the_single_script_check_after_check() {
    let server = RedisServer::start();
    let prefix = unique_prefix("batchdiff");
    let store = connect(&standalone_settings(&server.url(), &prefix)).await;
    let client = store.pool().next().clone();
    let scripts = Scripts::new();
    let mut rng = Rng::new(7);
    let mut compared = 0;
    let mut batched_calls = 0;
    for algorithm in Algorithm::ALL {
        for sequence in 0..6 {
            let window_s = [60, 600, 3600][rng.range(0, 2) as usize];
            let limit = rng.range(1, 40);
            let policy = Policy::new(algorithm, limit, Duration::from_secs(window_s)).unwrap();
            let quota = policy.quota();
            let names: Vec<String> = (0..3).map(|k| format!("s{sequence}-k{k}")).collect();
            let mut now = START + rng.range(0, window_s * 1_000_000);
            for _round in 0..25 {
                now += rng.range(0, window_s * 1_000_000 / limit.max(1) * 3);
                let checks: Vec<(usize, u64)> = (0..rng.range(1, 8))
                    .map(|_| {
                        let cost = if rng.chance(5) { limit + 1 } else { rng.range(1, limit) };
                        (rng.range(0, 2) as usize, cost)
                    })
                    .collect();
                let keys_of = |rule: &str, k: usize| store.key_names(StoreKey { rule, key: &names[k] }, &policy);
                let per = keys_of("batched", 0).len();
                let mut keys = Vec::new();
                let mut args = vec![per.to_string(), now.to_string()];
                for &(k, cost) in &checks {
                    keys.extend(keys_of("batched", k));
                    args.extend(
                        [quota.limit(), quota.window_us(), quota.emission_interval_us(), cost].map(|v| v.to_string()),
                    );
                }
                // One flat array, six numbers per check.
                let flat: Vec<i64> = scripts
                    .batched(algorithm)
                    .evalsha_with_reload(&client, keys, args)
                    .await
                    .expect("the batched script runs");
                batched_calls += 1;
                assert_eq!(flat.len(), checks.len() * 6);
                let batched: Vec<&[i64]> = flat.chunks(6).collect();
                for (i, &(k, cost)) in checks.iter().enumerate() {
                    let args: Vec<String> = [quota.limit(), quota.window_us(), quota.emission_interval_us(), cost]
                        .map(|v| v.to_string())
                        .into_iter()
                        .chain(std::iter::once(now.to_string()))
                        .collect();
                    let single: Vec<i64> = scripts
                        .get(algorithm)
                        .evalsha_with_reload(&client, keys_of("single", k), args)
                        .await
                        .expect("the single script runs");
                    assert_eq!(
                        batched[i], single.as_slice(),
                        "{algorithm} sequence {sequence}, check {i} of {checks:?} at {now}: limit {limit}, window {window_s}s"
                    );
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(batched_calls, 5 * 6 * 25);
    assert!(compared > batched_calls * 2, "rounds hold several checks: {compared}");
}

/// The arguments of one check of several limits in `lua/multi.lua`, and
/// its keys: the counters `chosen` out of `counters` (each a policy and
/// the names of its keys).
fn several_args(
    counters: &[(Policy, Vec<String>)],
    chosen: &[usize],
    cost: u64,
    consume: bool,
) -> (Vec<String>, Vec<String>) {
    let mut args = vec![
        cost.to_string(),
        u8::from(consume).to_string(),
        chosen.len().to_string(),
    ];
    let mut keys = Vec::new();
    for &c in chosen {
        let (policy, names) = &counters[c];
        let quota = policy.quota();
        let index = multi_index(policy.algorithm());
        args.extend(
            [
                index,
                quota.limit(),
                quota.window_us(),
                quota.emission_interval_us(),
                names.len() as u64,
            ]
            .map(|v| v.to_string()),
        );
        keys.extend(names.iter().cloned());
    }
    (args, keys)
}

/// Random rounds of checks of several limits (random algorithms, counters
/// shared between the checks of a round), each round one call of the
/// batched script and the same checks one by one with the script of one
/// check on a mirror set of keys, at the same time: every reply the same.
#[tokio::test]
async fn a_batch_of_checks_of_several_limits_decides_as_one_after_the_other() {
    let server = RedisServer::start();
    let store = connect(&standalone_settings(&server.url(), &unique_prefix("multibatch"))).await;
    let client = store.pool().next().clone();
    let scripts = Scripts::new();
    let mut rng = Rng::new(11);
    let mut compared = 0;
    for sequence in 0..40 {
        let counters_of = |rule: &str, rng: &mut Rng| -> Vec<(Policy, Vec<String>)> {
            (0..4)
                .map(|c| {
                    let algorithm = Algorithm::ALL[rng.range(0, 4) as usize];
                    let policy =
                        Policy::new(algorithm, rng.range(1, 20), Duration::from_secs(rng.range(1, 600))).unwrap();
                    let names = store.key_names(
                        StoreKey {
                            rule,
                            key: &format!("s{sequence}-c{c}"),
                        },
                        &policy,
                    );
                    (policy, names)
                })
                .collect()
        };
        // The same policies on both sets: draw once, rename for the mirror.
        let batched_set = counters_of("batched", &mut rng);
        let single_set: Vec<(Policy, Vec<String>)> = batched_set
            .iter()
            .enumerate()
            .map(|(c, (policy, _))| {
                (
                    *policy,
                    store.key_names(
                        StoreKey {
                            rule: "single",
                            key: &format!("s{sequence}-c{c}"),
                        },
                        policy,
                    ),
                )
            })
            .collect();
        let mut now = START + rng.range(0, 600_000_000);
        for _round in 0..15 {
            now += rng.range(0, 30_000_000);
            let checks: Vec<(Vec<usize>, u64, bool)> = (0..rng.range(1, 6))
                .map(|_| {
                    let first = rng.range(0, 3) as usize;
                    let second = (first + 1 + rng.range(0, 2) as usize) % 4;
                    let mut chosen = vec![first, second];
                    let third = (second + 1) % 4;
                    if rng.chance(30) && third != first {
                        chosen.push(third);
                    }
                    (chosen, rng.range(1, 4), !rng.chance(20))
                })
                .collect();
            let mut keys = Vec::new();
            let mut args = vec![now.to_string()];
            for (chosen, cost, consume) in &checks {
                let (a, k) = several_args(&batched_set, chosen, *cost, *consume);
                args.extend(a);
                keys.extend(k);
            }
            let batched: Vec<Vec<Vec<i64>>> = scripts
                .multi_batched()
                .evalsha_with_reload(&client, keys, args)
                .await
                .expect("the batched script runs");
            assert_eq!(batched.len(), checks.len());
            for (i, (chosen, cost, consume)) in checks.iter().enumerate() {
                let (a, keys) = several_args(&single_set, chosen, *cost, *consume);
                let args: Vec<String> = std::iter::once(now.to_string()).chain(a).collect();
                let one: Vec<Vec<i64>> = scripts
                    .multi()
                    .evalsha_with_reload(&client, keys, args)
                    .await
                    .expect("the script of one check runs");
                assert_eq!(batched[i], one, "sequence {sequence}, check {i} of {checks:?} at {now}");
                compared += 1;
            }
        }
    }
    assert!(compared > 40 * 15 * 2, "rounds hold several checks: {compared}");
}

/// 400 concurrent checks of a user's and an org's limits through the
/// store: batched (far fewer script calls than checks), and the org's
/// limit admitted exactly once over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_of_several_limits_are_batched_and_exact() {
    let server = RedisServer::start();
    let store = Arc::new(connect(&standalone_settings(&server.url(), &unique_prefix("multiconc"))).await);
    let user = Policy::new(Algorithm::FixedWindow, 40, Duration::from_secs(3600)).unwrap();
    let org = Policy::new(Algorithm::SlidingWindowLog, 100, Duration::from_secs(3600)).unwrap();
    let checks = (0..400).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let user_name = format!("user{}", i % 4);
            let counters = [
                (
                    CounterKey {
                        rule: "conc",
                        limit: Some("user"),
                        value: &user_name,
                    },
                    &user,
                ),
                (
                    CounterKey {
                        rule: "conc",
                        limit: Some("org"),
                        value: "acme",
                    },
                    &org,
                ),
            ];
            let (allowed, decisions) = store
                .check_all("acme", &counters, Cost::ONE, Consume::IfAllAllow)
                .await
                .expect("redis answers");
            (i % 4, allowed, decisions[1].remaining)
        })
    });
    let decisions: Vec<(usize, bool, u64)> = futures_util::future::join_all(checks)
        .await
        .into_iter()
        .map(|d| d.unwrap())
        .collect();
    let mut per_user = [0u64; 4];
    let mut org_remaining: Vec<u64> = Vec::new();
    for &(user, allowed, remaining) in &decisions {
        if allowed {
            per_user[user] += 1;
            org_remaining.push(remaining);
        }
    }
    org_remaining.sort_unstable();
    assert_eq!(
        org_remaining,
        (0..100).collect::<Vec<_>>(),
        "each of the org's 100 handed out once"
    );
    assert!(per_user.iter().all(|&n| n <= 40), "no user above 40: {per_user:?}");
    let calls = store.metrics().redis_operations.with_label_values(&["evalsha"]).get();
    assert!(calls < 400, "{calls} script calls for 400 checks: not batched");
    assert_eq!(
        store.metrics().redis_batch_size.get_sample_sum(),
        400.0,
        "every check in exactly one batch"
    );
    eprintln!("400 concurrent checks of two limits in {calls} script calls");
}

/// 400 concurrent checks of one key through the store: batched (far fewer
/// script calls than checks) and exactly the limit admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_are_batched_and_exact() {
    let server = RedisServer::start();
    let store = Arc::new(connect(&standalone_settings(&server.url(), &unique_prefix("batchconc"))).await);
    let policy = Policy::new(Algorithm::SlidingWindowLog, 100, Duration::from_secs(3600)).unwrap();
    let checks = (0..400).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let key = StoreKey {
                rule: "conc",
                key: "one",
            };
            store.check(key, &policy, Cost::ONE).await.expect("redis answers")
        })
    });
    let decisions: Vec<Decision> = futures_util::future::join_all(checks)
        .await
        .into_iter()
        .map(|d| d.unwrap())
        .collect();
    handed_out_once(decisions.iter(), 100);
    let calls = batched(&store, 400);
    eprintln!("400 concurrent checks in {calls} script calls");
}

/// On a cluster, a hot key batches with itself: 400 concurrent checks of
/// one key go out in far fewer script calls, on the key's master, and
/// exactly the limit is admitted; checks of keys on every master at once
/// are exact too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_batches_on_a_cluster_too() {
    let cluster = RedisCluster::start();
    let settings = cluster_settings(&cluster.seed_urls(), &unique_prefix("clusterbatch"));
    let store = Arc::new(connect(&settings).await);
    let policy = Policy::new(Algorithm::TokenBucket, 100, Duration::from_secs(3600)).unwrap();
    let checks = (0..400).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let hot = StoreKey {
                rule: "hot",
                key: "one",
            };
            let spread = format!("k{}", i % 40);
            let other = StoreKey {
                rule: "spread",
                key: &spread,
            };
            let hot = store.check(hot, &policy, Cost::ONE).await.expect("redis answers");
            let other = store.check(other, &policy, Cost::ONE).await.expect("redis answers");
            (hot, other)
        })
    });
    let decisions: Vec<_> = futures_util::future::join_all(checks)
        .await
        .into_iter()
        .map(|d| d.unwrap())
        .collect();
    handed_out_once(decisions.iter().map(|(hot, _)| hot), 100);
    assert!(
        decisions.iter().all(|(_, o)| o.allowed),
        "10 checks per spread key, all within 100"
    );
    let calls = batched(&store, 800);
    eprintln!("800 concurrent checks on a cluster in {calls} script calls");
}

/// The allowed decisions of one key of capacity `limit`: every `remaining`
/// from `limit - 1` to 0 handed out exactly once.
fn handed_out_once<'a>(decisions: impl Iterator<Item = &'a Decision>, limit: u64) {
    let mut remaining: Vec<u64> = decisions.filter(|d| d.allowed).map(|d| d.remaining).collect();
    remaining.sort_unstable();
    assert_eq!(
        remaining,
        (0..limit).collect::<Vec<_>>(),
        "each remaining handed out once"
    );
}

/// `checks` went out in fewer script calls than checks, each check in
/// exactly one; returns the calls.
fn batched(store: &RedisStore, checks: u64) -> u64 {
    let calls = store.metrics().redis_operations.with_label_values(&["evalsha"]).get();
    let sizes = &store.metrics().redis_batch_size;
    assert_eq!(sizes.get_sample_count(), calls, "one batch size per script call");
    assert_eq!(sizes.get_sample_sum(), checks as f64, "every check in exactly one call");
    assert!(calls < checks, "{calls} script calls for {checks} checks: not batched");
    calls
}

/// After `SCRIPT FLUSH` (a restarted or replaced server) both the single
/// and the batched scripts are reloaded on the `NOSCRIPT` reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_checks_survive_a_script_flush() {
    let server = RedisServer::start();
    let store = Arc::new(connect(&standalone_settings(&server.url(), &unique_prefix("batchflush"))).await);
    let policy = Policy::new(Algorithm::FixedWindow, 50, Duration::from_secs(3600)).unwrap();
    let burst = |store: Arc<ratelimiter::store::redis::RedisStore>| async move {
        let checks = (0..40).map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = StoreKey {
                    rule: "flush",
                    key: "k",
                };
                store.check(key, &policy, Cost::ONE).await
            })
        });
        futures_util::future::join_all(checks)
            .await
            .into_iter()
            .map(|r| r.unwrap().expect("redis answers").allowed)
            .filter(|allowed| *allowed)
            .count()
    };
    assert_eq!(burst(store.clone()).await, 40);
    assert_eq!(server.cli(&["SCRIPT", "FLUSH"]), "OK");
    assert_eq!(burst(store.clone()).await, 10, "the limit holds across the reload");
    let noscript = store.metrics().redis_errors.with_label_values(&["noscript"]).get();
    assert_eq!(
        noscript, 0,
        "NOSCRIPT is handled by reloading, not counted as a failure"
    );
}

/// The checks of one `/check/batch` go to one lane, so they leave in one or
/// two script calls even with eight connections (round-robin would spread
/// them over all eight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_batch_leaves_in_few_script_calls() {
    use ratelimiter::core::SystemClock;
    use ratelimiter::limiter::rules::RuleSet;
    use ratelimiter::limiter::{CheckRequest, Key, Limiter, LimiterConfig, Protocol};
    use ratelimiter::settings::Settings;

    let server = RedisServer::start();
    let mut settings = standalone_settings(&server.url(), &unique_prefix("checkbatch"));
    settings.pool_size = 8;
    let store = connect(&settings).await;
    let metrics = store.metrics().clone();
    let config = Settings::from_toml("[defaults]\nlimit = 1000\nwindow = \"1h\"\n").unwrap();
    let limiter = Limiter::new(
        RuleSet::from_settings(&config).unwrap(),
        store,
        Arc::new(SystemClock),
        LimiterConfig {
            max_key_bytes: 64,
            top_keys: 8,
            ..LimiterConfig::default()
        },
    );
    let requests: Vec<CheckRequest> = (0..50)
        .map(|i| CheckRequest {
            key: Key::parse(format!("k{i}"), 64).unwrap(),
            endpoint: None,
            tier: None,
            cost: Cost::ONE,
            peek: false,
            client_ip: None,
            scopes: Vec::new(),
            id: None,
            protocol: Protocol::Http,
        })
        .collect();
    // Spread over the eight connections, 50 checks take at least 8 calls.
    // On one lane they take fewer, unless the machine is so busy that the
    // lane's task wakes between every few checks: the best of five rounds
    // tells the two apart without depending on the machine's load.
    let mut fewest = u64::MAX;
    for round in 0..5 {
        let before = metrics.redis_batch_size.get_sample_count();
        let verdicts = limiter.check_batch(&requests).await.expect("valid checks");
        assert!(verdicts.iter().all(|v| v.as_ref().is_ok_and(|v| v.decision.allowed)));
        let calls = metrics.redis_batch_size.get_sample_count() - before;
        eprintln!("round {round}: 50 checks in {calls} script calls");
        fewest = fewest.min(calls);
    }
    assert!(fewest < 8, "50 checks of one batch took at least {fewest} script calls");
}
