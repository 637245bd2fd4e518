//! Operators' changes are shared: two replicas on one Redis, a change made
//! through one governs checks on the other within a second, survives a
//! restart, and a missed notification heals by the periodic resync.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{cluster_toml, standalone_toml};
use ratelimiter_testkit::redis::{RedisCluster, RedisServer};
use ratelimiter_testkit::service::Service;

const TOKEN: &str = "shared-admin-token-0123456789";

fn config(redis: &RedisServer, prefix: &str, resync: &str) -> String {
    config_for(&standalone_toml(redis), prefix, resync)
}

fn config_for(store: &str, prefix: &str, resync: &str) -> String {
    format!(
        r#"
        [admin]
        token = "{TOKEN}"
        resync_interval = "{resync}"
        [store]
        backend = "redis"
        [store.redis]
        {store}
        key_prefix = "{prefix}"
        [defaults]
        limit = 1
        window = "1h"
        "#
    )
}

struct Replica {
    service: Service,
    client: reqwest::Client,
}

impl Replica {
    fn start(config: &str) -> Replica {
        Replica {
            service: Service::start(config),
            client: reqwest::Client::new(),
        }
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.client.request(method, self.service.url(path)).bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn check(&self, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.service.url("/check"))
            .json(&body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// The limit the replica applies to `key` now (inspection consumes nothing).
    async fn limit_of(&self, key: &str) -> u64 {
        let (_, body) = self
            .admin(reqwest::Method::GET, &format!("/admin/keys?key={key}"), None)
            .await;
        body["limit"].as_u64().unwrap_or(0)
    }
}

/// Puts `record` (an override) through `a` and waits, at most a second,
/// until `b` applies its limit to its key.
async fn override_reaches(a: &Replica, b: &Replica, record: Value, what: &str) {
    let key = record["key"].as_str().expect("an override of a key").to_owned();
    let limit = record["limit"].as_u64().expect("an override with a limit");
    let (status, body) = a.admin(reqwest::Method::PUT, "/admin/overrides", Some(record)).await;
    assert_eq!(status, 200, "{body}");
    within(Duration::from_secs(1), what, || async {
        b.limit_of(&key).await == limit
    })
    .await;
}

/// Blocks `entry` through `a` and waits, at most a second, until `b`
/// answers 403 to a check of `key`.
async fn block_reaches(a: &Replica, b: &Replica, entry: &str, key: &str, what: &str) {
    let (status, _) = a
        .admin(
            reqwest::Method::PUT,
            "/admin/lists/block",
            Some(json!({ "entry": entry })),
        )
        .await;
    assert_eq!(status, 200);
    within(Duration::from_secs(1), what, || async {
        b.check(json!({ "key": key })).await.0 == 403
    })
    .await;
}

/// Polls `condition` until it holds; returns how long that took.
async fn within<F, Fut>(deadline: Duration, what: &str, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if condition().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < deadline, "{what} not seen within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_on_one_replica_govern_the_other_within_a_second() {
    let redis = RedisServer::start();
    // A long resync: only the change notification can make this fast.
    let config = config(&redis, "adm1", "1h");
    let a = Replica::start(&config);
    let b = Replica::start(&config);
    assert_eq!(b.limit_of("org:acme").await, 1);

    override_reaches(
        &a,
        &b,
        json!({"key": "org:acme", "limit": 1000}),
        "the key override on replica B",
    )
    .await;
    for _ in 0..5 {
        assert_eq!(b.check(json!({"key": "org:acme"})).await.0, 200);
    }

    block_reaches(&a, &b, "user:evil", "user:evil", "the block on replica B").await;

    let (status, _) = a
        .admin(reqwest::Method::DELETE, "/admin/lists/block?entry=user:evil", None)
        .await;
    assert_eq!(status, 200);
    within(Duration::from_secs(1), "the unblock on replica B", || async {
        b.check(json!({"key": "user:evil"})).await.0 != 403
    })
    .await;

    let (status, _) = a
        .admin(
            reqwest::Method::PUT,
            "/admin/lists/allow",
            Some(json!({"entry": "192.0.2.0/24"})),
        )
        .await;
    assert_eq!(status, 200);
    within(Duration::from_secs(1), "the allow entry on replica B", || async {
        b.check(json!({"key": "someone", "client_ip": "192.0.2.7"})).await.1["reason"] == "allowlisted"
    })
    .await;

    // A restarted replica reads the shared state at start-up.
    drop(b);
    let c = Replica::start(&config);
    assert_eq!(c.limit_of("org:acme").await, 1000);
    let (status, body) = c.admin(reqwest::Method::GET, "/admin/overrides", None).await;
    assert_eq!((status, body["shared"].as_bool()), (200, Some(true)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_applies_on_every_replica() {
    let redis = RedisServer::start();
    let config = config(&redis, "adm2", "1h");
    let a = Replica::start(&config);
    let b = Replica::start(&config);
    override_reaches(
        &a,
        &b,
        json!({"key": "org:brief", "limit": 50, "expires_in": "1s"}),
        "the override on B",
    )
    .await;
    // After its expiry both replicas are back to the configured limit.
    within(Duration::from_secs(5), "the expiry on A and B", || async {
        a.limit_of("org:brief").await == 1 && b.limit_of("org:brief").await == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_notification_heals_by_resync() {
    let redis = RedisServer::start();
    let config = config(&redis, "adm3", "300ms");
    let b = Replica::start(&config);
    // Written behind the replicas' backs: no PUBLISH at all.
    let record = json!({"endpoint": null, "tier": null, "key": "org:quiet", "algorithm": null, "limit": 77,
                        "window": null, "expires_at_ms": null, "created_at_ms": 0});
    redis.cli(&[
        "HSET",
        "adm3:{admin}:overrides",
        r#"["key","default","org:quiet"]"#,
        &record.to_string(),
    ]);
    within(Duration::from_secs(5), "the resync on B", || async {
        b.limit_of("org:quiet").await == 77
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_shared_on_a_cluster_too() {
    let cluster = RedisCluster::start();
    let config = config_for(&cluster_toml(&cluster), "adm4", "1h");
    let a = Replica::start(&config);
    let b = Replica::start(&config);
    override_reaches(&a, &b, json!({"key": "org:big", "limit": 500}), "the override on B").await;
    block_reaches(&a, &b, "198.51.100.0/24", "198.51.100.9", "the block on B").await;
}

/// The deny cache's counter on a replica's `/metrics`.
async fn deny_cache_hits(replica: &Replica) -> u64 {
    let text = replica
        .client
        .get(replica.service.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("rate_limit_deny_cache_hits_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the deny cache counter is exported")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_on_one_replica_ends_cached_denials_on_the_other() {
    let redis = RedisServer::start();
    // A long resync: only the notification can end A's cached denial.
    let config = config(&redis, "adm5", "1h");
    let a = Replica::start(&config);
    let b = Replica::start(&config);

    assert_eq!(a.check(json!({"key": "k"})).await.0, 200);
    assert_eq!(a.check(json!({"key": "k"})).await.0, 429, "limit 1 per hour");
    let (status, body) = a.check(json!({"key": "k"})).await;
    assert_eq!(status, 429);
    assert_eq!(body["reason"], "limited");
    assert_eq!(deny_cache_hits(&a).await, 1, "the repeat was answered from A's cache");

    let (status, _) = b.admin(reqwest::Method::DELETE, "/admin/keys?key=k", None).await;
    assert_eq!(status, 200);
    let took = within(Duration::from_secs(5), "the reset on A", || async {
        a.check(json!({"key": "k"})).await.0 == 200
    })
    .await;
    eprintln!("A allowed again {took:?} after the reset on B");
    assert_eq!(a.check(json!({"key": "k"})).await.0, 429, "and the limit holds again");
}

/// On a cluster, a reset of one limit of several through one replica: it
/// deletes that counter (in the slot of the org), keeps the other, and ends
/// the other replica's cached denial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_limit_of_several_is_reset_on_a_cluster() {
    let cluster = RedisCluster::start();
    let rule = r#"
        [[rules]]
        endpoint = "POST /chat"
        limits = [
          { name = "user", algorithm = "fixed_window", limit = 2, window = "1h" },
          { name = "org", by = "org", algorithm = "token_bucket", limit = 10, window = "1h" },
        ]
    "#;
    let config = format!("{}{rule}", config_for(&cluster_toml(&cluster), "adm6", "1h"));
    let a = Replica::start(&config);
    let b = Replica::start(&config);
    let chat = json!({"key": "alice", "endpoint": "POST /chat", "scopes": {"org": "acme"}});
    for _ in 0..2 {
        assert_eq!(a.check(chat.clone()).await.0, 200);
    }
    let (status, body) = a.check(chat.clone()).await;
    assert_eq!((status, &body["limit_name"]), (429, &json!("user")), "{body}");
    a.check(chat.clone()).await;
    assert_eq!(deny_cache_hits(&a).await, 1, "the repeat was answered from A's cache");

    let keys = "/admin/keys?key=alice&endpoint=POST%20/chat&scopes.org=acme";
    let (status, body) = b
        .admin(reqwest::Method::DELETE, &format!("{keys}&name=user"), None)
        .await;
    assert_eq!((status, &body["limits"]), (200, &json!(["user"])), "{body}");
    let (_, read) = b.admin(reqwest::Method::GET, keys, None).await;
    assert_eq!(read["limits"][0]["remaining"], 2, "{read}");
    assert_eq!(read["limits"][1]["remaining"], 8, "the org's counter is kept: {read}");
    within(Duration::from_secs(5), "the reset on A", || async {
        a.check(chat.clone()).await.0 == 200
    })
    .await;
}
