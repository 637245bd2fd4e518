//! Three `ratelimiter` processes sharing one Redis (or one cluster) enforce
//! one limit exactly: 200 concurrent clients, one key of capacity 100 with
//! negligible refill, every algorithm → exactly 100 allowed, each
//! `remaining` value from 99 down to 0 handed out exactly once. And a rule
//! of several limits (a user's and its organisation's) stays exact: all or
//! nothing across replicas, on one Redis and on a cluster.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::common::{cluster_toml, standalone_toml};
use ratelimiter_testkit::redis::{RedisCluster, RedisServer};
use ratelimiter_testkit::service::Service;

const CLIENTS: usize = 200;
const REQUESTS_PER_CLIENT: usize = 2;

const ENDPOINTS: [(&str, &str); 5] = [
    ("GET /tb", "token_bucket"),
    ("GET /gcra", "gcra"),
    ("GET /fw", "fixed_window"),
    ("GET /swc", "sliding_window_counter"),
    ("GET /swl", "sliding_window_log"),
];

/// Capacity 100 that refills one unit per three days at most.
fn config(redis: &str, prefix: &str) -> String {
    let mut toml = format!(
        "[log]\nlevel = \"warn\"\n[store]\nbackend = \"redis\"\n[store.redis]\n{redis}\nkey_prefix = \"{prefix}\"\ncommand_timeout = \"5s\"\npool_size = 4\n"
    );
    for (endpoint, algorithm) in ENDPOINTS {
        let window = if algorithm == "token_bucket" || algorithm == "gcra" {
            "300days"
        } else {
            "1day"
        };
        toml.push_str(&format!(
            "[[rules]]\nendpoint = \"{endpoint}\"\nalgorithm = \"{algorithm}\"\nlimit = 100\nwindow = \"{window}\"\n"
        ));
    }
    toml
}

async fn hammer(replicas: &[Service]) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let urls: Vec<String> = replicas.iter().map(|r| r.url("/check")).collect();
    for (endpoint, algorithm) in ENDPOINTS {
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..CLIENTS {
            let client = client.clone();
            let urls = urls.clone();
            tasks.spawn(async move {
                let mut answers = Vec::new();
                for r in 0..REQUESTS_PER_CLIENT {
                    let url = &urls[(c + r) % urls.len()];
                    let response = client
                        .post(url)
                        .json(&json!({"key": "org:hot", "endpoint": endpoint}))
                        .send()
                        .await
                        .expect("the replica answers");
                    let status = response.status().as_u16();
                    let body: Value = response.json().await.expect("JSON body");
                    answers.push((status, body));
                }
                answers
            });
        }
        let mut allowed = 0;
        let mut denied = 0;
        let mut remaining_seen: BTreeMap<u64, usize> = BTreeMap::new();
        while let Some(answers) = tasks.join_next().await {
            for (status, body) in answers.unwrap() {
                match status {
                    200 => {
                        allowed += 1;
                        *remaining_seen.entry(body["remaining"].as_u64().unwrap()).or_default() += 1;
                    }
                    429 => denied += 1,
                    other => panic!("{algorithm}: unexpected status {other}: {body}"),
                }
            }
        }
        assert_eq!(allowed, 100, "{algorithm}: exactly the capacity is allowed");
        assert_eq!(denied, CLIENTS * REQUESTS_PER_CLIENT - 100, "{algorithm}");
        assert_eq!(
            remaining_seen.len(),
            100,
            "{algorithm}: every remaining value is distinct"
        );
        assert_eq!(
            remaining_seen.keys().copied().collect::<Vec<_>>(),
            (0..100).collect::<Vec<u64>>(),
            "{algorithm}"
        );
    }
}

