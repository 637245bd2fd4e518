//! Reports and ids (`Store::apply`): the Redis script (`lua/once.lua`)
//! against the memory store's `apply_now` on random sequences of checks,
//! reports and refunds, with and without ids, at the same given times; and
//! one id raced from two replicas applies once.

use std::sync::Arc;
use std::time::Duration;

use ratelimiter::core::{Algorithm, Consume, Cost, ManualClock, Policy, Timestamp, Units};
use ratelimiter::settings::RedisSettings;
use ratelimiter::store::memory::MemoryStore;
use ratelimiter::store::redis::RedisStore;
use ratelimiter::store::{CounterKey, Once, Op, Store};

use crate::common::{cluster_settings, connect, standalone_settings, unique_prefix, Rng};
use ratelimiter_testkit::redis::{RedisCluster, RedisServer};

const START: u64 = 1_700_000_000_123_456;
/// Ids live 30 days: longer than any sequence's clock moves.
const ID_TTL_US: u64 = 30 * 86_400 * 1_000_000;

async fn compare(redis: RedisStore, clock: Arc<ManualClock>, seed: u64, sequences: u64) -> u64 {
    const NAMES: [&str; 3] = ["burst", "daily", "org"];
    let reporting: Vec<Algorithm> = Algorithm::ALL.into_iter().filter(|a| a.reports()).collect();
    let memory = MemoryStore::with_clock(clock.clone());
    let mut rng = Rng::new(seed);
    let mut compared = 0;
    for sequence in 0..sequences {
        // Some sequences are a rule's only, unnamed limit.
        let unnamed = rng.chance(4);
        let count = if unnamed { 1 } else { rng.range(1, 3) as usize };
        let policies: Vec<Policy> = (0..count)
            .map(|_| {
                let algorithm = reporting[rng.range(0, reporting.len() as u64 - 1) as usize];
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
        let values: Vec<String> = (0..count).map(|i| format!("r{seed}-{sequence}-{i}")).collect();
        let counters: Vec<(CounterKey<'_>, &Policy)> = (0..count)
            .map(|i| {
                let key = CounterKey {
                    rule: "reports",
                    limit: if unnamed { None } else { Some(NAMES[i]) },
                    value: &values[i],
                };
                (key, &policies[i])
            })
            .collect();
        let partition = if unnamed {
            values[0].clone()
        } else {
            format!("p{seed}-{sequence}")
        };
        let mut ids: Vec<String> = Vec::new();
        let mut now = START + rng.range(0, shortest_us);
        for step in 0..50 {
            now = match rng.range(0, 6) {
                0 => now,
                1 => now + rng.range(shortest_us, 2 * shortest_us),
                _ => now + rng.range(1, shortest_us / smallest.max(1)),
            };
            clock.set(Timestamp::from_micros(now));
            let op = if rng.chance(2) {
                let n = rng.range(1, 3 * smallest) as i64;
                Op::Report(Units::new(if rng.chance(3) { -n } else { n }).unwrap())
            } else {
                Op::Check(Cost::new(rng.range(1, smallest)).unwrap())
            };
            let id = match rng.range(0, 3) {
                0 => None,
                1 if !ids.is_empty() => Some(ids[rng.range(0, ids.len() as u64 - 1) as usize].clone()),
                _ => {
                    ids.push(format!("id-{seed}-{sequence}-{step}:{{x}}"));
                    ids.last().cloned()
                }
            };
            let once = id.as_deref().map(|id| Once { id, ttl_us: ID_TTL_US });
            let expected = memory.apply_now(&partition, &counters, op, once);
            let actual = redis
                .apply(&partition, &counters, op, once)
                .await
                .expect("redis answers");
            let context = || {
                format!(
                    "seed {seed} sequence {sequence} step {step}: {op:?} id {id:?} now {now}, limits {:?}",
                    policies
                        .iter()
                        .map(|p| (p.algorithm(), p.limit(), p.quota().window_us()))
                        .collect::<Vec<_>>()
                )
            };
            assert_eq!(actual, expected, "{}", context());
            // The counters read alike afterwards too.
            let peek_m = memory.check_all_now(&counters, Cost::ONE, Consume::Never);
            let peek_r = redis
                .check_all(&partition, &counters, Cost::ONE, Consume::Never)
                .await
                .unwrap();
            assert_eq!(peek_r, peek_m, "peek after {}", context());
            compared += 1;
        }
    }
    compared
}

async fn agree(settings: RedisSettings, seed: u64, sequences: u64) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(START)));
    let store = connect(&settings).await;
    let compared = compare(store.with_clock(clock.clone()), clock, seed, sequences).await;
    assert_eq!(compared, sequences * 50);
}

#[tokio::test]
async fn reports_and_ids_apply_alike_in_lua_and_rust_on_redis() {
    let server = RedisServer::start();
    agree(standalone_settings(&server.url(), &unique_prefix("diffreport")), 5, 60).await;
}

#[tokio::test]
async fn reports_and_ids_apply_alike_in_lua_and_rust_on_a_cluster() {
    let cluster = RedisCluster::start();
    agree(
        cluster_settings(&cluster.seed_urls(), &unique_prefix("diffreport")),
        6,
        20,
    )
    .await;
}

