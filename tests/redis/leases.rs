//! Concurrency limits on Redis: the Lua leases against the memory store's
//! on random sequences (acquire, release, renew, expiry), three replicas
//! never letting more than the limit in flight (counted by the clients),
//! and leases of clients that vanish freed by their expiry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ratelimiter::core::{Algorithm, Consume, Cost, ManualClock, Policy, Timestamp};
use ratelimiter::settings::RedisSettings;
use ratelimiter::store::memory::MemoryStore;
use ratelimiter::store::redis::RedisStore;
use ratelimiter::store::{CounterKey, LeaseOp, Op, Store};
use serde_json::{json, Value};

use crate::common::{
    cluster_settings, cluster_toml, connect, standalone_settings, standalone_toml, unique_prefix, Rng,
};
use ratelimiter_testkit::redis::{RedisCluster, RedisServer};
use ratelimiter_testkit::service::Service;

const START: u64 = 1_700_000_000_123_456;

/// Random sequences on a rule of a concurrency limit, alone or beside a
/// fixed window: acquires (each its own lease number), releases and
/// renewals of leases taken before, at rising given times; every answer of
/// both stores must be the same, and so must a peek after each step.
async fn compare(redis: RedisStore, clock: Arc<ManualClock>, seed: u64, sequences: u64) -> u64 {
    let memory = MemoryStore::with_clock(clock.clone());
    let mut rng = Rng::new(seed);
    let mut compared = 0;
    for sequence in 0..sequences {
        let unnamed = rng.chance(3);
        let limit = rng.range(1, 6);
        let ttl_s = rng.range(1, 30);
        let leases = Policy::new(Algorithm::Concurrency, limit, Duration::from_secs(ttl_s)).unwrap();
        let rate = Policy::new(Algorithm::FixedWindow, rng.range(3, 20), Duration::from_secs(60)).unwrap();
        let value = format!("c{seed}-{sequence}");
        let partition = if unnamed {
            value.clone()
        } else {
            format!("p{seed}-{sequence}")
        };
        let counters: Vec<(CounterKey<'_>, &Policy)> = if unnamed {
            vec![(
                CounterKey {
                    rule: "leases",
                    limit: None,
                    value: &value,
                },
                &leases,
            )]
        } else {
            vec![
                (
                    CounterKey {
                        rule: "leases",
                        limit: Some("rate"),
                        value: &value,
                    },
                    &rate,
                ),
                (
                    CounterKey {
                        rule: "leases",
                        limit: Some("inflight"),
                        value: &value,
                    },
                    &leases,
                ),
            ]
        };
        let holders: Vec<(CounterKey<'_>, u64)> = counters
            .iter()
            .filter(|(_, p)| p.algorithm() == Algorithm::Concurrency)
            .map(|(k, p)| (*k, p.quota().window_us()))
            .collect();
        let mut taken: Vec<(u64, u64)> = Vec::new();
        let mut now = START + rng.range(0, 1_000_000);
        for step in 0..40u64 {
            now += match rng.range(0, 5) {
                0 => 0,
                1 => rng.range(ttl_s * 500_000, ttl_s * 1_500_000),
                _ => rng.range(1, 2_000_000),
            };
            clock.set(Timestamp::from_micros(now));
            let context = format!("seed {seed} sequence {sequence} step {step} at {now}: limit {limit}, ttl {ttl_s}s");
            match rng.range(0, 3) {
                0 | 1 => {
                    let cost = Cost::new(rng.range(1, limit)).unwrap();
                    let lease = 1_000 + sequence * 100 + step;
                    let op = Op::Acquire { cost, lease };
                    let expected = memory.apply_now(&partition, &counters, op, None);
                    let actual = redis
                        .apply(&partition, &counters, op, None)
                        .await
                        .expect("redis answers");
                    assert_eq!(actual, expected, "acquire {context}");
                    if expected.allowed {
                        taken.push((lease, cost.get()));
                    }
                }
                _ if !taken.is_empty() => {
                    let (lease, units) = taken[rng.range(0, taken.len() as u64 - 1) as usize];
                    let op = if rng.chance(2) {
                        LeaseOp::Release
                    } else {
                        LeaseOp::Renew
                    };
                    let expected = memory.lease_now(&holders, lease, units, op);
                    let actual = redis
                        .lease(&partition, &holders, lease, units, op)
                        .await
                        .expect("redis answers");
                    assert_eq!(actual, expected, "{op:?} {lease} {context}");
                }
                _ => {}
            }
            let peek_m = memory.check_all_now(&counters, Cost::ONE, Consume::Never);
            let peek_r = redis
                .check_all(&partition, &counters, Cost::ONE, Consume::Never)
                .await
                .unwrap();
            assert_eq!(peek_r, peek_m, "peek {context}");
            compared += 1;
        }
    }
    compared
}

async fn agree(settings: RedisSettings, seed: u64, sequences: u64) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(START)));
    let store = connect(&settings).await;
    let compared = compare(store.with_clock(clock.clone()), clock, seed, sequences).await;
    assert_eq!(compared, sequences * 40);
}

#[tokio::test]
async fn leases_decide_alike_in_lua_and_rust_on_redis() {
    let server = RedisServer::start();
    agree(standalone_settings(&server.url(), &unique_prefix("diffleases")), 7, 60).await;
}

#[tokio::test]
async fn leases_decide_alike_in_lua_and_rust_on_a_cluster() {
    let cluster = RedisCluster::start();
    agree(
        cluster_settings(&cluster.seed_urls(), &unique_prefix("diffleases")),
        8,
        20,
    )
    .await;
}

