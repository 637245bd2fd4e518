//! Three `ratelimiter` processes sharing one Redis (or one cluster) enforce
//! one limit exactly: 200 concurrent clients, one key of capacity 100 with
//! negligible refill, every algorithm → exactly 100 allowed, each
//! `remaining` value from 99 down to 0 handed out exactly once.

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