/// 2 replicas × 20 concurrent reports of 3 units, all with one id, and 40
/// more without: the id is applied once, the others every time.
async fn one_id_applies_once(settings: RedisSettings) {
    let a = Arc::new(connect(&settings).await);
    let b = Arc::new(connect(&settings).await);
    let policy = Policy::new(Algorithm::FixedWindow, 1_000, Duration::from_secs(3600)).unwrap();
    let key = format!("race-{}", unique_prefix("k"));
    let mut tasks = Vec::new();
    for i in 0..80 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let counters = [(
                CounterKey {
                    rule: "race",
                    limit: None,
                    value: &key,
                },
                &policy,
            )];
            let once = (i < 40).then_some(Once {
                id: "the-one",
                ttl_us: 3_600_000_000,
            });
            let op = Op::Report(Units::new(3).unwrap());
            store.apply(&key, &counters, op, once).await.expect("applied").duplicate
        }));
    }
    let mut duplicates = 0;
    for task in tasks {
        duplicates += usize::from(task.await.unwrap());
    }
    assert_eq!(duplicates, 39, "one of the 40 with the id applied");
    let counters = [(
        CounterKey {
            rule: "race",
            limit: None,
            value: &key,
        },
        &policy,
    )];
    let (_, decisions) = a.check_all(&key, &counters, Cost::ONE, Consume::Never).await.unwrap();
    assert_eq!(decisions[0].remaining, 1_000 - 41 * 3);
}

#[tokio::test]
async fn one_id_raced_from_two_replicas_applies_once_on_redis() {
    let server = RedisServer::start();
    one_id_applies_once(standalone_settings(&server.url(), &unique_prefix("race"))).await;
}

#[tokio::test]
async fn one_id_raced_from_two_replicas_applies_once_on_a_cluster() {
    let cluster = RedisCluster::start();
    one_id_applies_once(cluster_settings(&cluster.seed_urls(), &unique_prefix("race"))).await;
}

/// Through two replicas on `redis`: a report of five times the limit denies
/// checks until Redis's clock has paid the debt back, and 20 reports
/// raced with one id over both replicas apply once.
async fn debt_and_duplicates_through_two_replicas(redis: &str) {
    use ratelimiter_testkit::service::Service;
    use serde_json::{json, Value};

    let config = format!(
        r#"
[log]
level = "warn"
[store]
backend = "redis"
[store.redis]
{redis}
key_prefix = "{}"
command_timeout = "5s"
[[rules]]
endpoint = "POST /llm"
algorithm = "token_bucket"
limit = 10
window = "100ms"
[[rules]]
endpoint = "POST /quota"
algorithm = "fixed_window"
limit = 1000
window = "1h"
[[rules]]
endpoint = "POST /one"
algorithm = "fixed_window"
limit = 1
window = "1h"
"#,
        unique_prefix("reportsvc")
    );
    let replicas = [Service::start(&config), Service::start(&config)];
    let client = reqwest::Client::new();
    let post = |i: usize, path: &str, body: Value| client.post(replicas[i % 2].url(path)).json(&body).send();

    // 10 per 100 ms, one unit back every 10 ms: 50 reported owe 40, so one
    // unit fits again 410 ms later by Redis's clock.
    let reported = std::time::Instant::now();
    let answer: Value = post(0, "/report", json!({"key": "t", "endpoint": "POST /llm", "cost": 50}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["reason"], "reported", "{answer}");
    let retry = answer["retry_after_ms"].as_u64().unwrap();
    assert!((390..=410).contains(&retry), "{answer}");
    let denied = post(1, "/check", json!({"key": "t", "endpoint": "POST /llm"}))
        .await
        .unwrap();
    assert_eq!(denied.status(), 429);
    loop {
        let status = post(1, "/check", json!({"key": "t", "endpoint": "POST /llm"}))
            .await
            .unwrap()
            .status();
        if status == 200 {
            break;
        }
        assert!(reported.elapsed() < Duration::from_secs(5), "the debt is paid back");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Not before the debt was paid back (less the tolerance of two round trips).
    assert!(
        reported.elapsed() >= Duration::from_millis(360),
        "{:?}",
        reported.elapsed()
    );

    // One id raced over both replicas.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let request = client
            .post(replicas[i % 2].url("/report"))
            .json(&json!({"key": "t", "endpoint": "POST /quota", "cost": 7, "id": "settle-1"}));
        tasks.spawn(async move { request.send().await.unwrap().json::<Value>().await.unwrap() });
    }
    let mut applied = 0;
    while let Some(answer) = tasks.join_next().await {
        let answer = answer.unwrap();
        assert_eq!(answer["reason"], "reported", "{answer}");
        applied += usize::from(answer.get("duplicate").is_none());
    }
    assert_eq!(applied, 1);
    let peek: Value = post(0, "/check", json!({"key": "t", "endpoint": "POST /quota", "cost": 0}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(peek["remaining"], 993, "{peek}");

    // A refund on one replica ends the other's cached denial: without it,
    // the denial would hold for the rest of the hour.
    let one = json!({"key": "t", "endpoint": "POST /one"});
    assert_eq!(post(0, "/check", one.clone()).await.unwrap().status(), 200);
    for _ in 0..2 {
        assert_eq!(post(0, "/check", one.clone()).await.unwrap().status(), 429);
    }
    let refunded: Value = post(1, "/report", json!({"key": "t", "endpoint": "POST /one", "cost": -1}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refunded["reason"], "refunded", "{refunded}");
    let asked = std::time::Instant::now();
    while post(0, "/check", one.clone()).await.unwrap().status() != 200 {
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "the refunded unit is admitted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debt_and_a_raced_id_through_two_replicas_on_redis() {
    let server = RedisServer::start();
    debt_and_duplicates_through_two_replicas(&crate::common::standalone_toml(&server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debt_and_a_raced_id_through_two_replicas_on_a_cluster() {
    let cluster = RedisCluster::start();
    debt_and_duplicates_through_two_replicas(&crate::common::cluster_toml(&cluster)).await;
}