/// Three replicas on the store that `redis` (`[store.redis]` lines) names.
async fn three_replicas_admit_exactly_the_limit(redis: &str) {
    let config = config(redis, "exact");
    let replicas: Vec<Service> = (0..3).map(|_| Service::start(&config)).collect();
    hammer(&replicas).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_redis_admit_exactly_the_limit() {
    let server = RedisServer::start();
    three_replicas_admit_exactly_the_limit(&standalone_toml(&server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_a_cluster_admit_exactly_the_limit() {
    let cluster = RedisCluster::start();
    three_replicas_admit_exactly_the_limit(&cluster_toml(&cluster)).await;
}

/// `user 100/h` + `org 300/h` on one rule, for two algorithm mixes: three
/// replicas, 200 concurrent clients, four users of one org sending 1,000
/// requests in all. The org admits exactly 300, no user more than 100, and
/// what every counter holds (read back with peeks) is exactly what was
/// admitted, as `GET /admin/keys` reads it back from another replica.
async fn three_replicas_keep_several_limits_exact(redis: &str) {
    const TOKEN: &str = "exactness-admin-token-0123456789";
    const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
    const MIXES: [(&str, &str, &str); 2] = [
        ("POST /mix1", "fixed_window", "token_bucket"),
        ("POST /mix2", "gcra", "sliding_window_log"),
    ];
    let mut toml = format!(
        "[log]\nlevel = \"warn\"\n[admin]\ntoken = \"{TOKEN}\"\n[store]\nbackend = \"redis\"\n[store.redis]\n{redis}\nkey_prefix = \"several\"\ncommand_timeout = \"5s\"\npool_size = 4\n"
    );
    for (endpoint, user, org) in MIXES {
        toml.push_str(&format!(
            "[[rules]]\nendpoint = \"{endpoint}\"\nlimits = [\n  {{ name = \"user\", algorithm = \"{user}\", limit = 100, window = \"300days\" }},\n  {{ name = \"org\", by = \"org\", algorithm = \"{org}\", limit = 300, window = \"300days\" }},\n]\n"
        ));
    }
    let replicas: Vec<Service> = (0..3).map(|_| Service::start(&toml)).collect();
    let urls: Vec<String> = replicas.iter().map(|r| r.url("/check")).collect();
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    for (endpoint, user_algorithm, org_algorithm) in MIXES {
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..CLIENTS {
            let (client, urls) = (client.clone(), urls.clone());
            tasks.spawn(async move {
                let mut allowed = [0u64; 4];
                // 1,000 requests in all: 5 per client, users in turn.
                for r in 0..5 {
                    let user = (c + r) % USERS.len();
                    let response = client
                        .post(&urls[(c + r) % urls.len()])
                        .json(&json!({"key": USERS[user], "endpoint": endpoint, "scopes": {"org": "acme"}}))
                        .send()
                        .await
                        .expect("the replica answers");
                    match response.status().as_u16() {
                        200 => allowed[user] += 1,
                        429 => {}
                        other => panic!("{endpoint}: unexpected status {other}: {:?}", response.text().await),
                    }
                }
                allowed
            });
        }
        let mut per_user = [0u64; 4];
        while let Some(allowed) = tasks.join_next().await {
            for (total, n) in per_user.iter_mut().zip(allowed.unwrap()) {
                *total += n;
            }
        }
        let what = format!("{endpoint} ({user_algorithm} + {org_algorithm})");
        assert_eq!(
            per_user.iter().sum::<u64>(),
            300,
            "{what}: the org admits exactly 300: {per_user:?}"
        );
        assert!(
            per_user.iter().all(|&n| n <= 100),
            "{what}: no user above 100: {per_user:?}"
        );
        // Every counter holds exactly what was admitted.
        for (user, admitted) in USERS.iter().zip(per_user) {
            let read = client
                .get(replicas[1].url("/admin/keys"))
                .bearer_auth(TOKEN)
                .query(&[("key", *user), ("endpoint", endpoint), ("scopes.org", "acme")])
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap();
            let limits = read["limits"].as_array().expect("every limit");
            assert_eq!(
                (&limits[0]["name"], &limits[0]["remaining"]),
                (&json!("user"), &json!(100 - admitted)),
                "{what}: {user}'s counter: {read}"
            );
            assert_eq!(
                (&limits[1]["name"], &limits[1]["remaining"]),
                (&json!("org"), &json!(0)),
                "{what}: the org's counter: {read}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_redis_keep_several_limits_exact() {
    let server = RedisServer::start();
    three_replicas_keep_several_limits_exact(&standalone_toml(&server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_a_cluster_keep_several_limits_exact() {
    let cluster = RedisCluster::start();
    three_replicas_keep_several_limits_exact(&cluster_toml(&cluster)).await;
}