const IN_FLIGHT: usize = 5;
const CLIENTS: usize = 100;
const HOLDS_PER_CLIENT: usize = 2;

fn replicas_config(redis: &str, prefix: &str) -> String {
    format!(
        r#"
[log]
level = "warn"
[store]
backend = "redis"
[store.redis]
{redis}
key_prefix = "{prefix}"
command_timeout = "5s"
[[rules]]
endpoint = "POST /jobs"
algorithm = "concurrency"
limit = {IN_FLIGHT}
lease_ttl = "30s"
[[rules]]
endpoint = "POST /mixed"
limits = [
  {{ name = "rate", algorithm = "token_bucket", limit = 1000000, window = "1s" }},
  {{ name = "inflight", algorithm = "concurrency", limit = {IN_FLIGHT}, lease_ttl = "30s" }},
]
[[rules]]
endpoint = "POST /brief"
algorithm = "concurrency"
limit = 3
lease_ttl = "1s"
"#
    )
}

/// 100 clients over three replicas, each acquiring twice on `endpoint`,
/// holding 1–20 ms and releasing: the clients themselves count what is in
/// flight, which never passes the limit and reaches it.
async fn never_more_than_the_limit_in_flight(replicas: &[Service], endpoint: &'static str) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(128).build().unwrap();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let client = client.clone();
        let urls: Vec<(String, String)> = replicas.iter().map(|r| (r.url("/check"), r.url("/release"))).collect();
        let (in_flight, most) = (in_flight.clone(), most.clone());
        tasks.spawn(async move {
            let mut rng = Rng::new(c as u64 + 1);
            let mut held = 0;
            let mut asked = 0usize;
            while held < HOLDS_PER_CLIENT {
                let (check, release) = &urls[(c + asked) % urls.len()];
                asked += 1;
                let response = client
                    .post(check)
                    .json(&json!({"key": "team:1", "endpoint": endpoint}))
                    .send()
                    .await
                    .expect("the replica answers");
                let status = response.status().as_u16();
                let body: Value = response.json().await.expect("JSON");
                match status {
                    200 => {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(rng.range(1, 20))).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        let lease = body["lease"].as_str().expect("a lease").to_owned();
                        let released: Value = client
                            .post(release)
                            .json(&json!({"lease": lease}))
                            .send()
                            .await
                            .expect("released")
                            .json()
                            .await
                            .unwrap();
                        assert_eq!(released["released"], true, "{released}");
                        held += 1;
                    }
                    429 => tokio::time::sleep(Duration::from_millis(rng.range(2, 6))).await,
                    other => panic!("unexpected {other}: {body}"),
                }
            }
            asked
        });
    }
    let mut asked = 0;
    while let Some(done) = tasks.join_next().await {
        asked += done.unwrap();
    }
    let most = most.load(Ordering::SeqCst);
    assert!(most <= IN_FLIGHT, "{most} in flight at once, the limit is {IN_FLIGHT}");
    assert_eq!(most, IN_FLIGHT, "the limit was reached ({asked} checks)");
    // Everything released: the whole limit is free again.
    let peek: Value = client
        .post(replicas[0].url("/check"))
        .json(&json!({"key": "team:1", "endpoint": endpoint, "cost": 0}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(peek["remaining"], IN_FLIGHT as u64, "{peek}");
}

/// Three clients take the whole of a 1 s limit and vanish without
/// releasing: checks are denied, with a retry no later than the leases'
/// expiry, until the first expiry frees capacity — within `lease_ttl` +
/// 100 ms of its acquisition, and not before.
async fn vanished_clients_free_their_leases_by_expiry(replicas: &[Service]) {
    let client = reqwest::Client::new();
    let ask = |i: usize| {
        client
            .post(replicas[i % replicas.len()].url("/check"))
            .json(&json!({"key": "team:2", "endpoint": "POST /brief"}))
            .send()
    };
    let first = std::time::Instant::now();
    for i in 0..3 {
        assert_eq!(ask(i).await.unwrap().status(), 200);
    }
    let denied = ask(3).await.unwrap();
    assert_eq!(denied.status(), 429);
    let body: Value = denied.json().await.unwrap();
    let retry = body["retry_after_ms"].as_u64().unwrap();
    assert!((1..=1_000).contains(&retry), "{body}");
    // The first lease expires 1 s after it was taken, by Redis's clock:
    // capacity comes back then, not before, and within 100 ms after.
    loop {
        if ask(4).await.unwrap().status() == 200 {
            break;
        }
        assert!(
            first.elapsed() < Duration::from_secs(3),
            "the leases expired and freed capacity"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let freed = first.elapsed();
    assert!(freed >= Duration::from_secs(1), "freed before its expiry: {freed:?}");
    assert!(
        freed <= Duration::from_millis(1_100),
        "freed {freed:?} after it was taken"
    );
}

async fn three_replicas(redis: &str) {
    let config = replicas_config(redis, &unique_prefix("leases"));
    let replicas: Vec<Service> = (0..3).map(|_| Service::start(&config)).collect();
    never_more_than_the_limit_in_flight(&replicas, "POST /jobs").await;
    never_more_than_the_limit_in_flight(&replicas, "POST /mixed").await;
    vanished_clients_free_their_leases_by_expiry(&replicas).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_redis_never_let_more_than_the_limit_in_flight() {
    let server = RedisServer::start();
    three_replicas(&standalone_toml(&server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_a_cluster_never_let_more_than_the_limit_in_flight() {
    let cluster = RedisCluster::start();
    three_replicas(&cluster_toml(&cluster)).await;
}
